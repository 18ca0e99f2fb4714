"""Which model a report may call better on each row: only where a paired test says so.

The models' kept predictions (``polymodal evaluate`` writes them beside each evaluation JSON)
go to :func:`~polymodal.evaluation.compare.compare_predictions`: a paired, patient-grouped
bootstrap of each difference, Holm-adjusted over every pair, subset and target of the report.
A model is marked on a row only when it is better than every other model there with an adjusted
p below α, and its own estimate is better than no skill. Without kept predictions nothing is
marked, and the report says why.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from polymodal.evaluation.compare import UNDECIDED, ComparisonError, compare_predictions
from polymodal.evaluation.compare import MetricComparison as Row
from polymodal.evaluation.kept_predictions import KeptPredictions
from polymodal.evaluation.report_plan import TargetPlan

ALPHA = 0.05


@dataclass(frozen=True)
class Verdict:
    """One row's verdict: the model marked better (or None) and the words for the table."""

    better: str | None
    text: str


@dataclass
class Verdicts:
    """Verdicts per (target, frozenset of modalities), and notes that apply to all of them."""

    rows: dict[tuple[str, frozenset[str]], Verdict] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    tested: bool = False

    def get(self, target: str, subset: tuple[str, ...]) -> Verdict | None:
        return self.rows.get((target, frozenset(subset)))


def _p(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _pair_text(row: Row) -> str:
    if row.verdict.endswith(" better"):
        a_won = row.verdict == f"{row.model_a} better"
        winner, loser = (row.model_a, row.model_b) if a_won else (row.model_b, row.model_a)
        difference = row.difference if a_won else -row.difference  # winner − loser
        return f"{winner} better than {loser} (Δ {difference:+.3f}, p Holm {_p(row.p_holm)})"
    if row.verdict == UNDECIDED:
        return f"{row.model_a} vs {row.model_b}: cannot tell apart (p Holm {_p(row.p_holm)})"
    return f"{row.model_a} vs {row.model_b}: {row.verdict}"


def _row_verdict(rows: list[Row], models: list[str], below_chance: set[str]) -> Verdict:
    """The model that beats every other one on this row, if any (not a below-chance one)."""
    winners = [
        m
        for m in models
        if all(r.verdict == f"{m} better" for r in rows if m in (r.model_a, r.model_b))
        and sum(m in (r.model_a, r.model_b) for r in rows) == len(models) - 1
    ]
    text = "; ".join(_pair_text(r) for r in rows)
    if not winners:
        return Verdict(None, text)
    if winners[0] in below_chance:
        return Verdict(None, f"{text}; not marked: its estimate is no better than no skill")
    return Verdict(winners[0], text)


def paired_verdicts(
    plans: list[TargetPlan],
    kept: Mapping[str, KeptPredictions | None],
    below_chance: Mapping[tuple[str, frozenset[str]], set[str]],
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> Verdicts:
    """Paired tests of each plan's metric between the models (two or more with predictions).

    Args:
        kept: model → its kept predictions, None where none were found.
        below_chance: (target, subset) → models whose estimate is at or worse than no skill.
    """
    models = list(plans[0].by_model) if plans else []
    out = Verdicts()
    missing = [m for m in models if kept.get(m) is None]
    if len(models) < 2:
        return out
    if missing:
        out.notes.append(
            "No model is marked better: a paired test needs every model's kept per-sample "
            f"predictions, and none were found for {', '.join(missing)} (polymodal evaluate "
            "writes RESULT.predictions.parquet beside RESULT.json unless --no-keep-predictions)."
        )
        return out
    try:
        comparison = compare_predictions(
            {m: kept[m] for m in models},
            n_boot=n_boot,
            seed=seed,
            alpha=ALPHA,
            metrics=sorted({plan.metric for plan in plans}),
        )
    except ComparisonError as err:
        out.notes.append(f"No model is marked better: the paired test could not run ({err}).")
        return out
    out.tested = True
    for plan in plans:
        rows = [r for r in comparison.rows if r.target == plan.name and r.metric == plan.metric]
        by_subset: dict[frozenset[str], list[Row]] = {}
        for r in rows:
            by_subset.setdefault(frozenset(r.subset.split(" + ")), []).append(r)
        for key, found in by_subset.items():
            chance = below_chance.get((plan.name, key), set())
            out.rows[(plan.name, key)] = _row_verdict(found, list(models), chance)
        why = comparison.not_compared.get(plan.name, {}).get(plan.metric)
        if why:
            out.notes.append(f"{plan.name}: {plan.metric} has no paired test ({why}).")
    settings = comparison.settings
    out.notes.append(
        f"Paired tests: the difference of each row's metric between two models on the same "
        f"rows, from {settings['n_boot']} paired bootstrap resamples of patients; p-values "
        f"Holm-adjusted over all {settings['n_tests']} tests of the report (every pair, subset "
        f"and target); a model is marked better (bold) only where it beats every other model "
        f"with adjusted p < {ALPHA} and is better than no skill."
    )
    out.notes += comparison.notes
    return out
