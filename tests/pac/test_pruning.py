import pytest
import torch
from pac_tiny import TinyData, TinyNet, trainer

from pl_pac_trs.pac import CHECKPOINT_KEY, MagnitudePruning, compute_masks, load_masks


def test_global_exact_count_and_largest_kept():
    torch.manual_seed(0)
    params = {"a": torch.randn(7, 3), "b": torch.randn(11)}
    masks = compute_masks(params, amount=0.8, pruning_fn="global")
    n = 21 + 11
    assert sum(int((~m).sum()) for m in masks.values()) == round(0.8 * n)
    kept = torch.cat([params[k][masks[k]].abs() for k in params])
    pruned = torch.cat([params[k][~masks[k]].abs() for k in params])
    assert kept.min() >= pruned.max()
    assert all(m.dtype == torch.bool and m.shape == params[k].shape for k, m in masks.items())


def test_per_layer_counts_differ_from_global():
    params = {"small": torch.full((10,), 0.01), "large": torch.arange(1.0, 11.0)}
    layer = compute_masks(params, amount=0.5, pruning_fn="layer")
    assert int((~layer["small"]).sum()) == 5 and int((~layer["large"]).sum()) == 5
    glob = compute_masks(params, amount=0.5, pruning_fn="global")
    assert int((~glob["small"]).sum()) == 10 and int((~glob["large"]).sum()) == 0


@pytest.mark.parametrize("scope", ["global", "layer"])
def test_ties_broken_deterministically_with_exact_count(scope):
    params = {"a": torch.ones(3, 3), "b": torch.zeros(4)}
    masks = compute_masks(params, amount=0.6, pruning_fn=scope)
    again = compute_masks(params, amount=0.6, pruning_fn=scope)
    assert all(torch.equal(masks[k], again[k]) for k in masks)
    if scope == "global":
        assert sum(int((~m).sum()) for m in masks.values()) == round(0.6 * 13)
        assert not masks["b"].any()  # zeros are pruned first
        # among equal magnitudes, earlier positions are pruned first
        assert torch.equal(masks["a"].flatten(), torch.tensor([False] * 4 + [True] * 5))
    else:
        assert int((~masks["a"]).sum()) == round(0.6 * 9)
        assert int((~masks["b"]).sum()) == round(0.6 * 4)


def test_amount_zero_keeps_everything():
    masks = compute_masks({"a": torch.randn(5)}, amount=0.0)
    assert masks["a"].all()


@pytest.mark.parametrize("amount", [-0.1, 1.0, 1.5, True, "0.5"])
def test_bad_amount_rejected(amount):
    with pytest.raises(ValueError, match="amount"):
        MagnitudePruning(amount=amount)
    with pytest.raises(ValueError, match="amount"):
        compute_masks({"a": torch.randn(3)}, amount=amount)


def test_bad_pruning_fn_and_epoch_rejected():
    with pytest.raises(ValueError, match="pruning_fn"):
        MagnitudePruning(pruning_fn="local")
    with pytest.raises(ValueError, match="epoch"):
        MagnitudePruning(epoch=-1)


def test_nonfinite_weight_named():
    with pytest.raises(ValueError, match="'w'"):
        compute_masks({"w": torch.tensor([1.0, float("nan")])})


def test_no_prunable_parameter_fails_before_training():
    model = TinyNet()
    cb = MagnitudePruning(include=["does_not_exist"])
    with pytest.raises(ValueError, match="no prunable parameter matched"):
        trainer(callbacks=[cb]).fit(model, TinyData())
    assert model.global_step == 0


