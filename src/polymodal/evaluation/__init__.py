"""Evaluation: metrics per target kind, grouped bootstrap intervals, result tables.

Typical use, once per target and modality subset::

    result = EvaluationResult()
    for subset in modality_subsets(["image", "tabular"]):
        prob = ...  # the model's predictions with only `subset` available
        ci = bootstrap_metrics("binary", y, prob, patient_ids, n_boot=1000)
        result.add("melanoma", "binary", subset, ci)
    print(result.to_markdown())

Kept predictions (``polymodal evaluate --predictions``) are read back with
:func:`read_predictions`, and two models' kept predictions on the same samples are compared with
:func:`compare_predictions` (paired tests, as ``polymodal compare``).
"""

from polymodal.evaluation.bootstrap import (
    BootstrapResult,
    MetricCI,
    bootstrap_ci,
    bootstrap_metrics,
)
from polymodal.evaluation.compare import compare_predictions
from polymodal.evaluation.kept_predictions import KeptPredictions, read_predictions
from polymodal.evaluation.metrics import (
    KINDS,
    EvaluationError,
    MetricValues,
    compute_metrics,
    expected_calibration_error,
    harrell_c_index,
)
from polymodal.evaluation.tables import (
    MAIN_METRICS,
    EvaluationResult,
    SubsetResult,
    TargetResult,
    modality_subsets,
)

__all__ = [
    "KINDS",
    "MAIN_METRICS",
    "BootstrapResult",
    "EvaluationError",
    "EvaluationResult",
    "KeptPredictions",
    "MetricCI",
    "MetricValues",
    "SubsetResult",
    "TargetResult",
    "bootstrap_ci",
    "bootstrap_metrics",
    "compare_predictions",
    "compute_metrics",
    "expected_calibration_error",
    "harrell_c_index",
    "modality_subsets",
    "read_predictions",
]
