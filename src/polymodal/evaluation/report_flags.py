"""Flags on a report's numbers that do not mean what they seem to: an interval of zero width, a
value at or worse than a model without skill, an interval that reaches the no-skill level.

The no-skill level of each metric is the target kind's (:meth:`TargetKind.no_skill`: AUROC 0.5,
AUPRC the prevalence, Brier p(1 − p) of always predicting the prevalence, …), computed on the
evaluated labels by ``polymodal evaluate`` (``settings["labels"]``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from polymodal.evaluation.bootstrap import MetricCI
from polymodal.evaluation.report_plan import lower_is_better


@dataclass(frozen=True)
class Flag:
    """A marker shown after a number and the legend line that explains it."""

    key: str
    symbol: str
    legend: str


ZERO_WIDTH = Flag(
    "zero_width",
    "∅",
    "the interval has zero width: the value is the same in every resample (an F1 of 0.000 when "
    "no sample is predicted positive, a constant prediction, or a perfect score that may mean "
    "leakage); do not read it as a precise estimate",
)
NO_SKILL = Flag(
    "no_skill",
    "⚠",
    "at or worse than the no-skill level (what always predicting the prevalence scores): the "
    "model adds nothing here; never marked better",
)
REACHES_NO_SKILL = Flag(
    "reaches_no_skill",
    "≈",
    "the interval reaches the no-skill level: the data cannot tell this result from no skill",
)
FLAGS = (ZERO_WIDTH, NO_SKILL, REACHES_NO_SKILL)


def flags(ci: MetricCI | None, metric: str, no_skill: Mapping[str, float]) -> list[Flag]:
    """The flags of one metric's estimate; ``no_skill`` maps metrics to their no-skill level."""
    if ci is None or math.isnan(ci.point):
        return []
    out = []
    has_interval = not (math.isnan(ci.low) or math.isnan(ci.high))
    if has_interval and ci.n_valid >= 2 and ci.low == ci.high:
        out.append(ZERO_WIDTH)
    level = no_skill.get(metric)
    if level is None or not math.isfinite(level):
        return out
    lower = lower_is_better(metric)
    if (ci.point >= level) if lower else (ci.point <= level):
        out.append(NO_SKILL)
    elif has_interval and ((ci.high >= level) if lower else (ci.low <= level)):
        out.append(REACHES_NO_SKILL)
    return out


def symbols(found: list[Flag]) -> str:
    """``" ⚠∅"``: the flags' symbols after a number (empty without flags)."""
    return (" " + "".join(f.symbol for f in found)) if found else ""