def test_default_targets_and_patterns():
    model = TinyNet(hidden=(4, 4), batch_norm=True)
    assert list(MagnitudePruning().targets(model)) == [
        "body.0.weight",
        "body.3.weight",
        "head.weight",
    ]
    assert list(MagnitudePruning(exclude=["head"]).targets(model)) == [
        "body.0.weight",
        "body.3.weight",
    ]
    cb = MagnitudePruning(module_types=["torch.nn.BatchNorm1d"], param_names=["weight", "bias"])
    assert list(cb.targets(model)) == [
        "body.1.weight",
        "body.1.bias",
        "body.4.weight",
        "body.4.bias",
    ]
    with pytest.raises(ValueError, match=r"torch\.nn\.Nope"):
        MagnitudePruning(module_types=["torch.nn.Nope"]).targets(model)


def test_prune_at_end_of_fit_zeroes_and_checkpoint_carries_masks(tmp_path):
    model = TinyNet(hidden=(16,))
    cb = MagnitudePruning(amount=0.75)
    t = trainer(tmp_path, callbacks=[cb])
    t.fit(model, TinyData())
    targets = cb.targets(model)
    n = sum(p.numel() for p in targets.values())
    assert sum(int((~m).sum()) for m in cb.masks.values()) == round(0.75 * n)
    for name, p in targets.items():
        assert torch.equal(p[~cb.masks[name]], torch.zeros(int((~cb.masks[name]).sum())))
    assert cb.sparsity["pac/sparsity"] == pytest.approx(round(0.75 * n) / n)
    t.save_checkpoint(tmp_path / "pruned.ckpt")
    ckpt = torch.load(tmp_path / "pruned.ckpt", weights_only=False)
    assert set(ckpt[CHECKPOINT_KEY]["masks"]) == set(targets)
    loaded = load_masks(tmp_path / "pruned.ckpt")
    assert all(torch.equal(loaded[k], cb.masks[k]) for k in targets)


def test_prune_at_epoch_logs_sparsity(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    model = TinyNet(hidden=(16,))
    dense = str(tmp_path / "d.ckpt")
    cb = MagnitudePruning(amount=0.5, epoch=1, pruning_fn="layer", dense_checkpoint=dense)
    t = trainer(tmp_path, callbacks=[cb], logger=CSVLogger(tmp_path), max_epochs=2)
    t.fit(model, TinyData())
    assert cb.pruned_at == {"epoch": 1, "global_step": 6}
    dense = torch.load(tmp_path / "d.ckpt", weights_only=False)
    assert CHECKPOINT_KEY not in dense
    assert (dense["state_dict"]["head.weight"] != 0).all()
    text = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text()
    assert "pac/sparsity/body.0.weight" in text and "pac/sparsity" in text


def test_pruning_epoch_beyond_max_epochs_fails_before_training():
    model = TinyNet()
    with pytest.raises(ValueError, match=r"epoch=2\) would never run.*max_epochs=2"):
        trainer(callbacks=[MagnitudePruning(epoch=2)], max_epochs=2).fit(model, TinyData())
    assert model.global_step == 0


def test_a_custom_pruning_fn_is_used_and_checked(tmp_path):
    """A mask rule is a function (params, amount) -> masks, as in ModelPruning(pruning_fn=...)."""

    def keep_first_rows(params, amount):
        out = {}
        for name, p in params.items():
            mask = torch.zeros_like(p, dtype=torch.bool)
            mask[: max(1, round((1 - amount) * p.shape[0]))] = True
            out[name] = mask
        return out

    model = TinyNet(hidden=(8,))
    cb = MagnitudePruning(amount=0.5, pruning_fn=keep_first_rows, verbose=False)
    trainer(tmp_path, callbacks=[cb]).fit(model, TinyData())
    assert cb.masks["body.0.weight"][:4].all() and not cb.masks["body.0.weight"][4:].any()
    assert torch.equal(model.body[0].weight[4:], torch.zeros(4, 5))
    with pytest.raises(ValueError, match="one mask per parameter"):
        compute_masks({"w": torch.ones(3)}, 0.5, lambda params, amount: {})
    with pytest.raises(ValueError, match=r"mask of 'w' must be a bool tensor"):
        compute_masks({"w": torch.ones(3)}, 0.5, lambda params, amount: {"w": torch.ones(3)})
