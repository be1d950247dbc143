"""LoRA baseline (peft adapters): trains adapters and the new head only, keeps norm statistics,
and gives the source model back bit for bit with the adapters disabled."""

import copy
import sys

import pytest
import torch
from pac_tiny import TinyData, TinyNet, trainer
from torch import nn

pytest.importorskip("peft")

from pl_pac_trs.models import SmallCNN
from pl_pac_trs.pac import LoadSourceWeights, state_swapped
from pl_pac_trs.pac.lora import (
    LORA_CHECKPOINT_KEY,
    LoRA,
    adapter_state_dict,
    adapters_disabled,
    base_state_dict,
    load_adapted,
)


class DigitsLike(torch.utils.data.Dataset):
    def __init__(self, n=32, classes=4, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 1, 8, 8, generator=g)
        self.y = torch.randint(0, classes, (n,), generator=g)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def _loader(seed=0, classes=4):
    return torch.utils.data.DataLoader(DigitsLike(classes=classes, seed=seed), batch_size=8)


def _source_cnn(tmp_path):
    """A trained 6-class SmallCNN saved as a Lightning checkpoint (the source model)."""
    torch.manual_seed(0)
    src = SmallCNN(num_classes=6, channels=[4, 8], lr=0.01)
    t = trainer(tmp_path, max_epochs=2)
    t.fit(src, _loader(classes=6))
    path = tmp_path / "source.ckpt"
    t.save_checkpoint(path)
    return src.eval(), path


def _target_fit(tmp_path, path, callbacks_after=(), **model_kwargs):
    torch.manual_seed(1)
    model = SmallCNN(num_classes=4, channels=[4, 8], **model_kwargs)
    lora = LoRA(rank=2, alpha=4, new_modules=["head"])
    t = trainer(
        tmp_path,
        max_epochs=3,
        callbacks=[LoadSourceWeights(path, skip=["head"]), lora, *callbacks_after],
    )
    t.fit(model, _loader(seed=1))
    return model, t, lora


def _lora_trainer(tmp_path, path, max_epochs=4, alpha=4):
    """A trainer of the LoRA stage from the source checkpoint ``path`` (rank 2, a new head)."""
    callbacks = [
        LoadSourceWeights(path, skip=["head"]),
        LoRA(rank=2, alpha=alpha, new_modules="head"),
    ]
    return trainer(tmp_path, max_epochs=max_epochs, callbacks=callbacks)


def _source_head(path):
    state = torch.load(path, weights_only=True)["state_dict"]
    return {k: v for k, v in state.items() if k.startswith("head.")}


def test_trains_adapters_and_head_only_and_recovers_source_bit_for_bit(tmp_path):
    src, path = _source_cnn(tmp_path)
    source_state = {k: v.clone() for k, v in src.state_dict().items()}
    # AdamW with weight decay: decoupled decay would move any parameter the optimizer held
    model, _, lora = _target_fit(tmp_path, path, optimizer="adamw", weight_decay=0.1, lr=0.01)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)
    assert lora.spec is not None and lora.spec["r"] == 2
    # the adapters learnt something: the adapted model differs from the source body
    x = torch.randn(16, 1, 8, 8)
    model.eval()
    assert any(v.abs().sum() > 0 for k, v in adapter_state_dict(model).items() if "lora_B" in k)
    # with the adapters off and the source head back: the source model, state and outputs
    with adapters_disabled(model), state_swapped(model, _source_head(path)):
        base = base_state_dict(model)
        assert set(base) == set(source_state)
        for name, value in source_state.items():
            assert torch.equal(base[name], value), name  # BN running stats included
        assert torch.equal(model(x), src(x))
    # outside the context the adapters are on again, with their trainability
    with torch.no_grad():
        out = model(x)
    assert out.shape == (16, 4)
    assert {n for n, p in model.named_parameters() if p.requires_grad} == trainable


def test_norm_layers_run_in_eval_mode_during_the_fit(tmp_path):
    _, path = _source_cnn(tmp_path)
    seen = []

    from lightning.pytorch import Callback

    class Spy(Callback):
        def on_train_batch_end(self, trainer, pl_module, *args):
            seen.extend(m.training for m in pl_module.modules() if isinstance(m, nn.BatchNorm2d))

    _target_fit(tmp_path, path, callbacks_after=[Spy()])
    assert seen and not any(seen)


