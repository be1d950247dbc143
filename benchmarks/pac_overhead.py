"""Per-step overhead of PAC-Net's GradientMask vs plain training, and mask memory.

A/B interleaved in one process: two identical models with the same optimizer take alternating
steps on the same batches; B has a GradientMask attached (its ``on_before_optimizer_step``
gradient masking + the optimizer post-step hook, exactly the work the callback adds inside a
Lightning fit). Step = forward, backward, [mask], optimizer step, zero_grad. Three optimizers:
``adamw``, AdamW with weight decay 0.01 (calibrate then restores the essential weights after
every step, since decoupled decay moves them); ``adam``, Adam without weight decay (the shipped
PAC configs'; both phases then cost the gradient masking alone on most steps); ``adamw_fused``,
the same AdamW with ``fused=True``. Inside Lightning, with the task models' own Adam, plain
(``adam``) and with ``fused=True`` (``adam_fused``), two designs: *paired*, both copies in one
fit (manual optimisation, alternate steps, only one under the callback: the A/B without
fit-to-fit noise), and *separate fits* alternating between the arms (the automatic-optimisation
step as a user runs it, whole batch loop included, but with several points of fit-to-fit
noise). Medians over interleaved steps; target: overhead <= 5 % on CPU.

The models are first trained on their shipped PAC source task and pruned with the shipped
global ranking (``--masks fresh``: untrained models, per-layer masks), so that the masks have
the structure the method gives them.

Columns: ``callback`` is the callback's own work (its two hooks, timed around them) as a share of
the plain step. The rest of the overhead is the optimizer running slower on the pruned model:
``zero v`` is the share of the masked tensors' *trainable* entries whose second moment is
exactly zero at the end (entries with an exactly-zero gradient at every step, e.g. the incoming
weights of a hidden unit whose outgoing weights are all pruned), and torch's CPU ``sqrt`` of
exactly-zero values is many times slower than of non-zero ones on some machines (the probe line
measures it). The callback tidies the *frozen* entries' state so they never hit it; trainable
entries' state it must not touch. The MLP rows sweep width and batch: the callback's work grows
with the parameter count only, the step with parameters x batch, so the relative overhead is
largest for small models at small batches.

    python benchmarks/pac_overhead.py            # CPU: digits CNN and MLPs (+ CUDA ResNet-18
                                                 # sized CNN when torch.cuda.is_available())
    python benchmarks/pac_overhead.py --masks fresh --lightning-rounds 0 --paired-rounds 0
    # the frozen entries' optimizer-state tidying off (restored after every step instead)
    python benchmarks/pac_overhead.py --state-tidy-every 0
    # GPU: the non-finite guard read every step vs its default (every 50 steps, no sync)
    python benchmarks/pac_overhead.py --masks fresh --lightning-rounds 0 --paired-rounds 0 \
        --check-every 1
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time
import timeit
from functools import partial
from types import SimpleNamespace

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from pl_pac_trs.data.digits import DigitsTransferDataModule
from pl_pac_trs.data.friedman import FriedmanTransferDataModule
from pl_pac_trs.models import MLPRegressor, SmallCNN
from pl_pac_trs.pac import GradientMask, MagnitudePruning, compute_masks
from pl_pac_trs.pac.masked_optimizer import STATE_TIDY_EVERY

# the two task models of configs/pac (digits CNN, Friedman MLP) and a wider MLP
LIGHTNING_CASES = (
    "digits SmallCNN (batch 64, 8x8)",
    "MLP 10-64-64-1 (batch 64)",
    "MLP 10-256-256-1 (batch 64)",
)


class _Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(y)) + self.skip(x))


class ResNet18Like(nn.Module):
    """ResNet-18 layout (BasicBlocks [2, 2, 2, 2], 64..512 channels, ~11 M parameters).

    ``width``: channels of the first stage (default 64, ResNet-18's; the stages have ``width``,
    ``2 width``, ``4 width``, ``8 width``); a narrow one keeps the layout for quick CPU runs."""

    def __init__(self, num_classes: int = 40, width: int = 64) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(3, width, 3, 1, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
        ]
        cin = width
        for factor, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
            cout = factor * width
            layers += [_Block(cin, cout, stride), _Block(cout, cout, 1)]
            cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(8 * width, num_classes)

    def forward(self, x):
        return self.head(self.body(x))


def resnet_batches(
    batch: int = 128, size: int = 32, count: int = 8, num_classes: int = 40
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Random image batches for :class:`ResNet18Like` (it has no task to train on: untrained,
    per-layer masks): ``count`` pairs of ``(batch, 3, size, size)`` images and class labels."""
    return [
        (torch.randn(batch, 3, size, size), torch.randint(0, num_classes, (batch,)))
        for _ in range(count)
    ]


