"""The LoRA settings grid (validation only) and the cost accounting of the PAC comparison."""

import pytest
import torch
import yaml

from benchmarks import pac_costs, pac_lora
from benchmarks.reproduce_pac import CONFIGS, TASKS


@pytest.mark.parametrize("task", TASKS)
def test_grid_configs_change_only_lr_rank_alpha(task, tmp_path):
    cells = pac_lora.grid(task)
    assert len(cells) == len(pac_lora.RANKS) * len(pac_lora.LR_FACTORS)
    assert all(c["alpha"] == 2 * c["rank"] for c in cells)
    setting = cells[-1]
    path = pac_lora.config_dir(task, setting, tmp_path)
    changed = yaml.safe_load((path / "lora.yaml").read_text())
    shipped = yaml.safe_load((CONFIGS / task / "lora.yaml").read_text())
    assert pac_lora.model_lr(changed) == setting["lr"]
    (lora,) = [c for c in changed["trainer"]["callbacks"] if c["class_path"].endswith(".LoRA")]
    assert (lora["init_args"]["rank"], lora["init_args"]["alpha"]) == (
        setting["rank"],
        setting["alpha"],
    )
    # the rest is the shipped config; the other stages are copied as they are
    model_args = changed["model"]["init_args"]
    if "lr" in model_args:
        model_args["lr"] = shipped["model"]["init_args"]["lr"]
    else:
        model_args["optimizer"] = shipped["model"]["init_args"]["optimizer"]
    for key in ("rank", "alpha"):
        lora["init_args"][key] = next(
            c for c in shipped["trainer"]["callbacks"] if c["class_path"].endswith(".LoRA")
        )["init_args"][key]
    assert changed == shipped
    assert (path / "source.yaml").read_text() == (CONFIGS / task / "source.yaml").read_text()


def test_best_needs_every_seed():
    rows = [
        {"task": "t", "seed": s, "label": lab, "setting": {}, "val_error": v, "identical": True}
        for s, lab, v in [(0, "a", 0.2), (1, "a", 0.2), (0, "b", 0.1)]
    ]
    cells = pac_lora.summarise(rows)["t"]
    assert pac_lora.best(cells, seeds=2) == "a"
    assert pac_lora.best(cells, seeds=1) == "b"


def test_bytes_for_both_tasks():
    source = {"w": torch.ones(4, 4), "head.weight": torch.ones(6, 4)}
    # LoRA: base entries (peft names) equal the source, adapters and a new head are extra
    lora = {
        "w.base_layer.weight": torch.ones(4, 4),
        "w.lora_A.default.weight": torch.zeros(2, 4),
        "head.weight": torch.ones(3, 4),
    }
    fixed = {"w.base_layer.weight": lora["w.base_layer.weight"]}
    assert pac_costs.extra_bytes({"w.weight": torch.ones(4, 4)}, fixed) == 0
    assert pac_costs.extra_bytes(source, {"w": torch.ones(4, 4)}) == 0
    assert pac_costs.extra_bytes(source, {"w": torch.zeros(4, 4)}) == 64
    # PAC-Net: the calibrated model, one bit per masked entry, a source head of another shape
    mask = torch.zeros(4, 4, dtype=torch.bool)
    mask[0] = True
    calibrated = {"w": torch.ones(4, 4), "head.weight": torch.ones(3, 4)}
    calibrated["w"][1:] = 5.0  # the freed entries trained; the essential ones kept
    assert pac_costs.pac_bytes(source, calibrated, {"w": mask}) == 64 + 48 + 2 + 96
    calibrated["w"][0, 0] = 2.0  # an essential entry moved: the source tensor must be kept too
    assert pac_costs.pac_bytes(source, calibrated, {"w": mask}) == 64 + 48 + 2 + 96 + 64
