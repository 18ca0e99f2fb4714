"""The M3FM target kinds in the data layer: cumulative risk by horizon (with censoring), digits,
and task prompts, from the spec through validation, fitting and encoding to batches."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from polymodal.data.collate import collate_samples
from polymodal.data.dataset import CohortDataset
from polymodal.data.manifest import load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.spec import dump_spec, parse_spec
from polymodal.errors import ReadError, SpecError
from polymodal.validation.validate import validate_cohort

HORIZONS = [1.0, 2.0, 3.0]
RISK = {
    "kind": "cumulative_risk",
    "time_column": "years",
    "event_column": "cancer",
    "horizons": HORIZONS,
    "prompts": ["Predict the lung cancer risk over three years.", "Lung cancer risk by year?"],
}
COUNT = {"kind": "digits", "column": "pack_years", "num_digits": 3}


def cohort_from(root: Path, columns: dict[str, list[str]], targets: dict):
    pd.DataFrame(columns).to_csv(root / "manifest.csv", index=False)
    spec = parse_spec(
        {
            "manifest": "manifest.csv",
            "id_column": "id",
            "split": {"column": "split"},
            "targets": targets,
            "modalities": {"labs": {"kind": "tabular", "numeric": ["age"]}},
        },
        base_dir=root,
    )
    return load_cohort(spec)


def m3fm_cohort(root: Path, **overrides: list[str]):
    columns = {
        "id": ["a", "b", "c", "d", "e", "f"],
        "split": ["train", "train", "train", "train", "val", "val"],
        "age": ["60", "70", "65", "55", "50", "72"],
        "years": ["2", "2", "0.5", "", "1.5", "4"],
        "cancer": ["1", "0", "0", "1", "1", ""],
        "pack_years": ["42", "7", "", "120", "0", "999"],
    }
    columns.update(overrides)
    return cohort_from(root, columns, {"risk": RISK, "count": COUNT})


def spec_error(target: dict) -> str:
    with pytest.raises(SpecError) as err:
        parse_spec(
            {
                "manifest": "m.csv",
                "id_column": "id",
                "split": {"column": "split"},
                "targets": {"t": target},
                "modalities": {"labs": {"kind": "tabular", "numeric": ["age"]}},
            },
            source="cohort.yaml",
        )
    return str(err.value)


# ------------------------------------------------------------------------------------------------
# Spec
# ------------------------------------------------------------------------------------------------


def test_spec_errors_name_the_field():
    message = spec_error({"kind": "binary", "column": "y", "prompts": ["Predict y.", " ?! "]})
    assert "targets.t.prompts: prompt 2 (' ?! ') has no word" in message
    assert "targets.t.prompts: List should have at least 1 item" in spec_error(
        {"kind": "binary", "column": "y", "prompts": []}
    )
    for horizons in ([1, 3, 2], [0, 1], [2, 2]):
        message = spec_error({**RISK, "horizons": horizons})
        assert "targets.t.horizons: expected positive, strictly increasing horizons" in message
    assert "targets.t.horizons: List should have at least 1 item" in spec_error(
        {**RISK, "horizons": []}
    )
    assert "targets.t.num_digits: Input should be less than or equal to 6" in spec_error(
        {**COUNT, "num_digits": 7}
    )
    assert "targets.t.num_digits: Input should be greater than or equal to 1" in spec_error(
        {**COUNT, "num_digits": 0}
    )
    assert "'cumulative_risk', 'digits', " in spec_error({"kind": "survival"})


def test_spec_columns_and_yaml_round_trip(tmp_path):
    cohort = m3fm_cohort(tmp_path)
    required = cohort.spec.required_columns()
    assert required["years"] == required["cancer"] == "targets.risk"
    assert required["pack_years"] == "targets.count"
    again = parse_spec(yaml.safe_load(dump_spec(cohort.spec)), base_dir=tmp_path)
    assert again.targets == cohort.spec.targets
    assert again.targets["risk"].monotone is True


# ------------------------------------------------------------------------------------------------
# Encoding
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("time", "event", "labels", "known"),
    [
        ("2", "1", [0, 1, 1], [1, 1, 1]),  # event exactly at a horizon counts there
        ("1.5", "1", [0, 1, 1], [1, 1, 1]),
        ("0.5", "1", [1, 1, 1], [1, 1, 1]),
        ("7", "1", [0, 0, 0], [1, 1, 1]),  # event after the last horizon: 0, and known
        ("2", "0", [0, 0, 0], [1, 1, 0]),  # followed exactly to a horizon: known there
        ("2.5", "0", [0, 0, 0], [1, 1, 0]),
        ("0.5", "0", [0, 0, 0], [0, 0, 0]),  # censored before every horizon: nothing known
        ("3", "0", [0, 0, 0], [1, 1, 1]),
    ],
)
def test_cumulative_risk_censoring(tmp_path, time, event, labels, known):
    prep = Preprocessor.fit(m3fm_cohort(tmp_path))
    encoded = prep.encode_target("risk", {"years": time, "cancer": event})
    assert encoded.dtype == torch.float32
    assert encoded.tolist() == [float(v) for v in labels + known]


def test_cumulative_risk_missing_and_bad_values(tmp_path):
    prep = Preprocessor.fit(m3fm_cohort(tmp_path))
    assert prep.encode_target("risk", {"years": "", "cancer": "1"}) is None
    assert prep.encode_target("risk", {"years": "3", "cancer": "NA"}) is None
    with pytest.raises(ReadError, match="column 'cancer': '2' is not 0 or 1"):
        prep.encode_target("risk", {"years": "3", "cancer": "2"})
    with pytest.raises(ReadError, match="column 'years': 'soon' is not a number"):
        prep.encode_target("risk", {"years": "soon", "cancer": "0"})
    with pytest.raises(ReadError, match="column 'years': -1 is a negative time"):
        prep.encode_target("risk", {"years": "-1", "cancer": "0"})
    assert prep.empty_target("risk").tolist() == [0.0] * 6


def test_digits_encoding(tmp_path):
    prep = Preprocessor.fit(m3fm_cohort(tmp_path))
    encode = lambda cell: prep.encode_target("count", {"pack_years": cell})  # noqa: E731
    assert encode("42").dtype == torch.int64
    assert encode("42").tolist() == [0, 4, 2]
    assert encode("7.0").tolist() == [0, 0, 7]
    assert encode("999").tolist() == [9, 9, 9] and encode("0").tolist() == [0, 0, 0]
    assert encode("") is None and encode("NA") is None
    for bad in ("1000", "-1", "4.5", "many"):
        with pytest.raises(ReadError, match=f"column 'pack_years': '{bad}' is not a whole number"):
            encode(bad)
    empty = prep.empty_target("count")
    assert empty.dtype == torch.int64 and empty.tolist() == [0, 0, 0]


def test_target_info_carries_prompts_horizons_and_digits(tmp_path):
    targets = {"risk": RISK, "count": COUNT, "y": {"kind": "binary", "column": "cancer"}}
    columns = {
        "id": list("abc"),
        "split": ["train"] * 3,
        "age": ["1", "2", "3"],
        "years": ["1", "2", "3"],
        "cancer": ["1", "0", "1"],
        "pack_years": ["1", "2", "3"],
    }
    prep = Preprocessor.fit(cohort_from(tmp_path, columns, targets))
    risk = prep.target_info("risk")
    assert risk["kind"] == "cumulative_risk" and risk["n_outputs"] == 4
    assert risk["horizons"] == HORIZONS and risk["monotone"] is True
    assert risk["prompts"] == RISK["prompts"]
    count = prep.target_info("count")
    assert count["kind"] == "digits" and count["num_digits"] == 3 and count["n_outputs"] == 30
    assert count["prompts"] is None and prep.target_info("y")["prompts"] is None
    prep.save(tmp_path / "state.json")
    loaded = Preprocessor.load(tmp_path / "state.json")
    for name in targets:
        assert loaded.target_info(name) == prep.target_info(name)
    assert loaded.encode_target("risk", {"years": "2", "cancer": "0"}).tolist() == [
        0.0,
        0.0,
        0.0,
        1.0,
        1.0,
        0.0,
    ]


def test_faithful_mode_reaches_the_target_info(tmp_path):
    columns = {
        "id": list("ab"),
        "split": ["train"] * 2,
        "age": ["1", "2"],
        "years": ["1", "2"],
        "cancer": ["1", "0"],
    }
    prep = Preprocessor.fit(cohort_from(tmp_path, columns, {"risk": {**RISK, "monotone": False}}))
    assert prep.target_info("risk")["monotone"] is False


# ------------------------------------------------------------------------------------------------
# Fitting, batches and validation
# ------------------------------------------------------------------------------------------------


def test_batch_masks_follow_missing_labels(tmp_path):
    cohort = m3fm_cohort(tmp_path)
    prep = Preprocessor.fit(cohort)
    dataset = CohortDataset(cohort, prep, None, on_error="fail")
    batch = collate_samples([dataset[i] for i in range(len(dataset))])
    # Row d has no time, row f no event: no risk label. Row c has no pack-years.
    assert batch["target_mask"]["risk"].tolist() == [True, True, True, False, True, False]
    assert batch["target_mask"]["count"].tolist() == [True, True, False, True, True, True]
    assert batch["targets"]["risk"].shape == (6, 6)
    assert batch["targets"]["risk"][0].tolist() == [0, 1, 1, 1, 1, 1]  # event at 2
    assert batch["targets"]["risk"][2].tolist() == [0, 0, 0, 0, 0, 0]  # censored at 0.5
    assert batch["targets"]["count"].dtype == torch.int64
    assert batch["targets"]["count"][3].tolist() == [1, 2, 0]


def test_bad_digit_names_the_row_and_column(tmp_path):
    # Training rows are checked while fitting ...
    cohort = m3fm_cohort(tmp_path, pack_years=["42", "3.5", "", "1", "2", "3"])
    with pytest.raises(ReadError, match=r"targets.count: training row 'b': column 'pack_years'"):
        Preprocessor.fit(cohort)
    # ... and any row when it is read.
    cohort = m3fm_cohort(tmp_path, pack_years=["42", "7", "", "1", "2", "1000"])
    dataset = CohortDataset(cohort, Preprocessor.fit(cohort), "val", on_error="fail")
    with pytest.raises(ReadError, match=r"row 'f', 'count'.*column 'pack_years': '1000'"):
        dataset[1]


def test_negative_training_time_names_the_rows(tmp_path):
    cohort = m3fm_cohort(tmp_path, years=["2", "-1", "0.5", "", "1.5", "4"])
    with pytest.raises(ReadError, match=r"targets.risk: column 'years'.*row\(s\) 'b'.*negative"):
        Preprocessor.fit(cohort)


def test_validation_reports_m3fm_labels(tmp_path):
    cohort = m3fm_cohort(tmp_path, pack_years=["42", "7", "", "120", "0", "1234"])
    report = validate_cohort(cohort)
    bad = [p for p in report.problems if p.column == "pack_years" and "whole number" in p.reason]
    assert [p.row_id for p in bad] == ["f"]
    assert "1234 is not a whole number from 0 to 999" in bad[0].reason
    assert any("target 'count'" in reason for reason in report.blocking)
    assert report.label_counts["risk"]["train"] == {"(missing)": 1, "censored": 2, "event": 1}
    assert report.label_counts["count"]["train"] == {"(missing)": 1, "labelled": 3}
