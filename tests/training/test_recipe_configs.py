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
    assert {"ham10000_cpu.yaml", "ham10000_cpu_image.yaml", "ham10000_gpu.yaml"} <= names


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: str(p.relative_to(CONFIGS)))
def test_a_shipped_run_config_loads(path: Path) -> None:
    # A distillation recipe gets its teacher on the command line (--distill-from).
    needs_teacher = "distill" in yaml.safe_load(path.read_text())
    load_run_config(path, ['distill.teacher="runs/teacher/model"'] if needs_teacher else [])


@pytest.mark.parametrize(
    "name", ["ham10000_cpu.yaml", "ham10000_cpu_image.yaml", "ham10000_gpu.yaml"]
)
def test_the_ham10000_recipes_read_the_specs_modalities_and_select_on_balanced_accuracy(
    name: str,
) -> None:
    spec = yaml.safe_load((CONFIGS / "ham10000.yaml").read_text())
    run = load_run_config(CONFIGS / name, [])
    assert set(run.model.encoders) <= set(spec["modalities"])
    assert set(run.model.modalities or spec["modalities"]) <= set(spec["modalities"])
    assert run.train.monitor == "val/dx/balanced_accuracy"
