"""A small patient table for the distributed-training tests (as in tests/frames)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

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
