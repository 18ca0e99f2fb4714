"""Which models, subsets and metric a robustness report shows: the checks and choices behind it.

:func:`plan_report` checks that evaluation results can be put side by side and plans each
target (:class:`TargetPlan`); :mod:`polymodal.evaluation.report` writes the HTML and
:mod:`polymodal.evaluation.report_figures` draws the figures from the plans.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from polymodal import targets
from polymodal.evaluation.metrics import EvaluationError
from polymodal.evaluation.tables import (
    MAIN_METRICS,
    EvaluationResult,
    SubsetResult,
    modality_subsets,
)


class ReportError(EvaluationError):
    """Evaluation results that cannot be put side by side (targets, modalities, metric)."""


def lower_is_better(metric: str) -> bool:
    """True for error-like metrics (``rmse``, ``brier``, ``ece[melanoma]``, …), as the target
    kinds declare them (the same answer training's checkpoint selection gets)."""
    return targets.lower_is_better(metric)


@dataclass
class TargetPlan:
    """What the report shows for one target.

    Attributes:
        modalities: the modalities the compared subsets span, in display order.
        subsets: the rows of the report, largest first (as :func:`modality_subsets` orders).
        by_model: model → {frozenset of modalities → that model's :class:`SubsetResult`}.
        left_out: model → labels of its subsets not in the report (``shared_subsets`` only).
    """

    name: str
    kind: str
    metric: str
    modalities: tuple[str, ...]
    subsets: list[tuple[str, ...]]
    by_model: dict[str, dict[frozenset[str], SubsetResult]]
    left_out: dict[str, list[str]] = field(default_factory=dict)

    def result(self, model: str, subset: tuple[str, ...]) -> SubsetResult | None:
        """The model's result on ``subset``, or None where it did not evaluate it."""
        return self.by_model[model].get(frozenset(subset))


def plan_report(
    results: Mapping[str, EvaluationResult],
    *,
    metric: str | None = None,
    shared_subsets: bool = False,
) -> list[TargetPlan]:
    """Check that ``results`` (model name → result) can be compared and plan each target.

    Raises:
        ReportError: no results; targets or kinds differ between models; modality sets differ
            and ``shared_subsets`` is False; no subset is shared; ``metric`` is in no subset.
    """
    if not results:
        raise ReportError("no evaluation results to report; give at least one RESULT.json")
    models = list(results)
    first = models[0]
    targets = results[first].targets
    for model in models[1:]:
        other = results[model].targets
        if set(other) != set(targets):
            raise ReportError(
                f"models must report the same targets: {first!r} has {sorted(targets)}, "
                f"{model!r} has {sorted(other)}; evaluate every model on the same cohort"
            )
        for name, target in targets.items():
            if other[name].kind != target.kind:
                raise ReportError(
                    f"target {name!r} is {target.kind} for {first!r} but {other[name].kind} "
                    f"for {model!r}; evaluate every model on the same cohort spec"
                )
    return [
        _plan_target(name, results, metric=metric, shared_subsets=shared_subsets)
        for name in targets
    ]


def _plan_target(
    name: str, results: Mapping[str, EvaluationResult], *, metric: str | None, shared_subsets: bool
) -> TargetPlan:
    by_model = {
        model: {frozenset(s.modalities): s for s in result.targets[name].subsets}
        for model, result in results.items()
    }
    spans = {model: _modalities(subsets.values()) for model, subsets in by_model.items()}
    for model, span in spans.items():
        if not span:
            raise ReportError(f"model {model!r} has no modality subset for target {name!r}")
    first = next(iter(spans))
    left_out: dict[str, list[str]] = {}
    if shared_subsets:
        keys = set.intersection(*(set(subsets) for subsets in by_model.values()))
        if not keys:
            raise ReportError(
                f"target {name!r}: the models share no evaluated modality subset; "
                + "; ".join(f"{m!r} uses {list(s)}" for m, s in spans.items())
            )
        modalities = tuple(m for m in _union_order(spans.values()) if any(m in k for k in keys))
        left_out = {
            model: [s.label for key, s in subsets.items() if key not in keys]
            for model, subsets in by_model.items()
        }
    else:
        for model, span in spans.items():
            if set(span) != set(spans[first]):
                raise ReportError(
                    f"target {name!r}: model {first!r} uses modalities {list(spans[first])} but "
                    f"{model!r} uses {list(span)}; to compare them on the modality subsets both "
                    "evaluated, pass --shared-subsets (shared_subsets=True)"
                )
        keys = set().union(*(set(subsets) for subsets in by_model.values()))
        modalities = spans[first]
    subsets = [s for s in modality_subsets(modalities) if frozenset(s) in keys]
    kind = results[first].targets[name].kind
    chosen = _choose_metric(name, kind, by_model, metric)
    return TargetPlan(name, kind, chosen, modalities, subsets, by_model, left_out)


def _modalities(subsets) -> tuple[str, ...]:
    """The modalities a model's subsets span, in the order they first appear."""
    return tuple(dict.fromkeys(m for s in subsets for m in s.modalities))


def _union_order(spans) -> list[str]:
    return list(dict.fromkeys(m for span in spans for m in span))


def _choose_metric(name: str, kind: str, by_model, metric: str | None) -> str:
    present = list(
        dict.fromkeys(
            m for subsets in by_model.values() for s in subsets.values() for m in s.metrics
        )
    )
    if metric is not None:
        if metric not in present:
            raise ReportError(
                f"metric {metric!r} is not in the results of target {name!r} ({kind}); "
                f"available: {', '.join(present)}"
            )
        return metric
    # The kind's headline (what training selected checkpoints by), then its table's metrics.
    for candidate in (targets.get(kind).headline, *MAIN_METRICS[kind], *present):
        if candidate in present:
            return candidate
    raise ReportError(f"target {name!r} has no metric to report; evaluate the models again")
