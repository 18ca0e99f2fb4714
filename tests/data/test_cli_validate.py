"""`polymodal validate`: exit status, tables, problem CSV/JSON, and no traceback on bad input."""

from __future__ import annotations

import csv
import json
import sys
from io import StringIO
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from rich.console import Console
from tiny_files import break_files, tiny_cohort, truncate, write_manifest, write_png
from typer.testing import CliRunner

from polymodal.cli import app, main
from polymodal.data.manifest import load_cohort
from polymodal.data.spec import load_spec
from polymodal.validation.report import render_report
from polymodal.validation.validate import validate_cohort

REPO_ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, ["validate", *args])


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str]:
    """Run the real entry point (with its error handling); return (exit status, all output)."""
    monkeypatch.setattr(sys, "argv", ["polymodal", "validate", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err


def test_clean_cohort_exits_zero_and_prints_the_tables(tmp_path):
    spec_path, _ = tiny_cohort(tmp_path)
    result = invoke(str(spec_path))
    assert result.exit_code == 0, result.output
    for fragment in ("6 rows", "modality availability", "label counts", "missing values"):
        assert fragment in result.output
    assert "training is possible" in result.output


def test_bad_file_exits_one_and_lists_every_problem(tmp_path):
    spec_path, frame = tiny_cohort(tmp_path)
    frame.loc[0, "xray"] = "xray/missing.png"
    rng = np.random.default_rng(0)
    truncate(write_png(tmp_path / "xray" / "s1.png", rng.integers(0, 255, (64, 64), np.uint8)))
    write_manifest(tmp_path, frame)
    problems_csv, report_json = tmp_path / "out" / "problems.csv", tmp_path / "out" / "r.json"
    result = invoke(str(spec_path), "--problems-csv", str(problems_csv), "--json", str(report_json))
    assert result.exit_code == 1, result.output
    assert "file not found" in result.output
    assert "training is not possible" in result.output
    assert "Traceback" not in result.output
    with problems_csv.open() as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["row_id"], r["column"], r["severity"]) for r in rows] == [
        ("s0", "xray", "error"),
        ("s1", "xray", "error"),
    ]
    assert rows[0]["reason"].startswith("file not found (")
    assert rows[1]["reason"].startswith("not a decodable PNG/JPEG image (truncated?)")
    report = json.loads(report_json.read_text())
    assert report["training_possible"] is False and report["n_rows"] == 6


def test_skip_modality_exits_zero_and_says_what_was_skipped(tmp_path):
    spec_path, frame = tiny_cohort(tmp_path)
    frame.loc[0, "xray"] = "xray/missing.png"
    write_manifest(tmp_path, frame)
    problems_csv = tmp_path / "problems.csv"
    result = invoke(
        str(spec_path), "--on-error", "skip-modality", "--problems-csv", str(problems_csv)
    )
    assert result.exit_code == 0, result.output
    assert "xray (1 skipped)" in result.output
    [row] = list(csv.DictReader(problems_csv.open()))
    assert row["action"] == "modality 'xray' marked unavailable for this row"


def test_every_bad_row_is_listed_by_the_real_entry_point(tmp_path, monkeypatch, capsys):
    spec_path, frame = tiny_cohort(tmp_path)
    frame.loc[0, "age"] = "forty"
    frame.loc[0, "y"] = "NaN"
    frame.loc[4, "y"] = "maybe"
    frame.loc[5, "sample_id"] = "s4"  # duplicate id
    frame.loc[1, "split"] = "val"  # patient p0 in train and val
    break_files(tmp_path, frame)
    problems_csv = tmp_path / "problems.csv"
    status, output = run_main(
        monkeypatch, capsys, str(spec_path), "--problems-csv", str(problems_csv)
    )
    assert status == 1
    assert "Traceback" not in output
    rows = list(csv.DictReader(problems_csv.open()))
    seen = {(r["row_id"], r["column"], r["reason"].split(" (/")[0]) for r in rows}
    for expected in [
        ("s0", "age", "'forty' is not a number"),
        ("s0", "y", "label is missing"),
        ("s1", "xray", "file not found"),
        ("s3", "xray", "DICOM has no pixel data; it is not an image (Modality SR)"),
        ("s4", "ct", "expected a 3D volume, got 4 dimensions (shape (4, 4, 4, 2))"),
        ("s4", "sample_id", "duplicate id: 2 rows share id 's4' (manifest rows 5, 6)"),
        ("s0", "patient_id", "group 'p0' is in train and val (rows s0, s1)"),
    ]:
        assert expected in seen, (expected, seen)
    reasons = [r["reason"] for r in rows]
    assert any(r.startswith("not a decodable PNG/JPEG image (truncated?)") for r in reasons)
    assert any(r.startswith("unknown label 'maybe'") for r in reasons)
    assert any(r.startswith("row 2, column 'hr': 'high' is not a number") for r in reasons)


