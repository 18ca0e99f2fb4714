"""Grouped, stratified K-fold cross-validation of one run config (``polymodal cv``).

The rows outside the test split (``train`` and ``val`` of the cohort) are cut into K folds by
patient (group), stratified on the first target when its kind is class-valued
(scikit-learn's ``StratifiedGroupKFold``); the test split is never read. Fold k is the
validation split of the k-th fit (it selects the epoch, and any ``calibration``/``conformal``
section is fitted on it) and the other folds its training split, so every non-test row is
predicted once, out of fold, by a model that never trained on its patient.

Reported (``OUT/cv.json``, ``OUT/cv.md``):

* each metric per fold, and its mean over folds with a t-interval
  (``mean ± t(0.975, K − 1) · sd / √K``, the folds' spread, not a sampling interval of a new
  cohort);
* the pooled out-of-fold predictions' metrics with the patient-grouped bootstrap
  (:func:`polymodal.evaluation.bootstrap.bootstrap_metrics`), the predictions themselves in
  ``OUT/cv.predictions.parquet`` (the schema of :mod:`polymodal.evaluation.kept_predictions`,
  one ``subset``: all of the model's modalities, plus a ``fold`` column).

Because the validation fold also picks each fit's epoch, the out-of-fold numbers lean slightly
optimistic (as any early-stopped validation score); a test split stays the unbiased check.

Run folder: ``OUT/fold_<k>/`` per fit (logs, run.json; ``model/`` and ``checkpoints/`` only with
``keep_models``), ``OUT/cache/`` shared by the folds (entries are keyed by each fold's fitted
preprocessing), ``OUT/refit/`` with ``refit``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy import stats

from polymodal import targets
from polymodal.data.manifest import Cohort
from polymodal.errors import PolymodalError
from polymodal.evaluation.bootstrap import bootstrap_metrics
from polymodal.evaluation.kept_predictions import METADATA_KEY, predictions_table
from polymodal.evaluation.metrics import compute_metrics
from polymodal.evaluation.tables import EvaluationResult

NOT_IN_FOLDS = -1  # fold of a test row (or a row without a known split)


def stratum_target(cohort: Cohort) -> str | None:
    """The first target of the spec when its kind is class-valued (stratified on), else None."""
    name, first = next(iter(cohort.spec.targets.items()))
    return name if targets.get(first.kind).class_valued else None


def assign_folds(cohort: Cohort, folds: int, seed: int = 0) -> np.ndarray:
    """Fold ``0..K-1`` of every non-test row ``(N,)``, :data:`NOT_IN_FOLDS` for the others.

    Raises:
        PolymodalError: ``folds`` < 2, or more folds than patients among the non-test rows.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    rows = cohort.split.isin(["train", "val"]).to_numpy()
    groups = cohort.groups.to_numpy()[rows]
    n_groups = len(set(groups))
    if folds < 2:
        raise PolymodalError(f"--folds {folds}: cross-validation needs at least 2 folds")
    if folds > n_groups:
        raise PolymodalError(
            f"--folds {folds}: the non-test rows of {cohort.manifest_path} hold {n_groups} "
            f"patient(s); a fold needs at least one patient, so use at most {n_groups} folds"
        )
    target = stratum_target(cohort)
    strata = np.zeros(rows.sum(), dtype=object)
    if target is not None:
        column = cohort.frame[cohort.spec.targets[target].column].str.strip().to_numpy()[rows]
        strata = np.where(column == "", "(missing)", column)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    assignment = np.full(len(cohort), NOT_IN_FOLDS)
    positions = np.flatnonzero(rows)
    for fold, (_, held) in enumerate(splitter.split(positions, strata.astype(str), groups)):
        assignment[positions[held]] = fold
    return assignment


def fold_cohort(cohort: Cohort, assignment: np.ndarray, fold: int) -> Cohort:
    """The cohort with fold ``fold`` as ``val``, the other folds as ``train``, test untouched."""
    split = cohort.split.copy()
    in_folds = assignment != NOT_IN_FOLDS
    split[in_folds] = "train"
    split[assignment == fold] = "val"
    return dataclasses.replace(cohort, split=split)


