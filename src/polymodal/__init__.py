"""polymodal: multimodal clinical prediction robust to missing modalities.

The public surface, importable from the top level::

    import polymodal

    model = polymodal.fit(df, target="dx", modalities={"skin": "image_path",
                          "clinical": ["age", "sex"]}, core="synergy")   # from a DataFrame
    table = model.predict(df_new)
    scores = model.evaluate(df_test)
    model.save("models/dx"); model = polymodal.load("models/dx")

    spec = polymodal.load_spec("cohort/spec.yaml")                      # from a cohort spec
    result = polymodal.fit(spec, "runs/demo", polymodal.load_run_config(None, ["model.core=synergy"]))
    predictor = polymodal.load(result.model_dir)
    table = predictor.predict_manifest("new_patients.csv")

Every name is imported on first use (module ``__getattr__``, by module name: the package
imports none of its modules), so ``import polymodal`` stays fast, loads neither torch nor
Lightning, and no submodule that reads ``polymodal.__version__`` forms an import circle.
"""

from __future__ import annotations

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

try:
    __version__ = version("polymodal")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0.0.0+unknown"

# name -> (module, attribute): what each lazily exported name is.
_EXPORTS: dict[str, tuple[str, str]] = {
    "Predictor": ("polymodal.predictor", "Predictor"),
    "fit": ("polymodal.frames.api", "fit"),
    "fit_spec": ("polymodal.training.fit", "fit"),
    "Model": ("polymodal.frames.model", "Model"),
    "PolymodalEstimator": ("polymodal.frames.estimator", "PolymodalEstimator"),
    "FitResult": ("polymodal.training.fit", "FitResult"),
    "evaluate": ("polymodal.evaluation.evaluate", "evaluate_model"),
    "evaluate_model": ("polymodal.evaluation.evaluate", "evaluate_model"),
    "load_spec": ("polymodal.data.spec", "load_spec"),
    "CohortSpec": ("polymodal.data.spec", "CohortSpec"),
    "load_cohort": ("polymodal.data.manifest", "load_cohort"),
    "load_run_config": ("polymodal.training.run_config", "load_run_config"),
    "RunConfig": ("polymodal.training.run_config", "RunConfig"),
    "PolymodalError": ("polymodal.errors", "PolymodalError"),
    "ModelError": ("polymodal.errors", "ModelError"),
    "SpecError": ("polymodal.errors", "SpecError"),
}

__all__ = ["__version__", "load", *sorted(_EXPORTS)]


def load(folder: str | Path, **options: Any) -> Any:
    """The model folder ``folder`` (OUT/model of a fit) as a :class:`~polymodal.Model`: a
    :class:`~polymodal.Predictor` that also reads DataFrames (``predict(df)``,
    ``evaluate(df)``).

    ``options`` go to :meth:`Predictor.load` (``device``, ``batch_size``, ``tta``, ...). The
    folder's files are checked against its checksums first.

    Raises:
        ModelError: not a model folder, a file damaged or changed, or weights that do not fit.
    """
    return import_module("polymodal.frames.api").load(folder, **options)


def __getattr__(name: str) -> Any:
    """Import an exported name on first use and keep it on the package."""
    if name not in _EXPORTS:
        raise AttributeError(f"module 'polymodal' has no attribute {name!r}")
    module, attribute = _EXPORTS[name]
    value = getattr(import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})
