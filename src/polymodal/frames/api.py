"""``polymodal.fit`` and ``polymodal.load``: the top-level entry points.

``fit`` takes either a DataFrame and the names of its columns (three lines from a table to a
model), or a cohort spec and a run config (the command line's path); both train through
:func:`polymodal.training.fit.fit`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from polymodal.frames.model import Model, fit_frame


def fit(data: Any, *args: Any, **kwargs: Any) -> Any:
    """Train a model on a DataFrame or on a cohort spec.

    From a DataFrame (returns a :class:`~polymodal.frames.model.Model`)::

        model = polymodal.fit(df, target="dx", modalities={"skin": "image_path",
                              "clinical": ["age", "sex"]}, core="synergy", out="runs/dx")
        table = model.predict(df_new)
        scores = model.evaluate(df_test)

    ``target``: a column (its kind guessed: two values binary, a few classes multiclass, other
    numbers regression), several, or ``{column: kind}`` / ``{column: spec section}``.
    ``modalities``: ``{name: column or [columns] or spec section}``; by default every other
    column (file paths: images or volumes, long text: notes, the rest one clinical table).
    Optional: ``core``, ``out`` (default ``polymodal_runs/fit-<time>``), ``id_column`` (default
    the index), ``group_column`` (patients; default one per row), ``split_column`` (default: 15 %
    of groups held out for validation), ``root`` (folder that relative file paths resolve
    against and must lie in; default the current folder), ``config`` (a run config YAML),
    ``settings`` (dotted overrides such as ``["train.max_epochs=5"]``). The inferred spec and
    the rows are written to ``OUT/cohort/`` (``spec.yaml``, ``manifest.parquet``) to read, edit
    and reuse; the model folder is ``OUT/run/model``.

    From a cohort spec (a :class:`~polymodal.data.spec.CohortSpec` or its YAML path; returns a
    :class:`~polymodal.training.fit.FitResult`)::

        result = polymodal.fit("cohort/spec.yaml", "runs/a", polymodal.load_run_config())

    with the options of :func:`polymodal.training.fit.fit`.
    """
    if isinstance(data, pd.DataFrame):
        return fit_frame(data, *args, **kwargs)
    from polymodal.data.spec import load_spec
    from polymodal.training.fit import fit as fit_spec

    spec = load_spec(data) if isinstance(data, str | Path) else data
    return fit_spec(spec, *args, **kwargs)


def load(folder: str | Path, **options: Any) -> Model:
    """The model folder ``folder`` (OUT/model of a fit, or a ``Model.save`` copy) as a
    :class:`~polymodal.frames.model.Model`: a :class:`~polymodal.Predictor` that also reads
    DataFrames.

    ``options`` go to :meth:`Predictor.load` (``device``, ``batch_size``, ``tta``, ...). The
    folder's files are checked against its checksums first.

    Raises:
        ModelError: not a model folder, a file damaged or changed, or weights that do not fit.
    """
    return Model.load(folder, **options)
