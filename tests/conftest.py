"""Shared fixtures. Real data lives in ../shared/data beside the checkout; tests skip without it."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"

# Two cores are shared by two test workers: one thread each keeps them from fighting. fit,
# evaluate and predict choose their own thread count (polymodal.runtime); this is its override.
torch.set_num_threads(1)
os.environ.setdefault("POLYMODAL_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real public data, or skip the test when it is not beside the checkout."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


# A small patient table (a clinical table and a note per patient) for the DataFrame API and
# the distributed-training tests.
TINY = ["train.max_epochs=2", "model.dim=16", "train.seed=0"]


def patients(n: int, seed: int = 0) -> pd.DataFrame:
    """A clinical table and a note per patient; the label follows age."""
    rng = np.random.default_rng(seed)
    age = rng.normal(60, 10, n).round()
    label = (age + rng.normal(0, 3, n) > 60).astype(int)
    notes = np.where(
        label == 1,
        "reports chest pain and shortness of breath on exertion",
        "routine follow up visit without any new complaints",
    )
    frame = pd.DataFrame(
        {"age": age, "sex": rng.choice(["F", "M"], n), "note": notes, "outcome": label}
    )
    frame.loc[3, "age"] = np.nan  # a gap: the column is float in pandas
    return frame


@pytest.fixture(scope="session")
def make_patients() -> Callable[..., pd.DataFrame]:
    return patients


@pytest.fixture(scope="session")
def tiny_settings() -> list[str]:
    return list(TINY)