def t_interval(values: list[float], level: float = 0.95) -> dict[str, Any]:
    """Mean over folds with a t-interval of the mean; NaN folds (metric undefined) left out."""
    finite = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    n = len(finite)
    if n == 0:
        return {"mean": None, "sd": None, "low": None, "high": None, "n_folds": 0}
    mean = float(finite.mean())
    if n < 2:
        return {"mean": mean, "sd": None, "low": None, "high": None, "n_folds": n}
    sd = float(finite.std(ddof=1))
    half = float(stats.t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return {"mean": mean, "sd": sd, "low": mean - half, "high": mean + half, "n_folds": n}


@dataclasses.dataclass
class FoldOutcome:
    """One fit of the cross-validation: its held-out rows' predictions and metrics."""

    fold: int
    subset: tuple[str, ...]  # the model's modalities (its predictions saw all of them)
    table: pa.Table  # kept predictions of its validation fold (plus ``fold``)
    metrics: dict[str, dict[str, float]]  # target → metric → value
    record: dict[str, Any]  # rows, patients, best epoch, model folder…


def pooled_table(outcomes: list[FoldOutcome], settings: dict[str, Any]) -> pa.Table:
    """The folds' kept predictions as one table, with the first fold's metadata and the
    cross-validation's ``settings``."""
    metadata = json.loads(outcomes[0].table.schema.metadata[METADATA_KEY])
    metadata["settings"] = settings
    table = pa.concat_tables([o.table.replace_schema_metadata(None) for o in outcomes])
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata, default=str)})


def pooled_result(
    table: pa.Table, subset: tuple[str, ...], target_infos: dict, n_boot: int, seed: int
) -> EvaluationResult:
    """Every target's metrics on the pooled out-of-fold predictions, grouped bootstrap CIs."""
    result = EvaluationResult(settings={"population": "pooled out-of-fold predictions"})
    for target, info in target_infos.items():
        labelled = table.filter(pc.is_valid(table[f"label[{target}]"]))
        if labelled.num_rows == 0:
            continue
        y, score = _numpy(labelled[f"label[{target}]"]), _numpy(labelled[f"score[{target}]"])
        groups = _numpy(labelled["group_id"]).astype(str)
        ci = bootstrap_metrics(
            info["kind"],
            y,
            score,
            groups,
            n_boot=n_boot,
            seed=seed,
            classes=info.get("classes"),
            horizons=info.get("horizons"),
        )
        result.add(target, info["kind"], subset, ci, classes=info.get("classes"))
    return result


def fold_metrics(collector, target_infos: dict) -> dict[str, dict[str, float]]:
    """Point metrics of one fold's validation predictions, per target."""
    out = {}
    for target, info in target_infos.items():
        y, prediction, _ = collector.arrays(target)
        if len(y):
            values = compute_metrics(
                info["kind"],
                y,
                prediction,
                classes=info.get("classes"),
                horizons=info.get("horizons"),
            )
            out[target] = {name: float(value) for name, value in values.items()}
    return out


def fold_table(collector, available, target_infos, settings, fold: int) -> pa.Table:
    """A fold's kept predictions (:func:`predictions_table`) with its ``fold`` column."""
    subset = tuple(available)
    table = predictions_table({subset: collector}, available, target_infos, settings)
    return table.append_column("fold", pa.array(np.full(table.num_rows, fold + 1)))


def _numpy(column: pa.ChunkedArray) -> np.ndarray:
    array = column.combine_chunks()
    if pa.types.is_fixed_size_list(array.type):
        flat = np.asarray(array.flatten().to_numpy(zero_copy_only=False))
        return flat.reshape(-1, array.type.list_size)
    return np.asarray(array.to_numpy(zero_copy_only=False))


