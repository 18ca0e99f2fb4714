"""Result tables: modality subsets, Markdown cells with intervals, JSON round trip, terminal."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from rich.console import Console

from polymodal.evaluation import (
    BootstrapResult,
    EvaluationError,
    EvaluationResult,
    MetricCI,
    bootstrap_metrics,
    modality_subsets,
)


def _ci(metrics: dict[str, MetricCI], reasons: dict[str, str] | None = None) -> BootstrapResult:
    result = BootstrapResult(n_boot=1000, level=0.95, n_samples=500, n_groups=320)
    result.update(metrics)
    result.reasons.update(reasons or {})
    return result


def _result() -> EvaluationResult:
    result = EvaluationResult(settings={"model": "synergy", "split": "test"})
    result.add(
        "melanoma",
        "binary",
        ("image", "tabular"),
        _ci({"auroc": MetricCI(0.873, 0.851, 0.894, 1000), "f1": MetricCI(0.61, 0.5, 0.7, 1000)}),
    )
    result.add(
        "melanoma",
        "binary",
        ("image",),
        _ci(
            {
                "auroc": MetricCI(0.8123, 0.79, 0.83, 812),
                "f1": MetricCI(math.nan, *[math.nan] * 2, 0),
            },
            {
                "auroc": "undefined in 188 of 1000 resamples: y_true has no positive samples",
                "f1": "no positive labels and no positive predictions",
            },
        ),
    )
    return result


@pytest.mark.parametrize("n_modalities", [1, 2, 3, 4])
def test_every_non_empty_subset_once_largest_first(n_modalities):
    names = ["image", "tabular", "text", "series"][:n_modalities]
    subsets = modality_subsets(names)
    assert len(subsets) == 2**n_modalities - 1
    assert len(set(subsets)) == len(subsets)
    assert [len(s) for s in subsets] == sorted((len(s) for s in subsets), reverse=True)
    assert subsets[0] == tuple(names)


def test_subset_order_is_deterministic():
    assert modality_subsets(["image", "tabular", "text"]) == [
        ("image", "tabular", "text"),
        ("image", "tabular"),
        ("image", "text"),
        ("tabular", "text"),
        ("image",),
        ("tabular",),
        ("text",),
    ]
    with pytest.raises(EvaluationError, match="modality names repeat: \\['image'\\]"):
        modality_subsets(["image", "text", "image"])


def test_markdown_has_one_row_per_subset_with_formatted_intervals():
    text = _result().to_markdown()
    assert "## melanoma (binary)" in text
    assert "| modalities | n (groups) | AUROC | F1 |" in text
    assert "| image + tabular | 500 (320) | 0.873 (0.851–0.894) | 0.610 (0.500–0.700) |" in text
    # fewer valid resamples than drawn: marked, and the note says why
    assert "| image | 500 (320) | 0.812 (0.790–0.830) † | n/a |" in text
    assert "- image, AUROC: undefined in 188 of 1000 resamples" in text
    assert "- image, F1: no positive labels and no positive predictions" in text
    assert "95% CI: percentile bootstrap over patient groups, 1000 resamples" in text


def test_json_round_trips_and_writes_undefined_as_null():
    result = _result()
    text = result.to_json()
    data = json.loads(text)
    assert data["format"] == "polymodal-evaluation" and data["version"] == 1
    image_only = data["targets"]["melanoma"]["subsets"][1]
    assert image_only["modalities"] == ["image"]
    assert image_only["metrics"]["f1"] == {"point": None, "low": None, "high": None, "n_valid": 0}
    again = EvaluationResult.from_json(text)
    assert again.to_json() == text
    assert again.settings == {"model": "synergy", "split": "test"}
    subset = again.targets["melanoma"].subsets[0]
    assert subset.modalities == ("image", "tabular")
    assert subset.metrics["auroc"] == MetricCI(0.873, 0.851, 0.894, 1000)
    assert math.isnan(again.targets["melanoma"].subsets[1].metrics["f1"].point)


def test_reading_something_else_fails_clearly():
    with pytest.raises(EvaluationError, match="not a polymodal evaluation result"):
        EvaluationResult.from_json('{"auroc": 0.9}')
    with pytest.raises(EvaluationError, match="not valid JSON"):
        EvaluationResult.from_json("auroc: 0.9")
    broken = json.loads(_result().to_json())
    del broken["targets"]["melanoma"]["subsets"][0]["n_groups"]
    with pytest.raises(EvaluationError, match="malformed \\(KeyError: 'n_groups'\\)"):
        EvaluationResult.from_dict(broken)


def test_add_refuses_a_repeated_subset_or_a_changed_kind():
    result = _result()
    with pytest.raises(EvaluationError, match="subset image \\+ tabular was already recorded"):
        result.add("melanoma", "binary", ["image", "tabular"], _ci({}))
    with pytest.raises(EvaluationError, match="recorded as binary, now given as multiclass"):
        result.add("melanoma", "multiclass", ["tabular"], _ci({}))


def test_rich_tables_show_the_same_cells_and_notes():
    console = Console(record=True, width=120)
    _result().print_rich(console)
    text = console.export_text()
    assert "melanoma (binary)" in text
    assert "image + tabular" in text
    assert "0.873" in text and "(0.851–0.894)" in text
    assert "n/a" in text
    assert "image, F1: no positive labels and no positive predictions" in text


def test_missing_modality_matrix_from_synthetic_predictions():
    rng = np.random.default_rng(0)
    groups = np.repeat(np.arange(60), 2)
    y = np.repeat(rng.integers(0, 3, 60), 2)
    result = EvaluationResult()
    for subset in modality_subsets(["image", "tabular"]):
        signal = 1.0 * len(subset)  # more modalities, sharper predictions
        logits = rng.normal(size=(120, 3)) + signal * np.eye(3)[y]
        prob = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        ci = bootstrap_metrics(
            "multiclass", y, prob, groups, n_boot=20, classes=["nv", "mel", "bcc"]
        )
        result.add("dx", "multiclass", subset, ci, classes=["nv", "mel", "bcc"])
    text = result.to_markdown(per_class=True)
    rows = [
        line
        for line in text.splitlines()
        if line.startswith("| image") or line.startswith("| tabular")
    ]
    assert [row.split(" | ")[0] for row in rows[:3]] == [
        "| image + tabular",
        "| image",
        "| tabular",
    ]
    assert "## dx (multiclass, per class)" in text
    assert "AUROC mel" in text
    full, image_only = result.targets["dx"].subsets[:2]
    assert full.n_samples == 120 and full.n_groups == 60
    assert full.metrics["auroc_macro"].point > image_only.metrics["auroc_macro"].point
