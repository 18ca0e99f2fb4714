"""A tiny tabular cohort with a binary, a multiclass and a regression target (patients with two
rows each, train/val/test by patient), and a tiny run on it with recalibration and conformal
thresholds: seconds on a CPU. Built once per test process under pytest's base folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from polymodal.data.spec import load_spec
from polymodal.training.fit import fit
from polymodal.training.run_config import RunConfig, load_run_config

TABULAR_MODEL = [
    "model.core=concat",
    "model.dim=8",
    "train.batch_size=16",
    "train.max_epochs=1",
    "train.cache=false",
    "train.early_stopping_patience=null",
]


def tabular_config(*overrides: str) -> RunConfig:
    return load_run_config(None, [*TABULAR_MODEL, *overrides])


def make_tabular_cohort(folder: Path, n_patients: int = 30, seed: int = 0) -> Path:
    """Spec path of the cohort; every 6th patient is test, the one before it val."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    rows = []
    for patient in range(n_patients):
        split = ("train", "train", "train", "train", "val", "test")[patient % 6]
        for visit in range(2):
            x1, x2 = rng.normal(size=2)
            grade = "abc"[int(np.digitize(x1 + 0.3 * rng.normal(), [-0.5, 0.5]))]
            rows.append(
                {
                    "sample_id": f"s{patient}_{visit}",
                    "patient_id": f"p{patient}",
                    "split": split,
                    "x1": f"{x1:.4f}",
                    "x2": f"{x2:.4f}",
                    "outcome": str(int(x1 + x2 + 0.5 * rng.normal() > 0)),
                    "grade": grade,
                    "value": f"{2 * x1 + rng.normal():.4f}",
                }
            )
    pd.DataFrame(rows).to_csv(folder / "manifest.csv", index=False)
    spec = {
        "name": "tiny-tabular",
        "manifest": "manifest.csv",
        "id_column": "sample_id",
        "group_column": "patient_id",
        "split": {"column": "split"},
        "targets": {
            "grade": {"kind": "multiclass", "column": "grade"},
            "outcome": {"kind": "binary", "column": "outcome"},
            "value": {"kind": "regression", "column": "value"},
        },
        "modalities": {"labs": {"kind": "tabular", "numeric": ["x1", "x2"]}},
    }
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return folder / "spec.yaml"


def make_scrambled_test_cohort(folder: Path) -> Path:
    """:func:`make_tabular_cohort` with every test row's inputs and labels scrambled: a search
    that never reads the test split scores its trials exactly as on the original cohort."""
    spec_path = make_tabular_cohort(folder)
    manifest = pd.read_csv(spec_path.parent / "manifest.csv", dtype=str)
    test = manifest["split"] == "test"
    rng = np.random.default_rng(1)
    manifest.loc[test, ["x1", "x2"]] = rng.normal(scale=5, size=(test.sum(), 2)).round(4)
    manifest.loc[test, "outcome"] = manifest.loc[test, "outcome"].map({"0": "1", "1": "0"})
    manifest.loc[test, "grade"] = manifest.loc[test, "grade"].map({"a": "b", "b": "c", "c": "a"})
    manifest.loc[test, "value"] = "0.0"
    manifest.to_csv(spec_path.parent / "manifest.csv", index=False)
    return spec_path


def tabular_cohort(base: Path) -> Path:
    spec = base / "tabular_cohort" / "spec.yaml"
    return spec if spec.is_file() else make_tabular_cohort(spec.parent)


def calibrated_run(base: Path) -> Path:
    """Run folder of a 1-epoch fit with ``calibration: temperature`` and ``conformal: 0.8``."""
    out = base / "calibrated_run"
    if not (out / "model" / "conformal.json").is_file():
        run = tabular_config("calibration.method=temperature", "conformal.coverage=0.8")
        fit(load_spec(tabular_cohort(base)), out, run, progress=False)
    return out
