"""The top-level API: every public name resolves from ``polymodal`` itself, with a docstring,
and ``import polymodal`` alone loads no heavy library."""

from __future__ import annotations

import subprocess
import sys

import pytest

import polymodal

PUBLIC = ("Predictor", "fit", "evaluate", "evaluate_model", "load_spec", "load", "load_cohort")


@pytest.mark.parametrize("name", PUBLIC)
def test_each_public_name_resolves_with_a_docstring(name: str) -> None:
    value = getattr(polymodal, name)
    assert callable(value) and (value.__doc__ or "").strip()
    assert name in polymodal.__all__ and name in dir(polymodal)


def test_every_name_in_all_resolves() -> None:
    for name in polymodal.__all__:
        assert getattr(polymodal, name) is not None, name


def test_the_names_are_the_library_objects() -> None:
    from polymodal.data.spec import load_spec
    from polymodal.evaluation.evaluate import evaluate_model
    from polymodal.frames.api import fit
    from polymodal.predictor import Predictor
    from polymodal.training.fit import fit as fit_spec

    assert polymodal.Predictor is Predictor and polymodal.fit is fit
    assert polymodal.fit_spec is fit_spec
    assert polymodal.evaluate is evaluate_model and polymodal.load_spec is load_spec


def test_an_unknown_name_is_an_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'predictor_v2'"):
        _ = polymodal.predictor_v2


def test_load_gives_a_predictor(tmp_path_factory: pytest.TempPathFactory) -> None:
    from training.conftest import tiny_run

    run = tiny_run(tmp_path_factory.getbasetemp())
    predictor = polymodal.load(run / "model")
    assert isinstance(predictor, polymodal.Predictor)
    assert predictor.modalities == ["lesion", "ct", "labs", "note", "vitals"]


def test_import_polymodal_loads_no_torch() -> None:
    code = (
        "import sys, polymodal; "
        "print(sorted(m for m in ('torch', 'lightning', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
