"""A trained model that reads DataFrames: ``fit(df, ...)``, then ``predict``, ``evaluate``,
``save``; ``polymodal.load(folder)`` gives it back.

:class:`Model` is a :class:`~polymodal.predictor.Predictor` (everything a predictor does) that
also takes new rows as a DataFrame. Relative file paths in those rows resolve against ``root``
(by default the current folder) and must lie inside it, as for a manifest.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from polymodal.data.manifest import Cohort, cohort_from_frame
from polymodal.errors import SpecError
from polymodal.frames.spec_from_frame import (
    ROW_ID,
    ModalitiesArg,
    TargetArg,
    spec_from_frame,
    with_row_ids,
    write_cohort,
)
from polymodal.frames.text_table import as_text_table
from polymodal.predictor import Predictor

# Stand-in for the file name in messages about a DataFrame's rows.
FRAME = Path("<DataFrame>")


class Model(Predictor):
    """A model folder loaded for prediction, reading new rows from DataFrames."""

    def cohort(self, frame: pd.DataFrame, *, root: Path | str | None = None) -> Cohort:
        """``frame``'s rows as a cohort for inference (labels optional, any modality absent)."""
        spec = self.loaded.spec
        if spec.id_column not in frame.columns and spec.id_column == ROW_ID:
            frame = frame.assign(**{ROW_ID: frame.index.astype(str)})
        return cohort_from_frame(
            spec, as_text_table(frame), FRAME, for_inference=True, root=root or Path.cwd()
        )

    def predict(
        self, frame: pd.DataFrame, *, root: Path | str | None = None, progress: bool = False
    ) -> pd.DataFrame:
        """One row per row of ``frame``: its id, the modalities used and each target's
        predictions (the columns ``polymodal predict`` writes)."""
        return self.predict_cohort(self.cohort(frame, root=root), progress=progress)

    def evaluate(
        self,
        frame: pd.DataFrame,
        *,
        root: Path | str | None = None,
        subsets: bool = True,
        n_boot: int = 1000,
        progress: bool = False,
        **options: Any,
    ) -> Any:
        """Metrics with patient-grouped bootstrap CIs on the labelled rows of ``frame``, for
        every subset of modalities (:func:`polymodal.evaluation.evaluate.evaluate_model`)."""
        from polymodal.evaluation.evaluate import evaluate_model

        cohort = self.cohort(frame, root=root)
        cohort = replace(cohort, split=pd.Series(["test"] * len(cohort), dtype=object))
        return evaluate_model(
            self,
            cohort,
            split="test",
            subsets=subsets,
            n_boot=n_boot,
            progress=progress,
            **options,
        )

    def save(self, folder: Path | str) -> Path:
        """Copy the model folder to ``folder`` (which must not exist yet); returns it."""
        folder = Path(folder)
        if folder.exists():
            raise SpecError(f"{folder}: already exists; give a new folder to save the model in")
        shutil.copytree(self.loaded.folder, folder)
        return folder


def fit_frame(
    frame: pd.DataFrame,
    target: TargetArg,
    modalities: ModalitiesArg = None,
    *,
    core: str | None = None,
    out: Path | str | None = None,
    id_column: str | None = None,
    group_column: str | None = None,
    split_column: str | None = None,
    root: Path | str | None = None,
    config: Path | str | None = None,
    settings: Sequence[str] = (),
    name: str = "cohort",
    progress: bool = True,
) -> Model:
    """Train on a DataFrame; see :func:`polymodal.fit`."""
    from polymodal.training.fit import fit
    from polymodal.training.run_config import load_run_config

    out = Path(out) if out is not None else _new_run_folder()
    frame, id_column = with_row_ids(frame, id_column)
    spec_data = spec_from_frame(
        as_text_table(frame),
        target,
        modalities,
        id_column=id_column,
        group_column=group_column,
        split_column=split_column,
        name=name,
        root=Path(root) if root is not None else Path.cwd(),
    )
    spec = write_cohort(frame, spec_data, out / "cohort")
    overrides = [*([f"model.core={core}"] if core else []), *settings]
    run = load_run_config(Path(config) if config else None, overrides)
    result = fit(spec, out / "run", run, progress=progress)
    return Model.load(result.model_dir)


def _new_run_folder() -> Path:
    return Path("polymodal_runs") / datetime.now().strftime("fit-%Y%m%d-%H%M%S")
