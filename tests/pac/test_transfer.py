"""No forgetting (source_view) and starting calibration from the source checkpoint."""

import pytest
import torch
from pac_tiny import TinyData, TinyNet, trainer

from pl_pac_trs.pac import (
    GradientMask,
    LoadSourceWeights,
    MagnitudePruning,
    load_masks,
    load_source_weights,
    source_state_dict,
    source_view,
)


def _source(tmp_path, batch_norm=True):
    torch.manual_seed(0)
    model = TinyNet(hidden=(8, 6), out_features=3, batch_norm=batch_norm, optimizer="adamw")
    callbacks = [MagnitudePruning(amount=0.8, epoch=1), GradientMask("allocate", verbose=False)]
    t = trainer(tmp_path, callbacks=callbacks, max_epochs=3)
    t.fit(model, TinyData(out_features=3))
    ckpt = tmp_path / "source.ckpt"
    t.save_checkpoint(ckpt)
    return model, ckpt


@pytest.mark.parametrize("new_head", [True, False])
def test_source_outputs_recovered_exactly_after_calibration(tmp_path, new_head):
    source, ckpt = _source(tmp_path)
    x = torch.randn(16, 5)
    source.eval()
    with torch.no_grad():
        source_out = source(x)
    out_features = 2 if new_head else 3
    target = TinyNet(hidden=(8, 6), out_features=out_features, batch_norm=True, optimizer="adamw")
    skip = ["head"] if new_head else []
    callbacks = [
        LoadSourceWeights(str(ckpt), skip=skip),
        GradientMask("calibrate", lam=0.01, new_modules=skip, verbose=False),
    ]
    trainer(tmp_path / "t", callbacks=callbacks, max_epochs=3).fit(
        target, TinyData(out_features=out_features, seed=1)
    )
    target.eval()
    with torch.no_grad():
        target_out = target(x)
    masks = load_masks(ckpt)
    state = source_state_dict(ckpt)
    # the calibrated weights did change the function
    assert target_out.shape[1] != 3 or not torch.equal(target_out, source_out)
    with torch.no_grad(), source_view(target, masks, source_state=state if new_head else None):
        assert torch.equal(target(x), source_out)
    with torch.no_grad():
        assert torch.equal(target(x), target_out)  # the context left the model as it was


def test_source_view_needs_source_head_when_heads_differ(tmp_path):
    _, ckpt = _source(tmp_path, batch_norm=False)
    target = TinyNet(hidden=(8, 6), out_features=2)
    load_source_weights(target, ckpt, skip=["head"])
    masks = load_masks(ckpt)
    with (
        pytest.raises(ValueError, match=r"mask 'head\.weight' has shape \(3, 6\)"),
        source_view(target, masks),
    ):
        pass
    state = source_state_dict(ckpt)
    with source_view(target, load_masks(ckpt), state), torch.no_grad():
        assert target(torch.randn(2, 5)).shape == (2, 3)
    assert target(torch.randn(2, 5)).shape == (2, 2)
    state["extra.weight"] = torch.zeros(1)
    with (
        pytest.raises(ValueError, match=r"'extra\.weight' is not in the model"),
        source_view(target, masks, state),
    ):
        pass
    assert torch.equal(target.body[0].weight, source_state_dict(ckpt)["body.0.weight"])


def test_load_source_weights_errors_name_entry(tmp_path):
    _, ckpt = _source(tmp_path, batch_norm=False)
    target = TinyNet(hidden=(8, 6), out_features=2)
    with pytest.raises(ValueError, match=r"'head\.weight' has shape"):
        load_source_weights(target, ckpt)
    other = TinyNet(hidden=(8, 6), out_features=3, batch_norm=True)
    with pytest.raises(ValueError, match=r"no entry 'body\.1\.weight'"):
        load_source_weights(other, ckpt)
    copied = load_source_weights(target, ckpt, skip=["head"])
    assert "head.weight" not in copied and "body.0.weight" in copied
    with pytest.raises(FileNotFoundError):
        LoadSourceWeights(str(tmp_path / "missing.ckpt"))


def test_source_view_with_aliased_modules(tmp_path):
    """A module registered under two names (state dict has both) is handled once."""
    _, ckpt = _source(tmp_path, batch_norm=False)
    target = TinyNet(hidden=(8, 6), out_features=3)
    load_source_weights(target, ckpt)
    target.alias = target.body  # same module, second name
    state = {**source_state_dict(ckpt)}
    state.update({"alias." + k[5:]: v for k, v in state.items() if k.startswith("body.")})
    with torch.no_grad():
        target.body[0].weight.add_(1.0)  # "calibrated" all entries
        out = target(torch.ones(2, 5))
        masks = load_masks(ckpt)
        with source_view(target, masks, state):
            w = target.body[0].weight
            assert torch.equal(
                w[~masks["body.0.weight"]], torch.zeros(int((~masks["body.0.weight"]).sum()))
            )
        assert torch.equal(target(torch.ones(2, 5)), out)
