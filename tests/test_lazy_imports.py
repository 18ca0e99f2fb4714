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
        # timm imports torchvision, which imports torch._dynamo (about 1.6 s together): only a
        # model with an image encoder or a ViT core needs them, and imports them when built.
        "timm",
        "torchvision",
    ],
)
def test_predictor_import_leaves_library_unloaded(library):
    code = f"import sys, polymodal.predictor; print({library!r} in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_model_without_images_loads_without_timm(tmp_path_factory):
    from polymodal.data.spec import load_spec
    from polymodal.training.fit import fit
    from training.conftest import tiny_cohort, tiny_config  # tests/ is on sys.path

    base = tmp_path_factory.mktemp("tabular_only")
    run = tiny_config("model.modalities=[labs]", "train.max_epochs=1")
    fit(load_spec(tiny_cohort(base)), base / "run", run, progress=False)
    code = (
        "import sys; from polymodal.predictor import Predictor; "
        f"Predictor.load({str(base / 'run' / 'model')!r}); print('timm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
