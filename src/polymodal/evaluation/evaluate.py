"""Evaluate a trained model: metrics with grouped bootstrap CIs for every subset of modalities.

The missing-modality matrix answers "how good is this one model when only these modalities
arrive?". Every subset is scored on the same population (all labelled rows of the split), with
the modalities outside the subset masked as unavailable; a modality inside the subset that a row
lacks stays missing, as it would in the clinic.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from rich.progress import Progress

from polymodal.data.manifest import Cohort
from polymodal.data.spec import SPLITS
from polymodal.errors import PolymodalError
from polymodal.evaluation.bootstrap import BootstrapResult, bootstrap_metrics
from polymodal.evaluation.coverage import coverage_metrics
from polymodal.evaluation.kept_predictions import predictions_table, write_predictions
from polymodal.evaluation.provenance import evaluated_at, label_references, model_provenance
from polymodal.evaluation.tables import EvaluationResult, modality_subsets
from polymodal.predictor import Predictor
from polymodal.targets.predictions import PredictionCollector


def evaluate_model(
    predictor: Predictor,
    cohort: Cohort,
    *,
    split: str = "test",
    subsets: bool = True,
    modalities: Sequence[str] | None = None,
    n_boot: int = 1000,
    specificity: float = 0.9,
    seed: int = 0,
    progress: bool = True,
    predictions_path: Path | str | None = None,
) -> EvaluationResult:
    """Score ``predictor`` on one split of ``cohort``.

    Args:
        split: which split to score ("test", "val" or "train").
        subsets: also score every non-empty subset of the model's modalities.
        modalities: restrict the matrix to subsets of these modalities (default: all).
        n_boot: bootstrap resamples (by patient group) for the 95 % intervals.
        specificity: the specificity at which sensitivity is reported.
        predictions_path: also keep every subset's per-sample predictions in this Parquet
            file (schema: :mod:`polymodal.evaluation.kept_predictions`), for figures and
            paired comparisons (``polymodal compare``) without the model.

    Test-time augmentation is the predictor's (``Predictor.load(..., tta=True)``); the result's
    settings record the views averaged (``tta_views``).
    """
    if split not in SPLITS:
        raise PolymodalError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    if len(cohort.indices(split)) == 0:
        raise PolymodalError(
            f"{cohort.manifest_path}: the {split!r} split has no rows; choose another split"
        )
    names = list(modalities or predictor.modalities)
    plan = modality_subsets(names) if subsets else [tuple(names)]
    result = EvaluationResult(
        settings={
            "model": str(predictor.loaded.folder),
            "manifest": str(cohort.manifest_path),
            # Where its relative file paths were resolved (another table: its own folder).
            "data_root": str(cohort.data_root),
            "split": split,
            "n_boot": n_boot,
            "specificity": specificity,
            "seed": seed,
            "population": "all labelled rows of the split; modalities outside a subset masked",
            # Test-time augmentation: the dihedral views whose probabilities were averaged.
            "tta_views": list(predictor.views) if predictor.tta else None,
            # The folder's recalibration (method per target) and conformal coverage, or None
            # where the predictor scored the model's own probabilities (calibrated=False).
            "recalibration": _recalibration(predictor),
            "conformal_coverage": predictor.conformal.coverage if predictor.conformal else None,
            # For reports: the cohort, when, and the model's core, config and training cohort.
            "cohort": cohort.spec.name,
            "evaluated_at": evaluated_at(),
            "provenance": model_provenance(predictor.loaded.folder),
        }
    )
    collectors, available = predictor.collect_subsets(cohort, plan, split=split, progress=progress)
    infos = predictor.loaded.target_infos
    labelled = {t: collectors[plan[0]].arrays(t)[:2] for t in infos}  # labels: same per subset
    result.settings["labels"] = label_references(labelled, infos, specificity)
    if predictions_path is not None:
        settings = dict(result.settings)
        table = predictions_table(collectors, available, predictor.loaded.target_infos, settings)
        write_predictions(predictions_path, table)
    with Progress(transient=True, disable=not progress) as bar:
        task = bar.add_task("bootstrapping metrics per modality subset", total=len(plan))
        for subset in plan:
            for target, info in predictor.loaded.target_infos.items():
                y_true, pred, groups = collectors[subset].arrays(target)
                if len(y_true) == 0:
                    continue
                ci = bootstrap_metrics(
                    info["kind"],
                    y_true,
                    pred,
                    groups,
                    n_boot=n_boot,
                    seed=seed,
                    classes=info.get("classes"),
                    specificity=specificity,
                    horizons=info.get("horizons"),
                )
                _add_coverage(ci, predictor, collectors[subset], target, n_boot, seed)
                result.add(target, info["kind"], subset, ci, classes=info.get("classes"))
            bar.advance(task)
    return result


def _recalibration(predictor: Predictor) -> dict[str, str] | None:
    """``{target: method}`` of the recalibration the predictor applies; None without one."""
    if predictor.recalibration is None:
        return None
    return {t: fitted.method for t, fitted in predictor.recalibration.targets.items()}


def _add_coverage(
    ci: BootstrapResult,
    predictor: Predictor,
    collector: PredictionCollector,
    target: str,
    n_boot: int,
    seed: int,
) -> None:
    """With conformal thresholds in the model folder, ``ci`` also gets the empirical coverage
    and the mean set size / interval width (:mod:`polymodal.evaluation.coverage`)."""
    conformal = predictor.conformal
    if conformal is None or target not in conformal.targets:
        return
    labels, labelled = collector.labels(target)
    outputs = {name: v[labelled] for name, v in collector.predictions(target).items()}
    groups = np.asarray(collector.groups, dtype=object)[labelled]
    info = predictor.loaded.target_infos[target]
    covered = coverage_metrics(
        conformal.targets[target],
        conformal.coverage,
        info,
        outputs,
        labels[labelled],
        groups,
        n_boot=n_boot,
        seed=seed,
    )
    ci.update(covered)
    ci.reasons.update(covered.reasons)
