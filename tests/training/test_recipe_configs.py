"""Every run config shipped in configs/ loads, and the HAM10000 recipes fit the cohort they name."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from polymodal.training.run_config import load_run_config

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
RUN_CONFIGS = sorted(
    p
    for p in CONFIGS.rglob("*.yaml")
    if {"model", "train"} & set(yaml.safe_load(p.read_text()) or {})
)


def test_the_run_configs_are_found() -> None:
    names = {p.name for p in RUN_CONFIGS}
    assert {
        "ham10000_cpu.yaml",
        "ham10000_cpu_image.yaml",
        "ham10000_cpu_bottleneck.yaml",
        "ham10000_gpu.yaml",
        "ham10000_gpu_image.yaml",
        "ham10000_gpu_bottleneck.yaml",
    } <= names


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_a_shipped_run_config_loads(path: Path) -> None:
    # A distillation recipe gets its teacher on the command line (--distill-from).
    needs_teacher = "distill" in yaml.safe_load(path.read_text())
    load_run_config(path, ['distill.teacher="runs/teacher/model"'] if needs_teacher else [])


@pytest.mark.parametrize(
    "name",
    [f"ham10000_{d}{r}.yaml" for d in ("cpu", "gpu") for r in ("", "_image", "_bottleneck")],
)
def test_the_ham10000_recipes_read_the_specs_modalities_and_select_on_balanced_accuracy(
    name: str,
) -> None:
    spec = yaml.safe_load((CONFIGS / "ham10000.yaml").read_text())
    teacher = ['distill.teacher="runs/teacher/model"'] if "bottleneck" in name else []
    run = load_run_config(CONFIGS / name, teacher)
    assert set(run.model.encoders) <= set(spec["modalities"])
    assert set(run.model.modalities or spec["modalities"]) <= set(spec["modalities"])
    assert run.train.monitor == "val/dx/balanced_accuracy"


@pytest.mark.parametrize("device", ["cpu", "gpu"])
def test_a_recipes_image_twin_trains_the_same_backbone_the_same_way(device: str) -> None:
    # The paired comparison "fused − image only" means something only if the twin differs in
    # what it fuses, not in how its image encoder is trained.
    fused = load_run_config(CONFIGS / f"ham10000_{device}.yaml", [])
    twin = load_run_config(CONFIGS / f"ham10000_{device}_image.yaml", [])
    assert twin.model.core == "single" and twin.model.modalities == ["skin"]
    assert twin.model.encoders["skin"] == fused.model.encoders["skin"]
    assert twin.train == fused.train
    assert twin.ema == fused.ema