def _masks(model: nn.Module, scope: str = "global") -> dict[str, torch.Tensor]:
    """The benchmark's masks at amount 0.8: ``global`` (the shipped configs') of the
    source-trained weights, or ``layer`` (per-layer ranking, used for untrained models: global
    masks of a freshly initialised CNN prune its whole head)."""
    return compute_masks(MagnitudePruning().targets(model), 0.8, scope)


def _source_batches(task: str, batch: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Full batches of the shipped PAC source tasks' training data (as in ``configs/pac``)."""
    if task == "friedman":
        dm = FriedmanTransferDataModule(task="source", n_source=2000, batch_size=batch)
    else:
        dm = DigitsTransferDataModule(task="source", batch_size=batch)
    dm.setup("fit")
    return [(x, y) for x, y in dm.train_dataloader() if len(x) == batch]


_TRAINED: dict[str, dict[str, torch.Tensor]] = {}


def source_trained(name: str, make_model, batches, loss_fn, epochs: int) -> nn.Module:
    """``make_model()`` after ``epochs`` passes of Adam (lr 3e-3, the shipped configs') over
    ``batches``: masks are computed from trained weights, as in the method (cached by name)."""
    model = make_model()
    if name not in _TRAINED:
        torch.manual_seed(0)
        opt = torch.optim.Adam(model.parameters(), lr=3e-3)
        for _ in range(epochs):
            for x, y in batches:
                opt.zero_grad(set_to_none=True)
                loss_fn(model(x), y).backward()
                opt.step()
        _TRAINED[name] = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.load_state_dict(_TRAINED[name])
    return model


def _attach(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    phase: str,
    scope: str = "global",
    check_every: int | None = None,
    tidy_every: int = STATE_TIDY_EVERY,
) -> GradientMask:
    masks = _masks(model, scope)
    cb = GradientMask(phase, masks=masks, verbose=False, check_every=check_every)
    cb.state_tidy_every = tidy_every
    fake_trainer = SimpleNamespace(optimizers=[opt], is_global_zero=True, loggers=[], global_step=0)
    cb.attach(fake_trainer, model, cb.masks or masks)
    return cb


def _now(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


OPTIMIZERS = {
    "adamw": lambda params: torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01),
    "adam": lambda params: torch.optim.Adam(params, lr=1e-3),
    # one fused kernel per tensor: no separate sqrt pass (so no slow sqrt of zeros), and a
    # cheaper step, against which the callback's own work weighs more
    "adamw_fused": lambda params: torch.optim.AdamW(params, lr=1e-3, weight_decay=0.01, fused=True),
}


def bench(
    name,
    make_model,
    batches,
    loss_fn,
    device,
    phase,
    steps,
    optimizer="adamw",
    scope="global",
    warmup=10,
    autocast: torch.dtype | None = None,
    check_every: int | None = None,
    tidy_every: int = STATE_TIDY_EVERY,
) -> dict:
    """Bare-loop A/B: ``make_model()`` twice (same weights), B under ``GradientMask``.

    ``check_every``: ``GradientMask(check_every=...)``, the host reads of the non-finite guard
    (``None``: its default, every step on the CPU, every 50 steps here on an accelerator).
    ``tidy_every``: ``GradientMask.state_tidy_every`` (``0``: no tidying of the frozen entries'
    optimizer state; they are then restored after every step).

    ``autocast``: run forward and loss under ``torch.autocast(device.type, dtype=autocast)``
    (e.g. ``torch.bfloat16``: the step of a ``precision="bf16-mixed"`` fit, fp32 weights and
    optimizer); ``None``: full precision."""
    torch.manual_seed(0)
    a = make_model().to(device)
    b = make_model().to(device)
    b.load_state_dict(a.state_dict())
    opt_a = OPTIMIZERS[optimizer](a.parameters())
    opt_b = OPTIMIZERS[optimizer](b.parameters())
    marks: dict[str, float] = {}
    # post-step hooks run in registration order: these two bracket the callback's
    opt_b.register_step_post_hook(lambda *_: marks.__setitem__("updated", _now(device)))
    cb = _attach(b, opt_b, phase, scope, check_every, tidy_every)
    opt_b.register_step_post_hook(lambda *_: marks.__setitem__("restored", _now(device)))
    batches = [(x.to(device), y.to(device)) for x, y in batches[:8]]
    times: dict[str, list[float]] = {"plain": [], "masked": [], "callback": []}

    def step(model, opt, x, y, masked):
        t0 = _now(device)
        with torch.autocast(device.type, dtype=autocast, enabled=autocast is not None):
            loss = loss_fn(model(x), y)
        loss.backward()
        if masked:
            t1 = _now(device)
            cb.on_before_optimizer_step(None, model, opt)
            t2 = _now(device)
        opt.step()  # the callback's post-step hook restores frozen entries where needed
        if masked:
            marks["callback"] = (t2 - t1) + (marks["restored"] - marks["updated"])
        opt.zero_grad(set_to_none=True)
        return _now(device) - t0

    for i in range(warmup + steps):
        x, y = batches[i % len(batches)]
        order = (("plain", a, opt_a), ("masked", b, opt_b))
        if i % 2:
            order = order[::-1]  # alternate which goes first
        for key, model, opt in order:
            dt = step(model, opt, x, y, key == "masked")
            if i >= warmup:
                times[key].append(dt)
                if key == "masked":
                    times["callback"].append(marks["callback"])
    plain, masked = statistics.median(times["plain"]), statistics.median(times["masked"])
    n_prunable = sum(m.numel() for m in cb.masks.values())
    mask_bytes = sum(m.numel() * m.element_size() for m in cb.masks.values())
    stored = sum(group.memory()["essential"] for group in cb.groups)
    params = dict(b.named_parameters())
    trainable = zero_v = 0
    for pname, mask in cb.masks.items():
        live = mask if phase == "allocate" else ~mask
        trainable += int(live.sum())
        zero_v += int((opt_b.state[params[pname]]["exp_avg_sq"][live] == 0).sum())
    return {
        "model": name,
        "device": str(device),
        "phase": phase,
        "optimizer": optimizer,
        "plain_ms": plain * 1e3,
        "masked_ms": masked * 1e3,
        "overhead_pct": 100 * (masked / plain - 1),
        "callback_pct": 100 * statistics.median(times["callback"]) / plain,
        "zero_v_pct": 100 * zero_v / max(trainable, 1),
        "mask_bytes_per_param": mask_bytes / n_prunable,
        "stored_bytes_per_param": stored / n_prunable,
        "prunable_params": n_prunable,
    }


_QUIET_CPU = {
    "logger": False,
    "enable_checkpointing": False,
    "enable_progress_bar": False,
    "enable_model_summary": False,
    "accelerator": "cpu",
}
"""Trainer options of the timed fits: nothing but the training loop."""


def _loader(batches: list[tuple[torch.Tensor, torch.Tensor]], repeats: int = 1) -> DataLoader:
    """The timed fits' data: ``batches`` in order, ``repeats`` times over, unshuffled."""
    return DataLoader(
        TensorDataset(
            torch.cat([x for x, _ in batches] * repeats),
            torch.cat([y for _, y in batches] * repeats),
        ),
        batch_size=len(batches[0][0]),
    )


def _lightning_result(name: str, phase: str, times: dict[str, list[float]]) -> dict:
    """Medians of the two arms' steps and of the callback's own time (a share of the plain)."""
    plain, masked = statistics.median(times["plain"]), statistics.median(times["masked"])
    return {
        "model": name,
        "phase": phase,
        "plain_ms": plain * 1e3,
        "masked_ms": masked * 1e3,
        "overhead_pct": 100 * (masked / plain - 1),
        "callback_pct": 100 * statistics.median(times["callback"]) / plain,
    }


class _StepTimer(Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        self._t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.times.append(time.perf_counter() - self._t0)


class _TimedGradientMask(GradientMask):
    """GradientMask that times its own per-step hooks (the callback's work inside a fit): its
    Lightning hooks, and its optimizer post-step hook between two timing hooks registered
    around it (post-step hooks run in registration order)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.spent: list[float] = []  # per optimizer step
        self._t = 0.0
        self._t0 = 0.0

    def attach(self, trainer, pl_module, masks=None):
        masks = self.masks if masks is None else masks
        masked = {id(p) for name, p in pl_module.named_parameters() if name in masks}
        optimizers = [  # those the callback hooks: they update masked weights
            opt
            for opt in trainer.optimizers
            if any(id(p) in masked for group in opt.param_groups for p in group["params"])
        ]
        for opt in optimizers:
            opt.register_step_post_hook(self._post_step_starts)
        super().attach(trainer, pl_module, masks)
        for opt in optimizers:
            opt.register_step_post_hook(self._post_step_ends)

    def _post_step_starts(self, optimizer, args, kwargs):
        self._t0 = time.perf_counter()

    def _post_step_ends(self, optimizer, args, kwargs):
        self.spent.append(self._t + time.perf_counter() - self._t0)
        self._t = 0.0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        t0 = time.perf_counter()
        super().on_train_batch_start(trainer, pl_module, batch, batch_idx)
        self._t += time.perf_counter() - t0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer):
        t0 = time.perf_counter()
        super().on_before_optimizer_step(trainer, pl_module, optimizer)
        self._t += time.perf_counter() - t0


def bench_lightning(
    name,
    make_model,
    batches,
    phase,
    scope="global",
    rounds=10,
    steps=100,
    fused=False,
    tidy_every=STATE_TIDY_EVERY,
) -> dict:
    """Same A/B inside Lightning fits (the step as Lightning runs it), alternating fits; the
    masked arm also times the callback's own hooks (``callback_pct`` of the plain step)."""
    data = _loader(batches[:8])
    times: dict[str, list[float]] = {"plain": [], "masked": [], "callback": []}
    skip = min(10, steps // 2)
    for r in range(2 * rounds):
        key = ("plain", "masked")[(r + r // 2) % 2]
        torch.manual_seed(0)
        model = make_model()
        model.fused = fused  # TaskModule: configure_optimizers passes it on
        timer = _StepTimer()
        callbacks = [timer]
        if key == "masked":
            mask_cb = _TimedGradientMask(phase, masks=_masks(model, scope), verbose=False)
            mask_cb.state_tidy_every = tidy_every
            callbacks.append(mask_cb)
        Trainer(max_steps=steps, callbacks=callbacks, **_QUIET_CPU).fit(model, data)
        times[key] += timer.times[skip:]
        if key == "masked":
            times["callback"] += mask_cb.spent[skip:]
    return _lightning_result(name, phase, times)


class _PairedArms(LightningModule):
    """Two copies of a task model in one fit (manual optimisation), stepped alternately on each
    batch: the A/B inside Lightning without the fit-to-fit noise of separate fits. Each arm's
    step (zero_grad, forward, backward, ``optimizer.step()`` through Lightning's optimizer
    wrapper and its callback hooks) is timed on its own."""

    def __init__(self, make_model, loss_fn, fused: bool) -> None:
        super().__init__()
        self.automatic_optimization = False
        torch.manual_seed(0)
        self.plain = make_model()
        self.masked = make_model()
        self.masked.load_state_dict(self.plain.state_dict())
        for arm in (self.plain, self.masked):
            arm.fused = fused  # TaskModule: configure_optimizers passes it on
        self.loss_fn = loss_fn
        self.times: dict[str, list[float]] = {"plain": [], "masked": []}

    def configure_optimizers(self):
        # after the callback's setup: calibrate has frozen the masked arm's shared parameters
        return [self.plain.configure_optimizers(), self.masked.configure_optimizers()]

    def training_step(self, batch, batch_idx):
        x, y = batch
        arms = [("plain", self.plain), ("masked", self.masked)]
        if batch_idx % 2:
            arms.reverse()  # alternate which goes first
        for key, model in arms:
            opt = self.optimizers()[0 if key == "plain" else 1]
            t0 = time.perf_counter()
            opt.zero_grad(set_to_none=True)
            self.manual_backward(self.loss_fn(model(x), y))
            opt.step()
            self.times[key].append(time.perf_counter() - t0)


def bench_lightning_paired(
    name,
    make_model,
    batches,
    loss_fn,
    phase,
    scope="global",
    rounds=2,
    steps=300,
    fused=False,
    tidy_every=STATE_TIDY_EVERY,
) -> dict:
    """A/B of the two arms of :class:`_PairedArms` in the same fits; ``callback_pct`` is the
    callback's own hooks (timed inside the fit) as a share of the plain arm's step."""
    batches = batches[:8]
    data = _loader(batches, repeats=-(-steps // len(batches)))  # at least ``steps`` batches
    times: dict[str, list[float]] = {"plain": [], "masked": [], "callback": []}
    skip = min(10, steps // 2)
    for _ in range(rounds):
        pair = _PairedArms(make_model, loss_fn, fused)
        masks = {f"masked.{k}": m for k, m in _masks(pair.masked, scope).items()}
        mask_cb = _TimedGradientMask(phase, masks=masks, new_modules=("plain",), verbose=False)
        mask_cb.state_tidy_every = tidy_every
        trainer = Trainer(
            max_epochs=1, limit_train_batches=steps, callbacks=[mask_cb], **_QUIET_CPU
        )
        trainer.fit(pair, data)
        times["plain"] += pair.times["plain"][skip:]
        times["masked"] += pair.times["masked"][skip:]
        times["callback"] += mask_cb.spent[skip:]
    return _lightning_result(name, phase, times)


SOURCE_EPOCHS = {"digits": 15, "friedman": 30}
"""Source training epochs of the shipped configs (``configs/pac/<task>/prune.yaml``)."""


def cases(masks: str = "trained", source_epochs: int | None = None) -> list[tuple]:
    """(name, make_model, batches, loss, device, mask scope) per benchmarked model.

    ``masks="trained"``: each model is first trained on its shipped PAC source task (digits
    classes 0-5, Friedman #1 source; Adam at lr 3e-3 for ``source_epochs``, default the shipped
    configs' epochs) and pruned with the shipped configs' global ranking, so the masks have the
    structure the method gives them (how many hidden units lose every outgoing weight depends on
    it). ``"fresh"``: untrained models, per-layer masks.
    """
    cpu = torch.device("cpu")
    mse = nn.functional.mse_loss
    ce = nn.functional.cross_entropy
    specs = [
        ("digits SmallCNN (batch 64, 8x8)", partial(SmallCNN, num_classes=6), "digits", 64, ce),
        *(
            (
                f"MLP 10-{width}-{width}-1 (batch {batch})",
                partial(MLPRegressor, hidden=(width, width)),
                "friedman",
                batch,
                mse,
            )
            for width, batch in ((64, 64), (256, 64), (256, 256), (1024, 256))
        ),
    ]
    out = []
    for name, make, task, batch, loss in specs:
        batches = _source_batches(task, batch)
        if masks == "trained":
            epochs = source_epochs or SOURCE_EPOCHS[task]
            trained = partial(source_trained, name, make, batches, loss, epochs)
            out.append((name, trained, batches, loss, cpu, "global"))
        else:
            out.append((name, make, batches, loss, cpu, "layer"))
    if torch.cuda.is_available():
        # no data to train on: an untrained model with per-layer masks
        name = "ResNet-18-sized CNN (batch 128, 32x32)"
        out.append((name, ResNet18Like, resnet_batches(), ce, torch.device("cuda"), "layer"))
    return out


BARE, PAIRED, SEPARATE = "bare step", "paired in one Lightning fit", "inside Lightning fit"
"""The three settings of :func:`measure`'s rows (``row["setting"]``)."""


def measure(
    steps: int = 200,
    lightning_rounds: int = 10,
    lightning_steps: int = 100,
    paired_rounds: int = 2,
    paired_steps: int = 300,
    masks: str = "trained",
    source_epochs: int | None = None,
    on_row=None,
    check_every: int | None = None,
    tidy_every: int = STATE_TIDY_EVERY,
) -> list[dict]:
    """Every table of this benchmark as rows (one dict per model x optimizer x phase x setting).

    Args:
        steps: Timed steps of each bare A/B.
        lightning_rounds: Alternating fits per arm inside Lightning (0 skips them).
        lightning_steps: Steps per such fit.
        paired_rounds: Fits of the paired A/B (0 skips them).
        paired_steps: Batches per paired fit.
        masks: ``"trained"`` or ``"fresh"`` (see :func:`cases`).
        source_epochs: Source training epochs before pruning (default: the shipped configs').
        on_row: Called with each row as soon as it is measured (e.g. to print it).
        check_every: The bare rows' ``GradientMask(check_every=...)`` (``None``: its default).
        tidy_every: Every row's ``GradientMask.state_tidy_every``.

    Returns:
        Rows with ``setting`` (:data:`BARE`, :data:`PAIRED`, :data:`SEPARATE`), ``model``,
        ``device``, ``phase``, ``optimizer``, ``plain_ms``, ``masked_ms``, ``overhead_pct``,
        ``callback_pct`` and ``zero_v_pct`` (``None`` inside Lightning); bare rows also carry the
        mask memory (``mask_bytes_per_param``, ``stored_bytes_per_param``, ``prunable_params``).
    """
    rows: list[dict] = []

    def add(row: dict) -> None:
        rows.append(row)
        if on_row is not None:
            on_row(row)

    all_cases = cases(masks, source_epochs)
    for name, make_model, batches, loss, device, scope in all_cases:
        for optimizer in OPTIMIZERS:
            for phase in ("allocate", "calibrate"):
                r = bench(
                    name, make_model, batches, loss, device, phase, steps, optimizer, scope,
                    check_every=check_every, tidy_every=tidy_every,
                )  # fmt: skip
                add({"setting": BARE, **r})
    lightning = logging.getLogger("lightning.pytorch")
    level = lightning.level
    lightning.setLevel(logging.WARNING)
    try:
        fits = [c for c in all_cases if c[4].type == "cpu" and c[0] in LIGHTNING_CASES]
        for setting, rounds in ((PAIRED, paired_rounds), (SEPARATE, lightning_rounds)):
            if rounds < 1:
                continue
            for name, make_model, batches, loss, _, scope in fits:
                for fused in (False, True):
                    for phase in ("allocate", "calibrate"):
                        if setting == PAIRED:
                            r = bench_lightning_paired(
                                name, make_model, batches, loss, phase, scope, rounds=rounds,
                                steps=paired_steps, fused=fused, tidy_every=tidy_every,
                            )  # fmt: skip
                        else:
                            r = bench_lightning(
                                name, make_model, batches, phase, scope, rounds=rounds,
                                steps=lightning_steps, fused=fused, tidy_every=tidy_every,
                            )  # fmt: skip
                        # the task models' own configure_optimizers: Adam, no weight decay
                        optimizer = "adam_fused" if fused else "adam"
                        add({"setting": setting, "device": "cpu", "optimizer": optimizer,
                             "zero_v_pct": None, **r})  # fmt: skip
    finally:
        lightning.setLevel(level)
    return rows


def sqrt_probe(size: int = 1 << 16) -> dict:
    """``torch.sqrt`` over ``size`` zeros vs ones, in microseconds (best of 5 x 100 calls), and
    their ratio: the slow CPU path that tidying the frozen entries' state avoids."""
    zeros, ones = torch.zeros(size), torch.ones(size)
    us = {
        k: 1e6 * min(timeit.repeat(lambda x=x: torch.sqrt(x), number=100, repeat=5)) / 100
        for k, x in (("zeros", zeros), ("ones", ones))
    }
    return {"size": size, "zeros_us": us["zeros"], "ones_us": us["ones"],
            "ratio": us["zeros"] / us["ones"]}  # fmt: skip


def format_row(r: dict) -> str:
    """One printed table line of a :func:`measure` row."""
    line = (
        f"{r['model']:40s} {r['device']:6s} {r['phase']:9s} {r['optimizer']:11s} "
        f"{r['plain_ms']:9.3f} {r['masked_ms']:9.3f} {r['overhead_pct']:7.2f}% "
        f"{r['callback_pct']:7.2f}%"
    )
    if r["setting"] == BARE:
        line += (
            f" {r['zero_v_pct']:6.1f}% {r['mask_bytes_per_param']:12.2f} "
            f"{r['stored_bytes_per_param']:14.2f}"
        )
    return line


_TITLES = {
    PAIRED: "\npaired in one Lightning fit (CPU; both arms in the same fits, manual optimisation, "
    "step = zero_grad..optimizer.step of each arm)",
    SEPARATE: "\ninside Lightning fits (CPU; step = on_train_batch_start..end, alternating fits)",
}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument(
        "--lightning-rounds",
        type=int,
        default=10,
        help="alternating fits per arm (default 10; 0 skips the Lightning fits)",
    )
    parser.add_argument("--lightning-steps", type=int, default=100, help="steps per fit")
    parser.add_argument(
        "--paired-rounds",
        type=int,
        default=2,
        help="fits of the paired A/B, both arms in each fit (default 2; 0 skips them)",
    )
    parser.add_argument("--paired-steps", type=int, default=300, help="batches per paired fit")
    parser.add_argument(
        "--masks",
        choices=("trained", "fresh"),
        default="trained",
        help="masks of source-trained models, global ranking (default; what the method "
        "prunes), or of untrained models, per-layer ranking",
    )
    parser.add_argument(
        "--source-epochs",
        type=int,
        default=None,
        help="source training epochs before pruning (default: the shipped configs')",
    )
    parser.add_argument(
        "--check-every",
        type=int,
        default=None,
        help="bare rows: GradientMask(check_every=N), host reads of the non-finite guard "
        "(default: every step on CPU, every 50 steps on CUDA; compare 1 with 50 on a GPU)",
    )
    parser.add_argument(
        "--state-tidy-every",
        type=int,
        default=STATE_TIDY_EVERY,
        help="GradientMask.state_tidy_every of every row (0: no optimizer-state tidying, the "
        f"frozen entries restored after every step; default {STATE_TIDY_EVERY})",
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    print(f"masks: {args.masks} (amount 0.8)")
    print(
        f"{'model':40s} {'device':6s} {'phase':9s} {'optim':11s} {'plain ms':>9s} "
        f"{'masked ms':>9s} {'overhead':>8s} {'callback':>8s} {'zero v':>7s} "
        f"{'mask B/param':>12s} {'stored B/param':>14s}"
    )
    setting = [BARE]

    def show(row: dict) -> None:
        if row["setting"] != setting[0]:
            if setting[0] == BARE:
                _print_probe()
            setting[0] = row["setting"]
            print(_TITLES[row["setting"]])
        print(format_row(row), flush=True)

    def _print_probe() -> None:
        p = sqrt_probe()
        print(
            f"\nprobe: torch.sqrt over {p['size']} floats: zeros {p['zeros_us']:.1f} us, ones "
            f"{p['ones_us']:.1f} us (ratio {p['ratio']:.2f})"
        )

    rows = measure(
        args.steps, args.lightning_rounds, args.lightning_steps, args.paired_rounds,
        args.paired_steps, args.masks, args.source_epochs, on_row=show,
        check_every=args.check_every, tidy_every=args.state_tidy_every,
    )  # fmt: skip
    if setting[0] == BARE:
        _print_probe()
    return rows


if __name__ == "__main__":
    main()