def test_nan_step_leaves_the_source_intact(tmp_path):
    """A NaN loss poisons the adapters (their gradients are NaN), never the frozen base."""
    torch.manual_seed(0)
    model = TinyNet(hidden=(8, 8), batch_norm=True, optimizer="adamw")
    source = copy.deepcopy(model).eval()

    original = model.training_step

    def training_step(batch, batch_idx):
        loss = original(batch, batch_idx)
        return loss * float("nan") if batch_idx == 2 else loss

    model.training_step = training_step
    trainer(callbacks=[LoRA(rank=2)], max_epochs=2).fit(model, TinyData())
    assert any(not torch.isfinite(v).all() for v in adapter_state_dict(model).values())
    x = torch.randn(8, 5)
    model.eval()
    with adapters_disabled(model):
        assert torch.equal(model(x), source(x))
        base = base_state_dict(model)
        for name, value in source.state_dict().items():
            assert torch.equal(base[name], value), name


def test_merged_adapters_are_refused():
    torch.manual_seed(0)
    model = TinyNet(hidden=(8,))
    trainer(callbacks=[LoRA(rank=2)], max_epochs=1).fit(model, TinyData())
    model.body[0].merge()
    with pytest.raises(ValueError, match="merged"), adapters_disabled(model):
        pass


def test_no_head_every_linear_adapted_and_exclude(tmp_path):
    torch.manual_seed(0)
    model = TinyNet(hidden=(8,))
    trainer(callbacks=[LoRA(rank=1, exclude=["body.0"])], max_epochs=1).fit(model, TinyData())
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all(n.startswith("head.lora_") for n in names)


def test_checkpoint_round_trip_and_resume(tmp_path):
    _, path = _source_cnn(tmp_path)
    model, t, _ = _target_fit(tmp_path, path)
    ckpt = tmp_path / "lora.ckpt"
    t.save_checkpoint(ckpt)
    raw = torch.load(ckpt, weights_only=True)
    assert LORA_CHECKPOINT_KEY in raw
    assert any(".base_layer." in k for k in raw["state_dict"])
    loaded = load_adapted(SmallCNN, ckpt).eval()
    model.eval()
    x = torch.randn(8, 1, 8, 8)
    assert torch.equal(loaded(x), model(x))
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    with adapters_disabled(loaded), adapters_disabled(model):
        assert torch.equal(loaded(x), model(x))
    # the package's task models also load it with Lightning's own load_from_checkpoint
    plain = SmallCNN.load_from_checkpoint(ckpt, weights_only=True).eval()
    assert torch.equal(plain(x), model(x))
    # a plain checkpoint is refused with a message naming the way
    with pytest.raises(ValueError, match="not written by a LoRA fit"):
        load_adapted(SmallCNN, path)
    # resuming the fit from the checkpoint: adapters injected at setup, then restored
    torch.manual_seed(5)
    again = SmallCNN(num_classes=4, channels=[4, 8])
    t2 = _lora_trainer(tmp_path, path)
    t2.fit(again, _loader(seed=1), ckpt_path=ckpt)
    assert t2.global_step > t.global_step


def test_lora_and_fine_tuning_checkpoints_are_told_apart(tmp_path):
    """A LoRA checkpoint resumed by a fine-tuning fit is refused by the stage check, naming the
    file and LoRA; a fine-tuning one resumed by a LoRA fit, and a LoRA resume with other adapter
    settings, are refused too."""
    _, path = _source_cnn(tmp_path)
    _, t, _ = _target_fit(tmp_path, path)
    lora_ckpt = tmp_path / "lora.ckpt"
    t.save_checkpoint(lora_ckpt)
    assert torch.load(lora_ckpt, weights_only=True)["callbacks"]["LoRA"] == {
        "rank": 2,
        "alpha": 4.0,
    }
    finetune = trainer(tmp_path, max_epochs=4, callbacks=[LoadSourceWeights(path, skip=["head"])])
    with pytest.raises(ValueError, match=r"lora\.ckpt' was written by another stage.*'LoRA'"):
        finetune.fit(SmallCNN(num_classes=4, channels=[4, 8]), _loader(seed=1), ckpt_path=lora_ckpt)
    finetune = trainer(tmp_path, max_epochs=1, callbacks=[LoadSourceWeights(path, skip=["head"])])
    finetune.fit(SmallCNN(num_classes=4, channels=[4, 8]), _loader(seed=1))
    ft_ckpt = tmp_path / "finetune.ckpt"
    finetune.save_checkpoint(ft_ckpt)
    lora_fit = _lora_trainer(tmp_path, path)
    # (the adapted model's parameter names differ: Lightning's strict load refuses it first)
    adapted = SmallCNN(num_classes=4, channels=[4, 8])
    with pytest.raises(RuntimeError, match=r"Missing key\(s\).*base_layer"):
        lora_fit.fit(adapted, _loader(seed=1), ckpt_path=ft_ckpt)
    assert lora_fit.global_step == 0
    other_alpha = _lora_trainer(tmp_path, path, alpha=8)
    with pytest.raises(ValueError, match=r"rank=2, alpha=4.0; this fit has rank=2, alpha=8.0"):
        other_alpha.fit(
            SmallCNN(num_classes=4, channels=[4, 8]), _loader(seed=1), ckpt_path=lora_ckpt
        )


