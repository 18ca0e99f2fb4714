"""train.label_smoothing: smoothed training losses of the cross-entropy kinds, plain validation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from polymodal.errors import PolymodalError
from polymodal.heads import create_head
from polymodal.training.config import TrainConfig
from polymodal.training.module import PolymodalModule


def module_with(targets: dict[str, dict], epsilon: float) -> PolymodalModule:
    heads = nn.ModuleDict({t: create_head(t, info, in_dim=4) for t, info in targets.items()})
    model = nn.Module()
    model.heads = heads
    return PolymodalModule(model, targets, TrainConfig(label_smoothing=epsilon), 1)


TARGETS = {
    "label": {"kind": "binary"},
    "dx": {"kind": "multiclass", "n_outputs": 3},
    "findings": {"kind": "multilabel", "n_outputs": 2},
    "age": {"kind": "regression"},
}


def test_training_losses_are_smoothed_and_validation_losses_are_not() -> None:
    torch.manual_seed(0)
    heads = module_with(TARGETS, 0.2).model.heads
    labelled = torch.ones(5, dtype=torch.bool)
    logits, target = torch.randn(5), torch.tensor([0.0, 1.0, 1.0, 0.0, 1.0])
    smoothed = F.binary_cross_entropy_with_logits(logits, target * 0.8 + 0.1)
    assert heads["label"].loss(logits, target, labelled) == pytest.approx(smoothed.item())
    heads.eval()
    plain = F.binary_cross_entropy_with_logits(logits, target)
    assert heads["label"].loss(logits, target, labelled) == pytest.approx(plain.item())
    heads.train()

    logits, classes = torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 0])
    expected = F.cross_entropy(logits, classes, label_smoothing=0.2)
    assert heads["dx"].loss(logits, classes, labelled) == pytest.approx(expected.item())

    logits, labels = torch.randn(5, 2), torch.tensor([[0.0, 1.0]] * 5)
    expected = F.binary_cross_entropy_with_logits(logits, labels * 0.8 + 0.1)
    assert heads["findings"].loss(logits, labels, labelled) == pytest.approx(expected.item())

    assert heads["age"].label_smoothing == 0.0  # other kinds are left alone


def test_smoothing_with_no_classification_target_is_refused_naming_the_key() -> None:
    with pytest.raises(PolymodalError, match=r"train.label_smoothing=0.1 .*age \(regression\)"):
        module_with({"age": {"kind": "regression"}}, 0.1)


def test_no_smoothing_by_default() -> None:
    assert TrainConfig().label_smoothing == 0.0
    assert module_with(TARGETS, 0.0).model.heads["dx"].label_smoothing == 0.0
