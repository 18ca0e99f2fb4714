"""Target kinds: one file per kind of label, each a registered :class:`TargetKind`.

Everything about a kind (spec, fitting, encoding, label checks, head and loss, distillation,
prediction columns, metrics with their headline, explanation score, an example) lives in its
file; the rest of polymodal asks ``targets.get(kind)``. Adding a kind is one file plus its import
below; the registry-wide tests (tests/targets/) then cover it.
"""

from polymodal.targets import (  # noqa: F401  (each import registers its kind)
    binary,
    cumulative_risk,
    digits,
    multiclass,
    multilabel,
    ordinal,
    regression,
    time_to_event,
)
from polymodal.targets.base import (
    TARGETS,
    Example,
    LabelFrame,
    TargetKind,
    TargetSpec,
    TargetState,
    create_head,
    get,
    headline,
    kinds,
    listing,
    lower_is_better,
    names_where,
    spec_union,
)
from polymodal.targets.head import Head, PerSampleHead, masked_weighted_mean
from polymodal.targets.scores import EvaluationError, MetricOptions, MetricValues

__all__ = [
    "TARGETS",
    "EvaluationError",
    "Example",
    "Head",
    "LabelFrame",
    "MetricOptions",
    "MetricValues",
    "PerSampleHead",
    "TargetKind",
    "TargetSpec",
    "TargetState",
    "create_head",
    "get",
    "headline",
    "kinds",
    "listing",
    "lower_is_better",
    "masked_weighted_mean",
    "names_where",
    "spec_union",
]
