"""validate_cohort: every bad input becomes a problem naming its row, column and reason."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml
from tiny_files import break_files, tiny_cohort, write_manifest, write_png

from polymodal.data.manifest import load_cohort
from polymodal.data.spec import load_spec, parse_spec
from polymodal.validation.leakage import find_leaks
from polymodal.validation.validate import validate_cohort


def run(spec_path, on_error="fail"):
    return validate_cohort(load_cohort(load_spec(spec_path)), on_error=on_error, workers=2)


def problems_of(report, column=None):
    return [p for p in report.problems if column is None or p.column == column]


def test_clean_cohort(tmp_path):
    spec_path, _ = tiny_cohort(tmp_path)
    report = run(spec_path)
    assert report.problems == []
    assert report.training_possible and report.blocking == []
    assert report.n_rows == 6
    assert report.split_counts == {"train": 4, "val": 2, "test": 0}
    for name in ("xray", "ct", "labs", "note", "vitals"):
        assert report.availability[name] == {"train": 4, "val": 2, "test": 0}
    assert report.label_counts["y"]["train"] == {"0": 2, "1": 2}
    assert report.missing_rates == {"age": 0.0, "sex": 0.0}


def test_bad_files_fail(tmp_path):
    spec_path, frame = tiny_cohort(tmp_path)
    break_files(tmp_path, frame)
    report = run(spec_path)
    found = {(p.row_id, p.column): p for p in report.problems}
    assert found["s1", "xray"].reason.startswith("file not found (")
    assert "gone.png" in found["s1", "xray"].reason
    assert found["s2", "xray"].reason.startswith("not a decodable PNG/JPEG image (truncated?)")
    assert found["s3", "xray"].reason.startswith("DICOM has no pixel data; it is not an image")
    assert found["s4", "ct"].reason.startswith(
        "expected a 3D volume, got 4 dimensions (shape (4, 4, 4, 2))"
    )
    assert found["s5", "vitals"].reason.startswith("row 2, column 'hr': 'high' is not a number")
    assert all(p.severity == "error" for p in report.problems)
    assert "rerun with --on-error skip-modality" in found["s1", "xray"].action
    assert not report.training_possible
    assert report.blocking == [
        "5 unreadable file(s) or value(s); fix them or rerun with --on-error skip-modality"
    ]


def test_bad_files_skip_modality_marks_them_unavailable(tmp_path):
    spec_path, frame = tiny_cohort(tmp_path)
    break_files(tmp_path, frame)
    report = run(spec_path, on_error="skip-modality")
    assert report.training_possible
    assert len(report.problems) == 5
    actions = {(p.row_id, p.action) for p in report.problems}
    assert ("s1", "modality 'xray' marked unavailable for this row") in actions
    assert ("s4", "modality 'ct' marked unavailable for this row") in actions
    assert report.skipped == {"xray": ["s1", "s2", "s3"], "ct": ["s4"], "vitals": ["s5"]}
    assert report.availability["xray"] == {"train": 1, "val": 2, "test": 0}
    assert report.availability["ct"] == {"train": 4, "val": 1, "test": 0}
    assert report.availability["vitals"] == {"train": 4, "val": 1, "test": 0}


def test_non_numeric_value_and_missing_rates(tmp_path):
    spec_path, frame = tiny_cohort(tmp_path)
    frame.loc[2, "age"] = "forty"
    frame.loc[3, "age"] = ""
    frame.loc[4, "sex"] = "unknown"
    write_manifest(tmp_path, frame)
    report = run(spec_path)
    [problem] = report.problems
    assert (problem.row_id, problem.column, problem.reason) == (
        "s2",
        "age",
        "'forty' is not a number",
    )
    assert report.missing_rates == {"age": pytest.approx(1 / 6), "sex": pytest.approx(1 / 6)}
    assert not report.training_possible
    skipped = run(spec_path, on_error="skip-modality")
    assert skipped.training_possible and skipped.skipped == {"labs": ["s2"]}
    assert skipped.availability["labs"]["train"] == 3


def test_without_reading_files_only_cell_checks_run(tmp_path, monkeypatch):
    spec_path, frame = tiny_cohort(tmp_path)
    break_files(tmp_path, frame)  # files that a full validation reports
    frame.loc[0, "ct"] = ""  # a blank cell stays unavailable
    frame.loc[2, "sample_id"] = "s1"  # a blocking problem found without any file
    frame.loc[3, "age"] = "forty"
    write_manifest(tmp_path, frame)
    opened = []
    monkeypatch.setattr(
        "polymodal.validation.validate._read_cell", lambda *args: opened.append(args)
    )
    report = validate_cohort(
        load_cohort(load_spec(spec_path)), on_error="skip-modality", read_files=False
    )
    assert opened == []
    assert [(p.row_id, p.column) for p in report.problems] == [("s1", "sample_id"), ("s3", "age")]
    assert report.blocking == ["1 id(s) occur on more than one row"]
    assert report.availability["xray"] == {"train": 4, "val": 2, "test": 0}
    assert report.availability["ct"] == {"train": 3, "val": 2, "test": 0}
    assert report.availability["vitals"] == {"train": 4, "val": 2, "test": 0}
    assert report.skipped == {"labs": ["s3"]}


def test_missing_and_unknown_labels(tmp_path):
    spec_path, frame = tiny_cohort(tmp_path)
    frame.loc[0, "y"] = "NaN"
    frame.loc[5, "y"] = "maybe"
    write_manifest(tmp_path, frame)
    report = run(spec_path)
    found = {p.row_id: p for p in report.problems}
    assert found["s0"].reason == "label is missing"
    assert found["s0"].action == "row will not be used for target 'y'"
    assert found["s0"].severity == "warning" and found["s5"].severity == "error"
    assert found["s5"].reason.startswith("unknown label 'maybe': a binary target takes '1'")
    assert report.label_counts["y"]["train"] == {"(missing)": 1, "0": 1, "1": 2}
    assert report.label_counts["y"]["val"] == {"(unknown)": 1, "0": 1}
    assert found["s5"].action == "fix the value, or blank it so the row is not used for target 'y'"
    # Training would stop on a label it cannot encode; a blank one only drops the row.
    assert report.blocking == ["target 'y': 1 label(s) cannot be encoded; fix them or blank them"]
    frame.loc[5, "y"] = ""
    write_manifest(tmp_path, frame)
    assert run(spec_path).training_possible


def test_binary_negative_must_be_unambiguous_in_train(tmp_path):
    spec_path, frame = tiny_cohort(tmp_path)
    frame.loc[1, "y"] = "no"  # train now holds "0", "no" and the positive "1"
    write_manifest(tmp_path, frame)
    report = run(spec_path)
    reasons = {p.row_id: p.reason for p in report.problems}
    assert reasons["s1"].startswith("unknown label 'no': besides the positive '1', the training")
    assert "set targets.y.negative" in reasons["s1"]
    assert not report.training_possible


def test_multiclass_unknown_label_names_the_classes(tmp_path):
    spec_path, frame = tiny_cohort(tmp_path)
    spec = load_spec(spec_path)
    data = spec.model_dump(mode="json", exclude_none=True)
    data["targets"] = {"y": {"kind": "multiclass", "column": "y", "classes": ["0", "1"]}}
    frame.loc[1, "y"] = "2"
    write_manifest(tmp_path, frame)
    cohort = load_cohort(parse_spec(data, base_dir=tmp_path))
    report = validate_cohort(cohort)
    [problem] = report.problems
    assert problem.reason == "unknown label '2': expected one of targets.y.classes"


def test_duplicate_ids_group_in_two_splits_and_unknown_split(tmp_path):
    spec_path, frame = tiny_cohort(tmp_path)
    frame.loc[2, "sample_id"] = "s1"
    frame.loc[1, "split"] = "val"  # patient p0 now in train and val
    frame.loc[4, "split"] = "holdout"
    write_manifest(tmp_path, frame)
    report = run(spec_path)
    reasons = [p.reason for p in report.problems]
    assert "duplicate id: 2 rows share id 's1' (manifest rows 2, 3)" in reasons
    assert "group 'p0' is in train and val (rows s0, s1)" in reasons
    assert "split value 'holdout' is not train/val/test" in reasons
    assert not report.training_possible
    assert report.blocking == [
        "1 id(s) occur on more than one row",
        "1 row(s) have a split value that is not train/val/test",
        "1 group(s) sit in more than one split",
    ]


def test_single_class_in_train_blocks_training(tmp_path):
    spec_path, frame = tiny_cohort(tmp_path)
    frame.loc[:3, "y"] = "1"
    write_manifest(tmp_path, frame)
    report = run(spec_path)
    assert not report.training_possible
    assert any(
        "target 'y' has a single class ('1') in the training split" in b for b in report.blocking
    )


def test_paths_outside_the_folder_are_read_when_allowed_but_never_written(tmp_path):
    outside = tmp_path / "outside"
    write_png(outside / "far.png", np.zeros((8, 8), dtype=np.uint8))
    root = tmp_path / "cohort"
    spec_path, frame = tiny_cohort(root)
    frame.loc[0, "xray"] = "../outside/far.png"
    frame.loc[1, "xray"] = str(outside / "far.png")
    write_manifest(root, frame)
    refused = run(spec_path)
    assert [(p.row_id, p.column) for p in refused.problems] == [("s0", "xray"), ("s1", "xray")]
    without_reading = validate_cohort(load_cohort(load_spec(spec_path)), read_files=False)
    assert without_reading.problems == refused.problems
    spec = yaml.safe_load(spec_path.read_text())
    spec_path.write_text(yaml.safe_dump({**spec, "allow_outside_root": True}))
    before = sorted(p.name for p in outside.iterdir())
    report = run(spec_path)
    assert report.problems == [] and report.availability["xray"]["train"] == 4
    assert sorted(p.name for p in outside.iterdir()) == before


def _tabular_cohort(tmp_path, rng):
    n = 200
    y = np.array(["pos", "neg"] * (n // 2))
    frame = pd.DataFrame(
        {
            "id": [f"r{i}" for i in range(n)],
            "split": ["train"] * 150 + ["val"] * 50,
            "y": y,
            # Every negative was confirmed by follow-up; positives by any method.
            "confirmed_by": np.where(
                y == "neg", "follow_up", rng.choice(["histo", "consensus"], n)
            ),
            "site": rng.choice(["a", "b", "c"], n),
            "score": np.round(rng.normal(size=n), 3).astype(str),
        }
    )
    frame.to_csv(tmp_path / "m.csv", index=False)
    spec = {
        "manifest": "m.csv",
        "id_column": "id",
        "split": {"column": "split"},
        "targets": {"y": {"kind": "binary", "column": "y", "positive": "pos"}},
        "modalities": {"t": {"kind": "tabular", "numeric": ["score"], "categorical": ["site"]}},
        "exclude_columns": ["confirmed_by"],
    }
    return frame, spec


def test_leakage_flags_a_column_that_gives_away_the_label(tmp_path):
    _, spec = _tabular_cohort(tmp_path, np.random.default_rng(0))
    report = validate_cohort(load_cohort(parse_spec(spec, base_dir=tmp_path)))
    assert report.leakage_columns == ["confirmed_by"]
    [warning] = report.problems
    assert warning.severity == "warning" and warning.column == "confirmed_by"
    assert "possible leakage: column 'confirmed_by' alone predicts target 'y'" in warning.reason
    assert "'follow_up' → 'neg' in 100/100 rows" in warning.reason
    assert "it is in exclude_columns" in warning.action
    assert report.training_possible


def test_leakage_in_an_input_column_says_to_remove_it(tmp_path):
    _, spec = _tabular_cohort(tmp_path, np.random.default_rng(1))
    spec["exclude_columns"] = []
    spec["modalities"]["t"]["categorical"] = ["site", "confirmed_by"]
    report = validate_cohort(load_cohort(parse_spec(spec, base_dir=tmp_path)))
    [warning] = report.problems
    assert "it is an input of modality 't'" in warning.action


def test_ham10000_leakage_statistic_flags_dx_type_only(shared_data):
    frame = pd.read_csv(shared_data / "ham10000" / "metadata.csv", dtype=str, keep_default_na=False)
    columns = ["dx_type", "age", "sex", "localization"]
    findings = find_leaks(frame, {"dx": frame["dx"]}, columns)
    assert [f.column for f in findings] == ["dx_type"]
    assert findings[0].coverage == pytest.approx((2949 + 53) / 8011)


def test_non_finite_numbers_are_problems_and_do_not_stop_the_leakage_check(tmp_path):
    frame, spec = _tabular_cohort(tmp_path, np.random.default_rng(2))
    frame.loc[3, "score"] = "inf"
    frame.loc[4, "score"] = "-Infinity"
    frame.loc[5, "score"] = "1e400"  # overflows to inf
    frame.loc[6, "score"] = "1.7e308"  # huge but finite: a valid number
    frame["constant"] = "7"
    frame.to_csv(tmp_path / "m.csv", index=False)
    report = validate_cohort(
        load_cohort(parse_spec(spec, base_dir=tmp_path)), on_error="skip-modality"
    )
    assert [(p.row_id, p.column, p.reason) for p in report.problems if p.column == "score"] == [
        ("r3", "score", "'inf' is not a finite number"),
        ("r4", "score", "'-Infinity' is not a finite number"),
        ("r5", "score", "'1e400' is not a finite number"),
    ]
    assert report.skipped == {"t": ["r3", "r4", "r5"]}
    assert report.leakage_columns == ["confirmed_by"]


def test_leakage_bins_huge_numbers_and_keeps_non_finite_values_apart():
    n = 200
    y = pd.Series(["neg", "pos"] * (n // 2))
    # A numeric column that gives the label away, with values near the float limit and inf.
    value = np.where(y == "pos", 1e308, -1e308) * np.linspace(0.5, 1.0, n)
    cells = pd.Series([f"{v:.17g}" for v in value])
    cells[[0, 1]] = ["inf", "-inf"]
    frame = pd.DataFrame({"v": cells, "flat": "3.5", "blank": ""})
    [finding] = find_leaks(frame, {"y": y}, ["v", "flat", "blank"])
    assert finding.column == "v" and finding.coverage >= 0.8
    assert all(value.startswith("[") for value, *_ in finding.decisive)


def test_an_infinite_regression_label_is_named_as_such(tmp_path):
    spec_path, frame = tiny_cohort(tmp_path)
    spec = yaml.safe_load(spec_path.read_text())
    spec["targets"]["size"] = {"kind": "regression", "column": "size"}
    spec_path.write_text(yaml.safe_dump(spec))
    frame["size"] = ["1.5", "inf", "2", "nope", "3", "4"]
    write_manifest(tmp_path, frame)
    reasons = {p.row_id: p.reason for p in run(spec_path).problems if p.column == "size"}
    assert reasons == {"s1": "'inf' is not a finite number", "s3": "'nope' is not a number"}
