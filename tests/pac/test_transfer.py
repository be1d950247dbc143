"""Starting a target fit from the source checkpoint (what is new is declared once, by what is
not loaded) and recovering the source model bit for bit from the target checkpoint alone."""

import pytest
import torch
from lightning.pytorch import LightningModule
from pac_tiny import TinyData, TinyNet, trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pl_pac_trs.pac import (
    FinalCheckpoint,
    GradientMask,
    LoadSourceWeights,
    MagnitudePruning,
    checkpoint_state_dict,
    load_masks,
    load_source_weights,
    pac_state,
    source_state_dict,
    source_view,
    state_swapped,
)


class Classifier(LightningModule):
    """A user's model: MLP body with BatchNorm, a head of any name."""

    def __init__(self, num_classes: int = 5, head_name: str = "head") -> None:
        super().__init__()
        self.save_hyperparameters()
        self.body = nn.Sequential(
            nn.Linear(6, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 10), nn.ReLU()
        )
        setattr(self, head_name, nn.Linear(10, num_classes))

    def forward(self, x):
        return getattr(self, self.hparams.head_name)(self.body(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.AdamW(self.parameters(), lr=0.02, weight_decay=0.01)


def _loader(task_seed: int, num_classes: int = 5) -> DataLoader:
    g = torch.Generator().manual_seed(task_seed)
    x = torch.randn(64, 6, generator=g)
    y = (x @ torch.randn(6, num_classes, generator=g)).argmax(1)
    return DataLoader(TensorDataset(x, y), batch_size=16)


def _allocated_source(tmp_path, head_name):
    torch.manual_seed(0)
    source = Classifier(5, head_name)
    callbacks = [MagnitudePruning(0.6, epoch=1, verbose=False), GradientMask("allocate")]
    t = trainer(tmp_path / "s", callbacks=callbacks, max_epochs=3)
    t.fit(source, _loader(0))
    path = tmp_path / "source.ckpt"
    t.save_checkpoint(path)
    return source.eval(), path


def _equal_models(a: nn.Module, b: nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


@pytest.mark.parametrize("head_name", ["head", "classifier"])
def test_same_shape_new_head_source_recovered_bit_for_bit_from_the_checkpoint(tmp_path, head_name):
    """A different 5-class target with a fresh 5-class head: skip is the only declaration."""
    source, source_ckpt = _allocated_source(tmp_path, head_name)
    x = torch.randn(32, 6)
    with torch.no_grad():
        source_out = source(x)
    torch.manual_seed(1)
    target = Classifier(5, head_name)
    fresh_head = getattr(target, head_name).weight.detach().clone()
    gm = GradientMask("calibrate", lam=0.01, verbose=False)
    final = tmp_path / "calibrate.ckpt"
    callbacks = [
        LoadSourceWeights(source_ckpt, skip=[head_name]),
        gm,
        FinalCheckpoint(final, verbose=False),
    ]
    trainer(tmp_path / "t", callbacks=callbacks, max_epochs=3).fit(target, _loader(1))
    target.eval()
    # the fresh head is new: no source masks on it, every entry trained (none frozen at random)
    assert not any(k.startswith(head_name + ".") for k in gm.masks)
    assert (getattr(target, head_name).weight.detach() != fresh_head).all()
    with torch.no_grad():
        target_out = target(x)
    assert not torch.equal(target_out, source_out)

    # one call, the calibrated checkpoint alone: the source model, bit for bit
    recovered = Classifier(5, head_name)
    recovered.load_state_dict(source_state_dict(final))
    _equal_models(recovered, source)
    with torch.no_grad():
        assert torch.equal(recovered.eval()(x), source_out)
    # the same from the fitted model, and as a view of it
    from_model = Classifier(5, head_name)
    from_model.load_state_dict(source_state_dict(target))
    _equal_models(from_model, source)
    with torch.no_grad(), source_view(target):
        assert torch.equal(target(x), source_out)
    with torch.no_grad():
        assert torch.equal(target(x), target_out)  # the view left the model as it was

    # target-only users: load_from_checkpoint, and torch.load + load_state_dict (strict)
    loaded = Classifier.load_from_checkpoint(final, map_location="cpu").eval()
    plain = Classifier(5, head_name).eval()
    plain.load_state_dict(torch.load(final, weights_only=True)["state_dict"])
    with torch.no_grad():
        assert torch.equal(loaded(x), target_out) and torch.equal(plain(x), target_out)
        with source_view(loaded, final):
            assert torch.equal(loaded(x), source_out)


def test_head_of_another_size_and_shared_parameters_trained(tmp_path):
    """A 3-class head (another shape) and train_shared=True: the source is still recovered."""
    source, source_ckpt = _allocated_source(tmp_path, "head")
    x = torch.randn(16, 6)
    with torch.no_grad():
        source_out = source(x)
    torch.manual_seed(2)
    target = Classifier(3)
    callbacks = [
        LoadSourceWeights(source_ckpt, skip=["head"]),
        GradientMask("calibrate", train_shared=True, verbose=False),
    ]
    t = trainer(tmp_path / "t", callbacks=callbacks, max_epochs=2)
    t.fit(target, _loader(2, num_classes=3))
    shared = source.body[0].bias.detach()
    assert not torch.equal(target.body[0].bias.detach(), shared)  # it did train
    assert not torch.equal(target.body[1].running_mean, source.body[1].running_mean)
    path = tmp_path / "cal.ckpt"
    t.save_checkpoint(path)
    recovered = Classifier(5)
    recovered.load_state_dict(source_state_dict(path))
    _equal_models(recovered, source)
    with torch.no_grad(), source_view(target.eval()):
        assert torch.equal(target(x), source_out)


def test_skip_without_a_source_head_and_masks_naming_a_new_module_are_errors(tmp_path):
    _, source_ckpt = _allocated_source(tmp_path, "head")
    masks = load_masks(source_ckpt)
    model = Classifier(5)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    callbacks = [
        LoadSourceWeights(source_ckpt, skip=["head"]),
        GradientMask("calibrate", masks=masks, verbose=False),
    ]
    with pytest.raises(ValueError, match=r"'head\.weight'.*module 'head' was not loaded"):
        trainer(tmp_path / "t", callbacks=callbacks).fit(model, _loader(1))
    assert model.global_step == 0
    # LoadSourceWeights loaded, then the error: the head is still the fresh one
    assert torch.equal(model.head.weight, before["head.weight"])


def test_calibrate_listed_before_its_source_is_refused(tmp_path):
    _, source_ckpt = _allocated_source(tmp_path, "head")
    model = Classifier(5)
    callbacks = [GradientMask("calibrate"), LoadSourceWeights(source_ckpt, skip=["head"])]
    with pytest.raises(ValueError, match="listed after LoadSourceWeights"):
        trainer(tmp_path / "t", callbacks=callbacks).fit(model, _loader(1))
    assert model.global_step == 0


def test_calibrate_source_without_masks_fails_before_training(tmp_path):
    path = tmp_path / "dense.ckpt"
    torch.save({"state_dict": TinyNet().state_dict()}, path)
    model = TinyNet()
    callbacks = [LoadSourceWeights(str(path)), GradientMask("calibrate")]
    with pytest.raises(ValueError, match=r"dense\.ckpt.*carries no PAC-Net masks"):
        trainer(callbacks=callbacks).fit(model, TinyData())
    assert model.global_step == 0


def test_load_source_weights_errors_name_entry(tmp_path):
    _, ckpt = _allocated_source(tmp_path, "head")
    target = Classifier(3)
    with pytest.raises(ValueError, match=r"'head\.weight' has shape"):
        load_source_weights(target, ckpt)
    copied = load_source_weights(target, ckpt, skip=["head"])
    assert "head.weight" not in copied and "body.0.weight" in copied
    with pytest.raises(FileNotFoundError):
        LoadSourceWeights(str(tmp_path / "missing.ckpt"))


def test_state_swapped_with_aliased_modules_and_other_shapes(tmp_path):
    """A module registered under two names is swapped once; a head of another size swaps in."""
    _, ckpt = _allocated_source(tmp_path, "head")
    target = Classifier(3).eval()
    load_source_weights(target, ckpt, skip=["head"])
    target.alias = target.body  # same module, second name
    state = checkpoint_state_dict(ckpt)
    state.update({"alias." + k[5:]: v for k, v in state.items() if k.startswith("body.")})
    before = {k: v.clone() for k, v in target.state_dict().items()}
    with torch.no_grad(), state_swapped(target, state):
        assert target(torch.randn(2, 6)).shape == (2, 5)
    assert target(torch.randn(2, 6)).shape == (2, 3)
    for k, v in target.state_dict().items():
        assert torch.equal(v, before[k]), k
    with (
        pytest.raises(ValueError, match=r"'extra\.weight' is not in the model"),
        state_swapped(target, {"extra.weight": torch.zeros(1)}),
    ):
        pass


def test_source_state_of_a_model_without_pac_state_is_an_error():
    with pytest.raises(ValueError, match="carries no PAC-Net state") as error:
        source_state_dict(TinyNet())
    # the message says what to do for a model loaded with load_from_checkpoint
    assert "source_view(model, 'calibrate.ckpt')" in str(error.value)
    assert pac_state(TinyNet()) is None
