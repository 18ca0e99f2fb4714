"""``fit`` runs validate's blocking checks first: duplicate ids or a patient in two splits stop it
before training, with validate's findings, unless ``--allow-blocking`` (recorded in run.json)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest

from polymodal.cli import main
from polymodal.data.spec import load_spec
from polymodal.training.fit import fit
from polymodal.training.preflight import BlockingProblems

from .conftest import TINY_MODEL, tiny_config


def _cohort_with(cohort_spec_path: Path, folder: Path, change) -> Path:
    """A copy of the tiny cohort whose manifest ``change(frame)`` edited; returns its spec."""
    cohort = Path(shutil.copytree(cohort_spec_path.parent, folder))
    manifest = pd.read_csv(cohort / "manifest.csv", dtype=str, keep_default_na=False)
    change(manifest)
    manifest.to_csv(cohort / "manifest.csv", index=False)
    return cohort / "spec.yaml"


def _duplicate_id(frame: pd.DataFrame) -> None:
    frame.loc[1, "sample_id"] = frame.loc[0, "sample_id"]


def _patient_in_train_and_test(frame: pd.DataFrame) -> None:
    train, test = (
        frame.index[frame["split"] == "train"][0],
        frame.index[frame["split"] == "test"][0],
    )
    frame.loc[test, "patient_id"] = frame.loc[train, "patient_id"]


def test_duplicate_ids_stop_fit_with_exit_2_naming_the_id(
    cohort_spec_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    spec = _cohort_with(cohort_spec_path, tmp_path / "cohort", _duplicate_id)
    duplicated = pd.read_csv(spec.parent / "manifest.csv", dtype=str)["sample_id"][0]
    out = tmp_path / "run"
    settings = [arg for item in TINY_MODEL for arg in ("--set", item)]
    argv = ["polymodal", "fit", str(spec), "--out", str(out), "--epochs", "1", *settings]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    printed = capsys.readouterr()
    text = printed.out + printed.err
    assert exit_info.value.code == 2
    assert "training is not possible" in text and "id(s) occur on more than one row" in text
    assert f"rows share id '{duplicated}'" in text
    assert "--allow-blocking" in text and "Traceback" not in text
    assert not (out / "checkpoints").exists() and not (out / "run.json").exists()


def test_a_patient_in_train_and_test_stops_fit(cohort_spec_path: Path, tmp_path: Path) -> None:
    spec_path = _cohort_with(cohort_spec_path, tmp_path / "cohort", _patient_in_train_and_test)
    run = tiny_config("train.max_epochs=1")
    with pytest.raises(BlockingProblems) as err:
        fit(
            load_spec(spec_path),
            tmp_path / "run",
            run,
            progress=False,
        )
    message = str(err.value)
    assert "1 group(s) sit in more than one split" in message
    assert "is in train and test" in message and "patient_id" in message


def test_allow_blocking_trains_anyway_with_a_warning_and_records_it(
    cohort_spec_path: Path, tmp_path: Path
) -> None:
    spec_path = _cohort_with(cohort_spec_path, tmp_path / "cohort", _duplicate_id)
    run = tiny_config("train.max_epochs=1")
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match="training anyway"):
        result = fit(
            load_spec(spec_path),
            out,
            run,
            progress=False,
            allow_blocking=True,
        )
    assert result.epochs_run == 1
    recorded = json.loads((out / "run.json").read_text())
    assert recorded["allow_blocking"] == ["1 id(s) occur on more than one row"]
