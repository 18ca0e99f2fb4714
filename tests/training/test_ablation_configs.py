"""The ready ablation run configs (configs/ablations): PB / synergy × {alone, KD, GM, KD + GM}."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from polymodal.cli import app
from polymodal.errors import SpecError
from polymodal.model_folder import load_model_folder
from polymodal.training.run_config import load_run_config
from training.conftest import TINY_MODEL

ABLATIONS = Path(__file__).resolve().parents[2] / "configs" / "ablations"
VARIANTS = ["", "_kd", "_gm", "_kd_gm", "_teacher"]
CORES = {"pb": "bottleneck", "synergy": "synergy"}
runner = CliRunner()


def test_the_matrix_is_complete() -> None:
    expected = {f"{core}{variant}.yaml" for core in CORES for variant in VARIANTS}
    assert {p.name for p in ABLATIONS.glob("*.yaml")} == expected


@pytest.mark.parametrize("core", list(CORES))
@pytest.mark.parametrize("variant", VARIANTS)
def test_each_config_loads_with_what_its_name_says(core: str, variant: str) -> None:
    path = ABLATIONS / f"{core}{variant}.yaml"
    kd, gm = "kd" in variant, "gm" in variant or variant == "_teacher"
    overrides = ["distill.teacher=runs/teacher/model"] if kd else []
    run = load_run_config(path, overrides)
    assert run.model.core == CORES[core]
    assert (run.distill is not None) == kd
    assert (run.modulation is not None and run.modulation.enabled) == gm
    # The teacher sees every modality; the others train with the same modality dropout.
    assert run.model.modality_dropout == (0.0 if variant == "_teacher" else 0.3)
    if kd:
        with pytest.raises(SpecError, match=r"distill\.teacher: Field required"):
            load_run_config(path)


def test_pb_with_kd_and_gm_trains_on_a_tiny_cohort(
    cohort_spec_path: Path, run_dir: Path, tmp_path: Path
) -> None:
    shrink = [
        *(item for item in TINY_MODEL if not item.startswith("model.core")),
        "model.core_options={depth: 1, num_bottlenecks: 2}",
        "train.max_epochs=1",
    ]
    out = tmp_path / "pb_kd_gm"
    args = ["fit", str(cohort_spec_path), "-o", str(out), "-c", str(ABLATIONS / "pb_kd_gm.yaml")]
    args += ["--distill-from", str(run_dir / "model")]
    result = runner.invoke(app, [*args, *(a for item in shrink for a in ("--set", item))])
    assert result.exit_code == 0, result.output
    metrics = pd.read_csv(out / "logs" / "metrics.csv")
    assert {"train/kd/logit", "train/kd/feature", "train/gm_aux/loss", "train/gm/labs"} <= set(
        metrics.columns
    )
    assert load_model_folder(out / "model").config.core == "bottleneck"
