"""``polymodal explain``: files, table, errors; overlays on a cohort with images and volumes."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from polymodal.cli import app, main
from polymodal.explain import explain_model
from training.conftest import tiny_cohort, tiny_run

runner = CliRunner()


def test_explain_writes_the_tables(key_model: Path, key_cohort: Path, tmp_path: Path) -> None:
    out = tmp_path / "explained"
    manifest = key_cohort.parent / "manifest.csv"
    args = ["explain", str(key_model), str(manifest), "--task", "label", "-o", str(out)]
    result = runner.invoke(app, [*args, "--max-samples", "5", "--method", "both"])
    assert result.exit_code == 0, result.output
    per_sample = pd.read_csv(out / "elements_per_sample.csv")
    cohort = pd.read_csv(out / "elements_cohort.csv")
    assert per_sample["sample_id"].nunique() == 5
    assert {"sample_id", "element", "kind", "modality", "occlusion_effect", "rollout_share"} <= set(
        per_sample.columns
    )
    assert (
        per_sample["occlusion_effect"].notna().all() and per_sample["rollout_share"].notna().all()
    )
    assert {"element", "mean_abs_effect", "ci_low", "ci_high", "rank"} <= set(cohort.columns)
    assert sorted(cohort["rank"]) == list(cohort["rank"])
    assert "labs.key" in result.output and "task 'label'" in result.output


def test_an_unknown_task_is_a_message_naming_the_targets(
    key_model: Path, key_cohort: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    manifest = key_cohort.parent / "manifest.csv"
    argv = ["polymodal", "explain", str(key_model), str(manifest), "--task", "death"]
    monkeypatch.setattr(sys, "argv", [*argv, "-o", str(tmp_path / "x")])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    assert exit_info.value.code == 2
    assert "unknown task 'death'; the model's targets are: label" in captured.err
    assert "Traceback" not in captured.err + captured.out
    assert not (tmp_path / "x").exists()


def test_an_unknown_method_is_a_message(key_model: Path, key_cohort: Path) -> None:
    from polymodal.errors import ModelError

    with pytest.raises(ModelError, match="method must be one of occlusion, rollout, both"):
        explain_model(key_model, key_cohort.parent / "manifest.csv", method="shap")  # type: ignore[arg-type]


def test_images_and_volumes_get_regions_and_overlays(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    base = tmp_path_factory.getbasetemp()
    run, spec = tiny_run(base), tiny_cohort(base)  # the synergy core over every modality kind
    result = explain_model(run / "model", spec.parent / "manifest.csv", max_samples=3, overlays=3)
    table = result.per_sample
    regions = table[table["kind"] == "region"]
    assert set(regions["modality"]) <= {"lesion", "ct"} and not regions.empty
    for (_, modality), rows in regions.groupby(["sample_id", "modality"]):
        assert len(rows) == (16 if modality == "lesion" else 32)
        # Region shares of one image add up to its modality's share (all tokens map to regions).
        sample = rows["sample_id"].iloc[0]
        whole = table[(table["sample_id"] == sample) & (table["element"] == modality)]
        assert rows["rollout_share"].sum() == pytest.approx(
            float(whole["rollout_share"].iloc[0]), rel=1e-4, abs=1e-7
        )
    written = result.save(tmp_path / "out")
    overlays = [p for p in written if p.suffix == ".png"]
    assert overlays and all(p.stat().st_size > 1000 for p in overlays)
    assert {p.stem.split("_")[-1] for p in overlays} <= {"lesion", "ct"}
