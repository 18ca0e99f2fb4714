"""PredictionCollector: labels and predictions meet in the same unit."""

from __future__ import annotations

import numpy as np
import torch

from polymodal.heads import create_head
from polymodal.targets.predictions import PredictionCollector


def test_standardised_regression_labels_are_scored_in_the_original_unit() -> None:
    info = {"kind": "regression", "mean": 70.0, "std": 10.0}
    head = create_head("fev1", info, in_dim=1)
    logits = torch.tensor([0.5, -1.0, 0.0])  # standardised: 75, 60, 70
    collector = PredictionCollector({"fev1": info})
    collector.add(
        {
            "ids": ["a", "b", "c"],
            "groups": ["a", "b", "c"],
            # The data layer encodes a standardised label: (value - mean) / std.
            "targets": {"fev1": torch.tensor([0.5, -1.0, 1.0])},
            "target_mask": {"fev1": torch.tensor([True, True, False])},
        },
        {"fev1": head.predict(logits)},
    )
    y_true, pred, _ = collector.arrays("fev1")
    np.testing.assert_allclose(y_true, [75.0, 60.0])
    np.testing.assert_allclose(pred, [75.0, 60.0])


def test_labels_hold_every_sample_in_order_with_the_mask_of_the_labelled() -> None:
    info = {"kind": "regression", "mean": 70.0, "std": 10.0}
    head = create_head("fev1", info, in_dim=1)
    collector = PredictionCollector({"fev1": info})
    assert collector.labels("fev1")[0].shape == (0,)
    for ids, standardised, labelled in (
        (["a", "b"], [0.5, 0.0], [True, False]),
        (["c"], [-1.0], [True]),
    ):
        collector.add(
            {
                "ids": ids,
                "groups": ids,
                "targets": {"fev1": torch.tensor(standardised)},
                "target_mask": {"fev1": torch.tensor(labelled)},
            },
            {"fev1": head.predict(torch.zeros(len(ids)))},
        )
    labels, mask = collector.labels("fev1")
    # Scored in the original unit, the unlabelled sample included (its placeholder, masked).
    np.testing.assert_allclose(labels, [75.0, 70.0, 60.0])
    assert mask.dtype == bool and mask.tolist() == [True, False, True]
    y_true, _, groups = collector.arrays("fev1")
    np.testing.assert_allclose(y_true, labels[mask])
    assert groups.tolist() == ["a", "c"]
