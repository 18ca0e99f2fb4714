"""A Parquet manifest: only the columns the spec uses are read, a row group at a time, and its
cells read as the same text a CSV of it gives."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from polymodal.data.manifest import load_cohort
from polymodal.data.spec import parse_spec
from polymodal.errors import ManifestError

ROWS = 10


def _write(folder, row_group_size: int = 4):
    table = pa.table(
        {
            "id": [f"s{i}" for i in range(ROWS)],
            "split": ["train"] * 6 + ["val"] * 2 + ["test"] * 2,
            "y": [i % 2 for i in range(ROWS)],  # integers
            "age": [40.5 + i if i != 3 else None for i in range(ROWS)],  # floats with a null
            "smoker": [bool(i % 3) for i in range(ROWS)],
            "notes": ["a long free-text note nobody models " * 20] * ROWS,  # not in the spec
            "billing": list(range(ROWS)),  # not in the spec
        }
    )
    pq.write_table(table, folder / "manifest.parquet", row_group_size=row_group_size)
    table.to_pandas().to_csv(folder / "manifest.csv", index=False)


def _spec(folder, manifest: str, **changes):
    return parse_spec(
        {
            "manifest": manifest,
            "id_column": "id",
            "split": {"column": "split"},
            "targets": {"y": {"kind": "binary", "column": "y", "positive": "1"}},
            "modalities": {
                "labs": {"kind": "tabular", "numeric": ["age"], "categorical": ["smoker"]}
            },
            **changes,
        },
        base_dir=folder,
    )


def test_parquet_manifest_reads_only_the_used_columns_by_row_group(tmp_path, monkeypatch):
    _write(tmp_path)
    requested = []
    original = pq.ParquetFile.read_row_group

    def spy(self, group, columns=None, **kwargs):
        requested.append((group, None if columns is None else sorted(columns)))
        return original(self, group, columns=columns, **kwargs)

    monkeypatch.setattr(pq.ParquetFile, "read_row_group", spy)
    cohort = load_cohort(_spec(tmp_path, "manifest.parquet"))
    used = sorted(["id", "split", "y", "age", "smoker"])
    assert requested == [(0, used), (1, used), (2, used)]  # three row groups of 4, 4, 2 rows
    assert sorted(cohort.frame.columns) == used
    assert cohort.ids.tolist() == [f"s{i}" for i in range(ROWS)]
    assert cohort.indices("test").tolist() == [8, 9]


def test_parquet_cells_read_as_the_csv_export_reads(tmp_path):
    _write(tmp_path, row_group_size=3)
    from_parquet = load_cohort(_spec(tmp_path, "manifest.parquet")).frame
    from_csv = load_cohort(_spec(tmp_path, "manifest.csv")).frame
    pd.testing.assert_frame_equal(from_parquet, from_csv[list(from_parquet.columns)])
    assert from_parquet["age"].iloc[3] == "" and from_parquet["age"].iloc[0] == "40.5"


def test_missing_column_of_a_parquet_manifest_lists_the_files_columns(tmp_path):
    _write(tmp_path)
    spec = _spec(tmp_path, "manifest.parquet", group_column="patient")
    with pytest.raises(ManifestError, match=r"'patient'.*columns present: .*notes, billing"):
        load_cohort(spec)