def test_second_fit_keeps_the_adapters(tmp_path):
    torch.manual_seed(0)
    model = TinyNet(hidden=(8,))
    source = copy.deepcopy(model).eval()
    trainer(callbacks=[LoRA(rank=2)], max_epochs=1).fit(model, TinyData())
    first = {k: v.clone() for k, v in adapter_state_dict(model).items()}
    lora = LoRA(rank=2)
    trainer(callbacks=[lora], max_epochs=1).fit(model, TinyData())
    assert set(adapter_state_dict(model)) == set(first)
    assert lora.spec is not None
    assert any(not torch.equal(first[k], v) for k, v in adapter_state_dict(model).items())
    x = torch.randn(4, 5)
    with adapters_disabled(model.eval()):
        assert torch.equal(model(x), source(x))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rank": 0}, "rank"),
        ({"rank": 2.5}, "rank"),
        ({"alpha": float("nan")}, "alpha"),
        ({"alpha": -1}, "alpha"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        LoRA(**kwargs)


def test_setup_errors(tmp_path):
    with pytest.raises(ValueError, match="new_modules 'classifier' matches no parameter"):
        trainer(callbacks=[LoRA(new_modules=["classifier"])]).fit(TinyNet(), TinyData())
    with pytest.raises(ValueError, match="no module"):
        trainer(callbacks=[LoRA(exclude=["body", "head"])]).fit(TinyNet(), TinyData())


def test_missing_peft_is_one_clear_line(monkeypatch, tmp_path, capsys):
    from pl_pac_trs.apps.cli import main as cli_main

    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ImportError, match=r"pip install 'pl-pac-trs\[peft\]'"):
        LoRA()
    monkeypatch.setattr("importlib.util.find_spec", lambda name, *a: None)
    argv = ["pac", "friedman", "--baselines", "lora", "--out", str(tmp_path), "--no-wandb"]
    assert cli_main(argv) == 2  # before any stage runs
    assert "pip install 'pl-pac-trs[peft]'" in capsys.readouterr().err
    assert not (tmp_path / "source.ckpt").exists()


def test_bf16_mixed_with_model_checkpoint_and_a_head_of_another_name(tmp_path):
    """A user's model whose new head is ``classifier``, bf16 autocast, Lightning's own
    ModelCheckpoint beside LoRA: the checkpoint it writes loads back with the adapters."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    class Named(TinyNet):
        def __init__(self):
            super().__init__(hidden=(8,), batch_norm=True, optimizer="adamw")
            self.classifier = self.head
            del self.head

        def forward(self, x):
            return self.classifier(self.body(x))

        def predict_step(self, batch, batch_idx):
            return self(batch[0])

    torch.manual_seed(0)
    model = Named()
    source = copy.deepcopy(model).eval()
    ckpts = tmp_path / "ckpts"
    t = trainer(
        tmp_path,
        max_epochs=2,
        precision="bf16-mixed",
        enable_checkpointing=True,
        callbacks=[LoRA(rank=2, new_modules=["classifier"]), ModelCheckpoint(dirpath=ckpts)],
    )
    t.fit(model, TinyData())
    model.eval()
    x = torch.randn(6, 5)
    with adapters_disabled(model):
        base = base_state_dict(model)
        for name, value in source.state_dict().items():
            if not name.startswith("classifier."):
                assert torch.equal(base[name], value), name
    (path,) = ckpts.glob("*.ckpt")
    loaded = load_adapted(Named, path).eval()
    assert torch.equal(loaded(x), model(x))
    batches = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=6)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert torch.equal(t.predict(model, batches)[0], model(x))  # predict runs under bf16
