"""Paired comparison of models scored on the same rows, from the predictions evaluate keeps.

For every pair of models, every modality subset both evaluated, every shared target and every
metric with a resampled form (:mod:`polymodal.evaluation.resampled_metrics`):

* the difference A − B on the full data, with a percentile interval and a two-sided p-value from
  a *paired, patient-grouped* bootstrap (both models scored on the same resamples of patients;
  p from the bootstrap standard error, see
  :func:`~polymodal.evaluation.paired_tests.bootstrap_difference`);
* for AUROC (binary, and each class one-vs-rest) DeLong's test, and for accuracy at the decision
  threshold McNemar's test (exact and mid-p): both assume independent rows, noted when patients
  have several rows;
* Holm's adjustment of the bootstrap p-values over all pairs, subsets, targets and metrics.

The verdict names the better model only where the Holm-adjusted bootstrap p is below α (0.05);
everywhere else it says that the data cannot tell them apart. Overlapping intervals are not a
test and are never used as one.

Rows are matched by sample id; models evaluated on other rows, or on rows whose labels or
patients differ (another cohort), are refused with a message naming the ids.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from polymodal import targets
from polymodal.evaluation.kept_predictions import KeptPredictions, LabelledRows, subset_name
from polymodal.evaluation.metrics import EvaluationError, compute_metrics
from polymodal.evaluation.paired_tests import (
    bootstrap_difference,
    delong,
    group_codes,
    grouped_weights,
    holm,
    mcnemar,
)
from polymodal.evaluation.resampled_metrics import ResampledScores, agreeing, scores_for
from polymodal.targets import MetricOptions

UNDECIDED = "the data cannot tell them apart"
SHOWN_IDS = 5  # ids named in an error message


class ComparisonError(EvaluationError):
    """Models that cannot be compared on the same rows (other rows, labels or targets)."""


@dataclass
class MetricComparison:
    """One metric of one target and subset, model A against model B."""

    model_a: str
    model_b: str
    target: str
    subset: str
    metric: str
    value_a: float
    value_b: float
    difference: float  # value_a − value_b
    low: float
    high: float
    p: float  # paired grouped bootstrap, two-sided (from its standard error)
    p_holm: float = math.nan
    p_percentile: float = math.nan  # the counting bootstrap p (floor 2/(resamples + 1))
    standard_error: float = math.nan  # bootstrap SD of the difference
    n_valid: int = 0
    delong_p: float | None = None
    mcnemar_p: float | None = None
    mcnemar_mid_p: float | None = None
    verdict: str = UNDECIDED


@dataclass
class Comparison:
    """Every :class:`MetricComparison` with what they were computed from."""

    models: dict[str, dict[str, Any]]
    settings: dict[str, Any]
    rows: list[MetricComparison] = field(default_factory=list)
    not_compared: dict[str, dict[str, str]] = field(default_factory=dict)  # target → metric → why
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return _finite(
            {
                "models": self.models,
                "settings": self.settings,
                "notes": self.notes,
                "not_compared": self.not_compared,
                "rows": [asdict(row) for row in self.rows],
            }
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, allow_nan=False)

    def table_rows(self) -> list[list[str]]:
        """One list of cells per comparison, in :data:`HEADER` order."""
        return [
            [
                f"{r.model_a} − {r.model_b}",
                r.target,
                r.subset,
                r.metric,
                _num(r.value_a),
                _num(r.value_b),
                f"{_num(r.difference, signed=True)} ({_num(r.low, signed=True)}, "
                f"{_num(r.high, signed=True)})",
                _p(r.p),
                _p(r.p_holm),
                _p(r.delong_p),
                _p(r.mcnemar_p),
                r.verdict,
            ]
            for r in self.rows
        ]

    def to_markdown(self) -> str:
        level = round(100 * self.settings["level"])
        lines = ["# Paired comparison", ""]
        for name, info in self.models.items():
            lines.append(f"- **{name}**: {info['model']} (predictions: {info['path']})")
        lines += [
            "",
            f"Rows: {self.settings['n_samples']} samples of {self.settings['n_groups']} "
            f"patients, split {self.settings['split']!r}. Differences A − B with {level} % "
            f"intervals and p-values from a paired bootstrap of patients "
            f"({self.settings['n_boot']} resamples); Holm-adjusted over "
            f"{self.settings['n_tests']} tests; a model is called better only where the "
            f"adjusted p < {self.settings['alpha']}.",
            "",
        ]
        lines += [f"> {note}" for note in self.notes]
        lines += [
            "",
            "| " + " | ".join(HEADER) + " |",
            "|" + "---|" * 4 + "---:|" * 7 + "---|",
        ]
        lines += ["| " + " | ".join(cells) + " |" for cells in self.table_rows()]
        if self.not_compared:
            lines += ["", "## Not compared", ""]
            for target, reasons in self.not_compared.items():
                lines += [f"- {target} / {metric}: {why}" for metric, why in reasons.items()]
        return "\n".join(lines) + "\n"

    def print_rich(self, console: Console) -> None:
        """The table in the terminal; with one pair of models its names go in the title."""
        pairs = list(dict.fromkeys(f"{r.model_a} − {r.model_b}" for r in self.rows))
        skip = 1 if len(pairs) == 1 else 0
        title = f"Paired comparison: {pairs[0]}" if skip else "Paired comparison (A − B)"
        table = Table(title=title)
        for i, header in enumerate(HEADER[skip:], start=skip):
            table.add_column(header, justify="right" if 4 <= i <= 10 else "left")
        for cells, row in zip(self.table_rows(), self.rows, strict=True):
            style = "bold" if row.verdict.endswith(" better") else None
            table.add_row(*cells[skip:], style=style)
        console.print(table)
        for note in self.notes:
            console.print(note, highlight=False, markup=False, soft_wrap=True)


HEADER = [
    "A − B",
    "target",
    "subset",
    "metric",
    "A",
    "B",
    "A − B (CI)",
    "p",
    "p Holm",
    "DeLong p",
    "McNemar p",
    "verdict",
]


def _num(value: float | None, *, signed: bool = False) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def _p(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "—"
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _finite(value: Any) -> Any:
    """NaN and infinity → None, so the JSON is valid JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


