"""Loading a model folder does not import heavy optional libraries it does not use."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(
    "library",
    [
        # MONAI took 9 of the 16.5 s a model folder took to load; only augmentation needs it.
        "monai",
        # scikit-learn and SciPy (about a second together, idle) compute metrics and fit
        # calibration: evaluation needs them, a model that only predicts does not.
        "sklearn",
        "scipy",
    ],
)
def test_predictor_import_leaves_library_unloaded(library):
    code = f"import sys, polymodal.predictor; print({library!r} in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
