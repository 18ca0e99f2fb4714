"""``polymodal cv``: one fit per fold of a grouped, stratified K-fold over the non-test rows.

The folds, the summaries and the report are :mod:`polymodal.evaluation.cross_validation`'s;
this module runs the fits, keeps each fold's out-of-fold predictions, and writes::

    OUT/cv.json                   settings, every fold, mean over folds with its t-interval,
                                  the pooled out-of-fold metrics with bootstrap CIs, the refit
    OUT/cv.md                     the same as tables
    OUT/cv.predictions.parquet    the pooled out-of-fold predictions (kept-predictions schema)
    OUT/fold_<k>/                 the k-th fit's run folder (model/ only with keep_models)
    OUT/refit/                    with refit: a fit on every non-test row (its model/)
    OUT/cache/                    the sample cache the folds share (unless train.cache_dir)
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from polymodal.data.manifest import Cohort, load_cohort
from polymodal.data.spec import CohortSpec
from polymodal.errors import PolymodalError
from polymodal.evaluation.cross_validation import (
    NOT_IN_FOLDS,
    FoldOutcome,
    assign_folds,
    best_epoch,
    fold_cohort,
    fold_metrics,
    fold_table,
    pooled_result,
    pooled_table,
    remove_fold_weights,
    stratum_target,
    summary,
    summary_markdown,
)
from polymodal.evaluation.kept_predictions import write_predictions
from polymodal.training.fit import fit
from polymodal.training.plugins import PLUGINS
from polymodal.training.run_config import RunConfig

OPTIMISM_NOTE = (
    "Each fold's validation rows also picked its epoch (and fitted any calibration or "
    "conformal section), so the out-of-fold numbers lean slightly optimistic."
)


@dataclass
class CrossValidation:
    """Where ``polymodal cv`` wrote its outputs, and what cv.json holds."""

    folder: Path
    summary: dict[str, Any]
    predictions: Path
    refit_model: Path | None


def cross_validate(
    spec: CohortSpec,
    out: Path,
    run: RunConfig,
    *,
    folds: int,
    seed: int = 0,
    n_boot: int = 1000,
    keep_models: bool = False,
    refit: bool = False,
    progress: bool = True,
) -> CrossValidation:
    """K fits, each validated on one fold; the pooled out-of-fold predictions scored.

    Raises:
        PolymodalError: fewer than 2 folds or more folds than patients (before any fit), or
            folds whose training rows give a target other classes (set them in the spec).
    """
    out = Path(out)
    cohort = load_cohort(spec)
    assignment = assign_folds(cohort, folds, seed)
    if run.train.cache and run.train.cache_dir is None:
        # Entries are keyed by each fold's fitted preprocessing: sharing is safe and saves decoding.
        run = run.model_copy(
            update={"train": run.train.model_copy(update={"cache_dir": out / "cache"})}
        )
    outcomes, infos = [], None
    for fold in range(folds):
        outcome, fold_infos = _run_fold(
            spec, out, run, cohort, assignment, fold, keep_models, progress
        )
        infos = _same_targets(infos, fold_infos, fold)
        outcomes.append(outcome)
    settings = _settings(spec, cohort, assignment, run, folds, seed, n_boot, keep_models, refit)
    table = pooled_table(outcomes, settings)
    predictions = write_predictions(out / "cv.predictions.parquet", table)
    pooled = pooled_result(table, outcomes[0].subset, infos, n_boot, seed)
    refit_record = _refit(spec, out, run, cohort, assignment, outcomes, progress) if refit else None
    result = summary(outcomes, pooled, settings, refit_record)
    (out / "cv.json").write_text(json.dumps(result, indent=2, default=str))
    (out / "cv.md").write_text(summary_markdown(result))
    refit_model = Path(refit_record["model"]) if refit_record else None
    return CrossValidation(out, result, predictions, refit_model)


def _run_fold(
    spec: CohortSpec,
    out: Path,
    run: RunConfig,
    cohort: Cohort,
    assignment: np.ndarray,
    fold: int,
    keep_models: bool,
    progress: bool,
) -> tuple[FoldOutcome, dict[str, dict]]:
    """Fit with fold ``fold`` as validation; its out-of-fold predictions and metrics."""
    from polymodal.predictor import Predictor

    run_dir = out / f"fold_{fold + 1}"
    held_out = fold_cohort(cohort, assignment, fold)
    fitted = fit(spec, run_dir, run, cohort=held_out, progress=progress)
    predictor = Predictor.load(fitted.model_dir, cache_dir=run.train.cache_dir)
    collector, available = predictor.collect(held_out, split="val")
    infos = predictor.loaded.target_infos
    settings = {"model": str(fitted.model_dir), "split": "val", "fold": fold + 1}
    record = {
        "fold": fold + 1,
        "n_rows": len(collector.ids),
        "n_groups": len(set(collector.groups)),
        "monitor": fitted.monitor,
        "best_score": fitted.best_score,
        "best_epoch": best_epoch(run_dir, fitted.monitor, fitted.best_score),
        "epochs_run": fitted.epochs_run,
        "model": str(fitted.model_dir) if keep_models else None,
    }
    outcome = FoldOutcome(
        fold + 1,
        tuple(available),
        fold_table(collector, available, infos, settings, fold),
        fold_metrics(collector, infos),
        record,
    )
    if not keep_models:
        remove_fold_weights(run_dir)
    return outcome, infos


def _same_targets(earlier: dict | None, infos: dict[str, dict], fold: int) -> dict[str, dict]:
    """The folds' target infos must agree on kinds and classes to pool their predictions."""
    if earlier is None:
        return infos
    for target, info in infos.items():
        before = earlier[target]
        if (info["kind"], info.get("classes")) != (before["kind"], before.get("classes")):
            raise PolymodalError(
                f"target {target!r}: fold {fold + 1}'s training rows give the classes "
                f"{info.get('classes')}, fold 1's {before.get('classes')}; their predictions "
                f"cannot be pooled. List the classes in the spec (targets.{target}.classes) "
                "or use fewer folds"
            )
    return earlier