# ---- checks that the models can be compared ---------------------------------------------------


def _ids(ids: Sequence[str]) -> str:
    shown = ", ".join(sorted(ids)[:SHOWN_IDS])
    return shown + (f" and {len(ids) - SHOWN_IDS} more" if len(ids) > SHOWN_IDS else "")


def shared_targets(kept: Mapping[str, KeptPredictions]) -> list[str]:
    """Targets every model predicts, in the first model's order; their kinds and classes must
    agree."""
    first_name, first = next(iter(kept.items()))
    shared = [t for t in first.targets if all(t in k.targets for k in kept.values())]
    if not shared:
        listing = "; ".join(f"{n}: {sorted(k.targets)}" for n, k in kept.items())
        raise ComparisonError(f"the models share no target ({listing}); compare models of one task")
    for name, other in kept.items():
        for target in shared:
            mine, theirs = first.targets[target], other.targets[target]
            for key in ("kind", "classes", "horizons"):
                if mine.get(key) != theirs.get(key):
                    raise ComparisonError(
                        f"target {target!r}: {key} {mine.get(key)!r} in {first_name} "
                        f"({first.path}) but {theirs.get(key)!r} in {name} ({other.path}); "
                        "compare models trained on the same labels"
                    )
    return shared


def shared_subsets(kept: Mapping[str, KeptPredictions]) -> list[tuple[str, ...]]:
    """Modality subsets every model was evaluated on, in the first model's order."""
    first = next(iter(kept.values()))
    shared = [s for s in first.subsets if all(s in k.subsets for k in kept.values())]
    if not shared:
        raise ComparisonError(
            "no modality subset was evaluated for every model; evaluate the models on "
            "modalities they share (polymodal evaluate scores every subset by default), or "
            "compare each model on all its own modalities with --own-inputs (own_inputs=True), "
            "e.g. a fused model against its single-modality twin"
        )
    return shared


def own_inputs(kept: Mapping[str, KeptPredictions]) -> dict[str, tuple[str, ...]]:
    """Each model's subset of every modality it takes (a fused model against its image-only
    twin: the question is whether adding the table helps, so each side gets all its inputs)."""
    chosen = {}
    for name, k in kept.items():
        full = [s for s in k.subsets if set(s) == set(k.modalities)]
        if not full:
            raise ComparisonError(
                f"{name} ({k.path}) was not evaluated with all its modalities "
                f"({subset_name(k.modalities)}); evaluate it without a subset restriction"
            )
        chosen[name] = full[0]
    return chosen


