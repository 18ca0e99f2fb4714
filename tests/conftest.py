"""Shared fixtures. Real data lives in ../shared/data beside the checkout; tests skip without it."""

from __future__ import annotations

import os
from pathlib import Path

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