def _settings(
    spec: CohortSpec,
    cohort: Cohort,
    assignment: np.ndarray,
    run: RunConfig,
    folds: int,
    seed: int,
    n_boot: int,
    keep_models: bool,
    refit: bool,
) -> dict[str, Any]:
    """cv.json's settings: what was cross-validated, and how."""
    return {
        "cohort": spec.name,
        "manifest": str(cohort.manifest_path),
        "folds": folds,
        "seed": seed,
        "grouped_by": spec.group_column or spec.id_column,
        "stratified_on": stratum_target(cohort),
        "rows_in_folds": int((assignment != NOT_IN_FOLDS).sum()),
        "test_rows": int((cohort.split == "test").sum()),
        "n_boot": n_boot,
        "keep_models": keep_models,
        "refit": refit,
        "run": run.record(),
        "notes": [OPTIMISM_NOTE],
    }


@dataclasses.dataclass
class _EveryRowTrains(Cohort):
    """A cohort whose non-test rows all train; the validation split every fit needs re-reads
    them, so nothing is held out and no epoch is chosen on unseen rows."""

    def indices(self, split: str | None = None) -> np.ndarray:
        return super().indices("train" if split == "val" else split)


def _refit(
    spec: CohortSpec,
    out: Path,
    run: RunConfig,
    cohort: Cohort,
    assignment: np.ndarray,
    outcomes: list[FoldOutcome],
    progress: bool,
) -> dict[str, Any]:
    """Fit on every non-test row for the folds' median best epoch count (early stopping off,
    no held-out rows); sections fitted on validation predictions are left out."""
    epochs = [o.record["best_epoch"] for o in outcomes if o.record["best_epoch"]]
    n_epochs = int(np.ceil(np.median(epochs))) if epochs else run.train.max_epochs
    dropped = [n for n in run.plugin_sections() if PLUGINS.get(n).fits_on_validation]
    train = run.train.model_copy(
        update={"max_epochs": n_epochs, "early_stopping_patience": None, "monitor": "val/loss"}
    )
    refit_run = run.model_copy(update={"train": train, **dict.fromkeys(dropped)})
    split = cohort.split.copy()
    split[assignment != NOT_IN_FOLDS] = "train"
    fields = {f.name: getattr(cohort, f.name) for f in dataclasses.fields(cohort) if f.init}
    everyone = _EveryRowTrains(**{**fields, "split": split})
    fitted = fit(spec, out / "refit", refit_run, cohort=everyone, progress=progress)
    return {
        "model": str(fitted.model_dir),
        "max_epochs": n_epochs,
        "rows": int((assignment != NOT_IN_FOLDS).sum()),
        "left_out_sections": dropped,
        "note": "trained on every non-test row for the folds' median best epoch; its logged "
        "validation metrics are on its own training rows"
        + (f"; {', '.join(dropped)} left out (nothing held out to fit them on)" if dropped else ""),
    }