def paired_subsets(
    kept: Mapping[str, KeptPredictions], own: bool
) -> list[dict[str, tuple[str, ...]]]:
    """Which subset of each model's predictions is paired with which: one entry per shared
    subset (every model on the same modalities), or one entry of each model's own inputs."""
    if own:
        return [own_inputs(kept)]
    return [dict.fromkeys(kept, subset) for subset in shared_subsets(kept)]


def check_same_rows(
    kept: Mapping[str, KeptPredictions], subsets: Mapping[str, tuple[str, ...]]
) -> None:
    """Same split, same sample ids (each once), same patient per id in every model's file
    (``subsets``: the subset of each model's rows that is paired)."""
    (first_name, first), *others = kept.items()
    rows = first.subset_rows(subsets[first_name])
    ids = rows["sample_id"].to_pylist()
    repeated = sorted(i for i, count in Counter(ids).items() if count > 1)
    if repeated:
        raise ComparisonError(
            f"{first.path}: sample ids {_ids(repeated)} occur more than once; rows are matched "
            "by sample id, so give every row of the manifest its own id"
        )
    group_of = dict(zip(ids, rows["group_id"].to_pylist(), strict=True))
    for name, other in others:
        if other.settings.get("split") != first.settings.get("split"):
            raise ComparisonError(
                f"{name} was evaluated on the {other.settings.get('split')!r} split, "
                f"{first_name} on {first.settings.get('split')!r}; compare models on the same split"
            )
        theirs = other.subset_rows(subsets[name])
        their_ids = theirs["sample_id"].to_pylist()
        only_first, only_other = set(ids) - set(their_ids), set(their_ids) - set(ids)
        if only_first or only_other or len(their_ids) != len(ids):
            parts = []
            if only_first:
                parts.append(f"{len(only_first)} only in {first_name} ({_ids(only_first)})")
            if only_other:
                parts.append(f"{len(only_other)} only in {name} ({_ids(only_other)})")
            raise ComparisonError(
                f"{first.path} and {other.path} hold different samples: "
                + ("; ".join(parts) or "some ids repeat")
                + ". A paired comparison needs the same rows: evaluate both models on the same "
                "manifest and split"
            )
        moved = [
            i
            for i, g in zip(their_ids, theirs["group_id"].to_pylist(), strict=True)
            if group_of[i] != g
        ]
        if moved:
            raise ComparisonError(
                f"samples {_ids(moved)} belong to other patients in {name} than in {first_name}: "
                "the models were evaluated on different cohorts; compare models on one cohort"
            )


def _aligned(a: LabelledRows, b: LabelledRows, names: tuple[str, str], target: str):
    """B's labelled rows in A's order; ComparisonError when the labels differ."""
    position = {sample: i for i, sample in enumerate(b.ids)}
    missing = [i for i in a.ids if i not in position]
    if missing or len(a.ids) != len(b.ids):
        extra = sorted(set(b.ids) - set(a.ids))
        raise ComparisonError(
            f"target {target!r}: samples labelled for {names[0]} but not {names[1]}: "
            f"{_ids(missing) or 'none'}; for {names[1]} only: {_ids(extra) or 'none'}. The "
            "models were evaluated on different cohorts; compare models on one cohort"
        )
    order = np.array([position[i] for i in a.ids], dtype=np.int64)
    y_b = b.y_true[order]
    differs = np.flatnonzero(
        ~np.isclose(a.y_true.reshape(len(order), -1), y_b.reshape(len(order), -1)).all(axis=1)
    )
    if len(differs):
        raise ComparisonError(
            f"target {target!r}: samples {_ids(list(a.ids[differs]))} have other labels for "
            f"{names[1]} than for {names[0]}: the models were evaluated on different cohorts; "
            "compare models on one cohort"
        )
    return b.prediction[order]


# ---- the comparison ----------------------------------------------------------------------------


