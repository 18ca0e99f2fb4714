"""A cohort's manifest sits in Arrow memory, not as one Python object per cell, and reads alike."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polymodal.data.manifest import cohort_from_frame, load_cohort
from polymodal.data.row_cells import RowCells
from polymodal.data.spec import parse_spec
from polymodal.data.text_columns import TEXT

ROWS = {
    "id": ["a", "b", "c", "d"],
    "patient": ["p1", "p1", "p2", ""],
    "split": ["train", "val", "test", "train"],
    "y": ["1", "", "NA", " 0 "],
    "age": ["61", "", "7.5", "44"],
}


def make_spec(base_dir: Path, manifest: str = "manifest.csv"):
    return parse_spec(
        {
            "manifest": manifest,
            "id_column": "id",
            "group_column": "patient",
            "split": {"column": "split"},
            "targets": {"y": {"kind": "binary", "column": "y"}},
            "modalities": {"labs": {"kind": "tabular", "numeric": ["age"]}},
        },
        base_dir=base_dir,
    )


@pytest.fixture(params=["manifest.csv", "manifest.parquet"])
def cohort(request, tmp_path):
    frame = pd.DataFrame(ROWS)
    path = tmp_path / request.param
    if request.param.endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return load_cohort(make_spec(tmp_path, request.param))


def test_a_loaded_manifest_is_arrow_text_and_its_cells_are_python_strings(cohort):
    assert all(dtype == TEXT for dtype in cohort.frame.dtypes)
    assert type(cohort.cell(0, "id")) is str
    assert all(type(v) is str for v in cohort.frame["age"].tolist())
    # A blank cell is "", never a missing value.
    assert cohort.cell(1, "age") == "" and not cohort.frame.isna().any().any()


def test_missing_labels_are_none_and_the_rest_stripped_strings(cohort):
    labels = cohort.labels("y")
    assert labels.tolist() == ["1", None, None, "0"]
    assert labels.iat[1] is None and labels.iat[2] is None
    assert cohort.label(3, "y") == "0" and cohort.label(1, "y") is None
    assert list(cohort.split) == ["train", "val", "test", "train"]
    assert cohort.groups.tolist() == ["p1", "p1", "p2", "d"]


def test_an_object_frame_gives_the_same_cohort_as_the_manifest(cohort, tmp_path):
    spec = make_spec(tmp_path)
    given = cohort_from_frame(spec, pd.DataFrame(ROWS, dtype=object), tmp_path / "frame")
    assert all(dtype == TEXT for dtype in given.frame.dtypes)
    pd.testing.assert_frame_equal(given.frame, cohort.frame)
    pd.testing.assert_series_equal(given.labels("y"), cohort.labels("y"))
    pd.testing.assert_series_equal(given.split, cohort.split)


def test_missing_values_of_an_object_frame_become_blank_cells(tmp_path):
    rows = {**ROWS, "age": ["61", None, float("nan"), "44"]}
    given = cohort_from_frame(make_spec(tmp_path), pd.DataFrame(rows), tmp_path / "frame")
    assert given.frame["age"].tolist() == ["61", "", "", "44"]


def test_a_large_cohort_takes_a_fraction_of_the_memory_of_python_strings(tmp_path):
    n = 50_000
    rows = {
        "id": [f"S{i:07d}" for i in range(n)],
        "patient": [f"P{i // 2:07d}" for i in range(n)],
        "split": ["train", "val", "test", "train", "train"] * (n // 5),
        "y": ["0", "1"] * (n // 2),
        "age": [f"{40 + i % 50}.{i % 10}" for i in range(n)],
    }
    as_objects = pd.DataFrame(rows, dtype=object)
    cohort = cohort_from_frame(make_spec(tmp_path), as_objects, tmp_path / "frame")
    arrow_bytes = cohort.frame.memory_usage(deep=True).sum()
    object_bytes = as_objects.memory_usage(deep=True).sum()
    assert arrow_bytes < object_bytes / 3, (arrow_bytes / n, object_bytes / n)


def test_a_dataset_reads_each_row_as_the_cohort_holds_it(cohort):
    positions = np.array([3, 0, 2])
    rows = RowCells(cohort.frame, ["age", "y"], positions)
    expected = cohort.frame.iloc[positions][["age", "y"]].to_dict("records")
    assert list(rows) == expected and rows[-1] == expected[-1]
    assert all(type(v) is str for row in rows for v in row.values())
    # DataLoader workers started by spawn get the rows pickled.
    assert list(pickle.loads(pickle.dumps(rows))) == expected
    with pytest.raises(IndexError):
        rows[3]
