"""Loading a model folder does not import heavy optional libraries it does not use."""

from __future__ import annotations

import subprocess
import sys


def test_predictor_import_leaves_monai_unloaded():
    # MONAI took 9 of the 16.5 s a model folder took to load; only augmentation needs it.
    code = "import sys, polymodal.predictor; print('monai' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