def _wanted(metric: str, metrics: Sequence[str] | None) -> bool:
    """``--metric auroc`` selects ``auroc`` and every ``auroc[class]``."""
    return metrics is None or metric in metrics or metric.partition("[")[0] in metrics


def _compare_target(
    kind: targets.TargetKind,
    rows: LabelledRows,
    prediction_b: np.ndarray,
    options: MetricOptions,
    *,
    metrics: Sequence[str] | None,
    n_boot: int,
    seed: int,
    level: float,
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Compared metrics of one target on one subset (without Holm), and those left out."""
    y, prediction_a = rows.y_true, rows.prediction
    metric_options = {
        "classes": options.classes,
        "specificity": options.specificity,
        "threshold": options.threshold,
        "horizons": options.horizons,
    }
    reference_a = compute_metrics(kind.name, y, prediction_a, **metric_options)
    reference_b = compute_metrics(kind.name, y, prediction_b, **metric_options)
    wanted = [m for m in reference_a if _wanted(m, metrics)]
    scores_a = scores_for(kind, y, prediction_a, options)
    scores_b = scores_for(kind, y, prediction_b, options)
    if scores_a is None or scores_b is None:
        why = "no resampled (vectorised) form of this kind's metrics yet"
        return [], dict.fromkeys(wanted, why)
    ones = np.ones((1, len(y)))
    comparable = [
        m
        for m in agreeing(scores_a.metrics(ones), reference_a, wanted)
        if m in agreeing(scores_b.metrics(ones), reference_b, [m])
    ]
    left_out = {
        m: "its resampled form does not reproduce this kind's value"
        for m in wanted
        if m not in comparable
    }
    codes, n_groups = group_codes(rows.groups)
    resampled: dict[str, list[np.ndarray]] = {m: [] for m in comparable}
    for w in grouped_weights(codes, n_groups, n_boot, seed):  # (R_block, n), shared by A and B
        on_a, on_b = scores_a.metrics(w), scores_b.metrics(w)
        for m in comparable:
            resampled[m].append(on_a[m] - on_b[m])
    out = []
    for m in comparable:
        difference = reference_a[m] - reference_b[m]
        summary = bootstrap_difference(difference, np.concatenate(resampled[m]), level)
        out.append(
            {
                "metric": m,
                "value_a": float(reference_a[m]),
                "value_b": float(reference_b[m]),
                "difference": summary.difference,
                "low": summary.low,
                "high": summary.high,
                "p": summary.p,
                "p_percentile": summary.p_percentile,
                "standard_error": summary.standard_error,
                "n_valid": summary.n_valid,
                **_exact_tests(m, scores_a, scores_b),
            }
        )
    return out, left_out


def _exact_tests(metric: str, a: ResampledScores, b: ResampledScores) -> dict[str, float]:
    """DeLong for an AUROC, McNemar for accuracy; empty for other metrics."""
    if metric in a.rankings:
        ranking = a.rankings[metric]
        try:
            return {"delong_p": delong(ranking.positive, ranking.score, b.rankings[metric].score).p}
        except ValueError:  # fewer than two positives or negatives
            return {}
    if metric == "accuracy" and a.correct is not None and b.correct is not None:
        test = mcnemar(a.correct, b.correct)
        return {"mcnemar_p": test.p_exact, "mcnemar_mid_p": test.p_mid}
    return {}


def compare_predictions(
    kept: Mapping[str, KeptPredictions],
    *,
    n_boot: int = 1000,
    seed: int = 0,
    level: float = 0.95,
    alpha: float = 0.05,
    threshold: float = 0.5,
    metrics: Sequence[str] | None = None,
    own_inputs: bool = False,
) -> Comparison:
    """Compare every pair of models (``{name: kept predictions}``, two or more) metric by metric.

    Args:
        n_boot: paired bootstrap resamples of patients. level: interval coverage.
        alpha: family-wise error rate of the Holm-adjusted verdicts.
        threshold: decision threshold of accuracy and F1 for yes/no outcomes.
        metrics: compare only these metrics (``auroc`` also selects ``auroc[class]``).
        own_inputs: pair each model's predictions with all its own modalities (a fused model
            against its single-modality twin) instead of the modality subsets they share.

    Raises:
        ComparisonError: fewer than two models, no shared target or subset, or rows that do not
            match (other ids, labels or patients), naming the ids.
    """
    if len(kept) < 2:
        raise ComparisonError(f"compare needs at least two models, got {len(kept)}")
    target_names = shared_targets(kept)
    pairings = paired_subsets(kept, own_inputs)
    check_same_rows(kept, pairings[0])
    first = next(iter(kept.values()))
    specificity = float(first.settings.get("specificity", 0.9))
    comparison = Comparison(
        models={
            name: {"path": str(k.path), "model": k.settings.get("model"), **_cohort(k)}
            for name, k in kept.items()
        },
        settings={
            "n_boot": n_boot,
            "seed": seed,
            "level": level,
            "alpha": alpha,
            "threshold": threshold,
            "specificity": specificity,
            "split": first.settings.get("split"),
            "test": "paired bootstrap of patients; Holm over every row",
            "subsets": "each model's own inputs" if own_inputs else "shared",
        },
    )
    for name_a, name_b in itertools.combinations(kept, 2):
        for pairing, target in itertools.product(pairings, target_names):
            subset, subset_b = pairing[name_a], pairing[name_b]
            info = first.targets[target]
            options = MetricOptions(
                classes=info.get("classes"),
                specificity=specificity,
                threshold=threshold,
                horizons=info.get("horizons"),
            )
            rows = kept[name_a].arrays(subset, target)
            if len(rows.ids) == 0:
                continue
            prediction_b = _aligned(
                rows, kept[name_b].arrays(subset_b, target), (name_a, name_b), target
            )
            found, left_out = _compare_target(
                targets.get(info["kind"]),
                rows,
                prediction_b,
                options,
                metrics=metrics,
                n_boot=n_boot,
                seed=seed,
                level=level,
            )
            comparison.not_compared.setdefault(target, {}).update(left_out)
            label = subset_name(subset)
            if subset_b != subset:
                label = f"{label} vs {subset_name(subset_b)}"
            comparison.rows += [MetricComparison(name_a, name_b, target, label, **r) for r in found]
    comparison.not_compared = {t: m for t, m in comparison.not_compared.items() if m}
    if not comparison.rows:
        raise ComparisonError(
            "no metric could be compared"
            + (f" (asked for {list(metrics)})" if metrics else "")
            + "; see the metric names in the evaluation JSON"
        )
    _decide(comparison, alpha)
    _describe_rows(comparison, first, next(iter(pairings[0].values())))
    return comparison


def _cohort(kept: KeptPredictions) -> dict[str, Any]:
    keys = ("cohort", "manifest", "split", "tta_views", "recalibration")
    return {key: kept.settings.get(key) for key in keys}


def _decide(comparison: Comparison, alpha: float) -> None:
    """Holm over every row's bootstrap p, then each row's verdict."""
    adjusted = holm([row.p for row in comparison.rows])
    for row, p_holm in zip(comparison.rows, adjusted, strict=True):
        row.p_holm = float(p_holm)
        if not math.isfinite(p_holm):
            row.verdict = "not testable: the metric is undefined in the resamples"
        elif p_holm < alpha and row.difference != 0:
            a_better = (row.difference > 0) != targets.lower_is_better(row.metric)
            row.verdict = f"{row.model_a if a_better else row.model_b} better"
        else:
            row.verdict = UNDECIDED
    comparison.settings["n_tests"] = int(np.isfinite(adjusted).sum())


def _describe_rows(comparison: Comparison, first: KeptPredictions, subset: tuple[str, ...]) -> None:
    """Sample and patient counts, and where DeLong's and McNemar's assumption fails."""
    rows = first.subset_rows(subset)
    n_samples = rows.num_rows
    n_groups = len(set(rows["group_id"].to_pylist()))
    comparison.settings.update(n_samples=n_samples, n_groups=n_groups)
    if n_groups < n_samples:
        comparison.notes.append(
            f"{n_samples} samples come from {n_groups} patients. DeLong's and McNemar's tests "
            "assume independent rows; with several rows per patient their p-values are too "
            "small. The verdicts rest on the bootstrap, which resamples patients."
        )
    else:
        comparison.notes.append(
            "Every sample is its own patient: DeLong's and McNemar's independence assumption "
            "holds; the verdicts rest on the patient bootstrap."
        )