def test_missing_declared_column_exits_two_without_traceback(tmp_path, monkeypatch, capsys):
    spec_path, frame = tiny_cohort(tmp_path)
    write_manifest(tmp_path, frame.drop(columns=["age"]))
    status, output = run_main(monkeypatch, capsys, str(spec_path))
    assert status == 2
    assert "error:" in output
    assert "column 'age' (declared by modalities.labs) is not in the manifest" in output
    assert "Traceback" not in output


def test_empty_manifest_exits_two(tmp_path, monkeypatch, capsys):
    spec_path, frame = tiny_cohort(tmp_path)
    (tmp_path / "manifest.csv").write_text(",".join(frame.columns) + "\n")
    status, output = run_main(monkeypatch, capsys, str(spec_path))
    assert status == 2
    assert "the manifest has a header but no rows" in output
    assert "Traceback" not in output


def test_unknown_modality_kind_exits_two(tmp_path, monkeypatch, capsys):
    spec_path, _ = tiny_cohort(tmp_path)
    spec = yaml.safe_load(spec_path.read_text())
    spec["modalities"]["voice"] = {"kind": "audio", "column": "note"}
    spec_path.write_text(yaml.safe_dump(spec))
    status, output = run_main(monkeypatch, capsys, str(spec_path))
    assert status == 2
    assert "modalities.voice: unknown kind 'audio'" in output
    assert "Traceback" not in output


def test_missing_spec_file_exits_two(tmp_path, monkeypatch, capsys):
    status, output = run_main(monkeypatch, capsys, str(tmp_path / "nope.yaml"))
    assert status == 2
    assert "cohort spec not found" in output


def test_ham10000_subset_flags_dx_type(shared_data, tmp_path):
    metadata = pd.read_csv(
        shared_data / "ham10000" / "metadata.csv", dtype=str, keep_default_na=False
    )
    subset = metadata.sample(n=200, random_state=0)
    subset.to_csv(tmp_path / "subset.csv", index=False)
    report_json = tmp_path / "report.json"
    result = invoke(
        str(REPO_ROOT / "configs" / "ham10000.yaml"),
        "--manifest",
        str(tmp_path / "subset.csv"),
        "--json",
        str(report_json),
    )
    assert result.exit_code == 0, result.output
    report = json.loads(report_json.read_text())
    assert report["n_rows"] == 200
    assert report["leakage_columns"] == ["dx_type"]
    assert report["availability"]["skin"]["train"] == report["split_counts"]["train"]
    assert [p["severity"] for p in report["problems"]] == ["warning"]
    assert "possible leakage" in result.output
    # The manifest was swapped, not the data root: nothing new appears beside the real data.
    assert not (shared_data / "ham10000" / "subset.csv").exists()


def test_problem_paths_and_ids_are_printed_unbroken_at_80_columns(tmp_path):
    long_dir = tmp_path / "a_rather_long_folder_name_for_scans" / "another_deeply_nested_folder"
    root = long_dir / "cohort"
    spec_path, frame = tiny_cohort(root)
    missing = "xray/scan_of_patient_with_a_long_file_name_0001_[left].png"
    frame.loc[0, "xray"] = missing
    frame.loc[0, "sample_id"] = "sample-[0]-with-a-long-identifier-that-would-not-fit"
    write_manifest(root, frame)
    report = validate_cohort(load_cohort(load_spec(spec_path)), workers=1)
    out = StringIO()
    render_report(report, Console(width=80, file=out))
    lines = out.getvalue().splitlines()
    full_path = str(root / missing)
    assert len(full_path) > 80
    [line] = [line for line in lines if full_path in line]
    assert "row sample-[0]-with-a-long-identifier-that-would-not-fit · column xray" in line
    assert str(root / "manifest.csv") in lines[0]


def test_a_recipe_bent_by_a_small_cohort_is_a_printed_warning(tmp_path):
    spec_path, _ = tiny_cohort(tmp_path)
    spec = yaml.safe_load(spec_path.read_text())
    del spec["group_column"]
    spec["split"] = {"recipe": {"train": 0.7, "val": 0.15, "test": 0.15}}
    spec_path.write_text(yaml.safe_dump(spec))
    result = invoke(str(spec_path))
    assert result.exit_code == 0, result.output
    assert (
        "warning: split recipe (train 0.7, val 0.15, test 0.15, seed 0): the classes have too "
        "few groups for 6 stratified folds (groups per class: '0': 3, '1': 3); splitting by "
        "group without stratification" in result.output
    )
    assert "Traceback" not in result.output