def best_epoch(run_dir: Path, monitor: str, best_score: float | None) -> int | None:
    """The 1-based epoch whose validation ``monitor`` was the best score (logs/metrics.csv)."""
    path = run_dir / "logs" / "metrics.csv"
    if best_score is None or not path.is_file():
        return None
    logged = pd.read_csv(path)
    if monitor not in logged:
        return None
    rows = logged[np.isclose(logged[monitor], best_score, rtol=1e-6, atol=1e-9)]
    return int(rows["epoch"].iloc[0]) + 1 if len(rows) else None


def remove_fold_weights(run_dir: Path) -> None:
    """A fold's model folder and checkpoints, once its out-of-fold predictions are kept."""
    for name in ("model", "checkpoints"):
        shutil.rmtree(run_dir / name, ignore_errors=True)


def summary(
    outcomes: list[FoldOutcome],
    pooled: EvaluationResult,
    settings: dict[str, Any],
    refit: dict[str, Any] | None,
) -> dict[str, Any]:
    """What ``OUT/cv.json`` holds: settings, every fold, the mean over folds with its
    t-interval per target and metric, the pooled out-of-fold result, the refit (or None)."""
    across: dict[str, dict[str, Any]] = {}
    for outcome in outcomes:
        for target, metrics in outcome.metrics.items():
            for name in metrics:
                across.setdefault(target, {}).setdefault(name, None)
    for target, names in across.items():
        for name in names:
            names[name] = t_interval([o.metrics.get(target, {}).get(name) for o in outcomes])
    folds = [
        {**o.record, "metrics": {t: _finite(m) for t, m in o.metrics.items()}} for o in outcomes
    ]
    return {
        "format": "polymodal-cv",
        "version": 1,
        "settings": settings,
        "folds": folds,
        "across_folds": across,
        "pooled": pooled.to_dict(),
        "refit": refit,
    }


def summary_markdown(result: dict[str, Any]) -> str:
    """``OUT/cv.md``: per target, each table metric over the folds, its mean with the
    t-interval, and the pooled out-of-fold value with its bootstrap interval."""
    settings, folds = result["settings"], result["folds"]
    lines = [
        f"# Cross-validation: {settings['cohort']}, {len(folds)} folds",
        "",
        f"Grouped by patient; stratified on {settings['stratified_on'] or 'nothing'}; the "
        f"test split ({settings['test_rows']} rows) was not used. Mean over folds with a 95 % "
        "t-interval; pooled: the out-of-fold predictions of all folds with a 95 % bootstrap "
        "interval over patients.",
    ]
    header = ["metric", "mean (95 % t-CI)", *[f"fold {f['fold']}" for f in folds], "pooled"]
    for target, entry in result["pooled"]["targets"].items():
        kind = targets.get(entry["kind"])
        pooled = entry["subsets"][0]["metrics"]
        lines += [
            "",
            f"## {target} ({entry['kind']})",
            "",
            _row(header),
            _row(["---"] * len(header)),
        ]
        for metric in [m for m in kind.table_metrics if m in result["across_folds"][target]]:
            mean = result["across_folds"][target][metric]
            per_fold = [_num(f["metrics"].get(target, {}).get(metric)) for f in folds]
            cells = [
                kind.headers.get(metric, metric),
                _interval(mean["mean"], mean["low"], mean["high"]),
            ]
            point = pooled.get(metric, {})
            pooled_cell = _interval(point.get("point"), point.get("low"), point.get("high"))
            lines.append(_row([*cells, *per_fold, pooled_cell]))
    lines += ["", *[f"- {note}" for note in result["settings"].get("notes", [])]]
    return "\n".join(lines).rstrip() + "\n"


def _finite(metrics: dict[str, float]) -> dict[str, float | None]:
    return {k: v if v is not None and math.isfinite(v) else None for k, v in metrics.items()}


def _num(value: float | None) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:.3f}"


def _interval(point: float | None, low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return _num(point)
    return f"{_num(point)} ({_num(low)}–{_num(high)})"


def _row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"
