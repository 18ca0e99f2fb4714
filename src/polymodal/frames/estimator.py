"""A scikit-learn estimator over :func:`polymodal.fit`, so a polymodal model drops into an
existing pipeline (``fit``/``predict``/``predict_proba``/``score``, ``get_params``/``clone``).

``X`` is a DataFrame of the input columns (file paths, notes, clinical values), ``y`` the labels.
One target per estimator; the model folder is kept under ``out`` (a new folder per ``fit``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator

from polymodal.errors import SpecError
from polymodal.frames.model import fit_frame
from polymodal.frames.text_table import as_text_table

TARGET = "target"


class PolymodalEstimator(BaseEstimator):
    """A polymodal model as a scikit-learn estimator.

    Args:
        modalities: ``{name: column or [columns] or spec section}`` (default: every column of
            ``X``, see :func:`polymodal.fit`).
        kind: the target's kind (``"binary"``, ``"multiclass"``, ``"regression"``, ...);
            guessed from ``y`` when None.
        core: the fusion core (default: the run config's).
        settings: dotted run-config overrides, e.g. ``("train.max_epochs=5",)``.
        out: folder under which each ``fit`` writes its run (default ``polymodal_runs``).
        group_column: a column of ``X`` naming the patient (rows of one patient stay together).
        root: folder that relative file paths in ``X`` resolve against.

    Attributes (after ``fit``): ``model_`` (a :class:`~polymodal.frames.model.Model`),
    ``classes_`` (class-valued targets), ``target_`` (the target's name).
    """

    def __init__(
        self,
        modalities: Mapping[str, Any] | None = None,
        kind: str | None = None,
        core: str | None = None,
        settings: Sequence[str] = (),
        out: str | Path = "polymodal_runs",
        group_column: str | None = None,
        root: str | Path | None = None,
    ) -> None:
        self.modalities = modalities
        self.kind = kind
        self.core = core
        self.settings = settings
        self.out = out
        self.group_column = group_column
        self.root = root

    def fit(self, X: pd.DataFrame, y: Any) -> PolymodalEstimator:
        frame = _frame(X)
        name = str(getattr(y, "name", None) or TARGET)
        if name in frame.columns:
            raise SpecError(f"X already has a column {name!r}; rename y (y.name) or the column")
        frame = frame.assign(**{name: np.asarray(y)})
        run = Path(self.out) / f"run-{len(list(Path(self.out).glob('run-*'))):03d}"
        self.model_ = fit_frame(
            frame,
            {name: self.kind} if self.kind else name,
            self.modalities,
            core=self.core,
            out=run,
            group_column=self.group_column,
            root=self.root,
            settings=list(self.settings),
            progress=False,
        )
        self.target_ = name
        info = self.model_.loaded.target_infos[name]
        if "classes" in info:
            # Classes as y gave them (ints stay ints), in the model's order.
            text = as_text_table(pd.DataFrame({"y": np.asarray(y)}))["y"].to_numpy()
            original = dict(zip(text, np.asarray(y), strict=True))
            self.classes_ = np.asarray([original.get(c, c) for c in info["classes"]])
        return self

    def _outputs(self, X: pd.DataFrame) -> tuple[Any, dict[str, Any], dict[str, np.ndarray]]:
        """The target kind, its info and the head's outputs for every row of ``X``."""
        from polymodal import targets

        cohort = self.model_.cohort(_frame(X), root=self.root)
        collector, available = self.model_.collect(cohort)
        no_data = ~np.logical_or.reduce([a.astype(bool) for a in available.values()])
        if no_data.any():
            row = X.index[int(np.flatnonzero(no_data)[0])]
            raise SpecError(
                f"row {row!r} of X has no data in any modality the model reads "
                f"({', '.join(available)}): no prediction; drop it or give it some data"
            )
        info = self.model_.loaded.target_infos[self.target_]
        return targets.get(info["kind"]), info, collector.predictions(self.target_)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """The predicted class (class-valued targets: the most probable) or value, one per
        row of ``X``."""
        kind, info, outputs = self._outputs(X)
        probabilities = kind.class_probabilities(info, outputs)
        if probabilities is not None:
            return self.classes_[probabilities.argmax(axis=1)]
        values = kind.point_values(info, outputs)
        if values is None:
            raise SpecError(f"target {self.target_!r} ({info['kind']}) has no single prediction")
        return values

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """(rows, classes) probabilities in the order of ``classes_``."""
        kind, info, outputs = self._outputs(X)
        probabilities = kind.class_probabilities(info, outputs)
        if probabilities is None:
            raise SpecError(f"target {self.target_!r} has no classes: use predict")
        return probabilities

    def score(self, X: pd.DataFrame, y: Any) -> float:
        """Accuracy (class-valued targets) or R² (values), as scikit-learn's mixins define."""
        from sklearn.metrics import accuracy_score, r2_score

        predicted = self.predict(X)
        if hasattr(self, "classes_"):
            return float(accuracy_score(np.asarray(y), predicted))
        return float(r2_score(np.asarray(y, dtype=float), predicted.astype(float)))


def _frame(X: Any) -> pd.DataFrame:
    if not isinstance(X, pd.DataFrame):
        raise SpecError("X must be a pandas DataFrame whose columns name the inputs")
    return X
