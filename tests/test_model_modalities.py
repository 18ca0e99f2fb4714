"""``ModelConfig.modalities``: a model built on part of a cohort's modalities."""

from __future__ import annotations

import pytest
import torch

from polymodal.config import ModelConfig
from polymodal.errors import ModelError
from polymodal.model import build_model

INPUTS = {
    "labs": {"kind": "tabular", "numeric": ["age", "crp"], "categorical": {}},
    "vitals": {"kind": "tabular", "numeric": ["hr"], "categorical": {}},
}
TARGETS = {"label": {"kind": "binary"}}


def _batch(labs: torch.Tensor, vitals: torch.Tensor) -> dict:
    n = labs.shape[0]
    return {
        "ids": [str(i) for i in range(n)],
        "inputs": {
            "labs": {
                "numeric": labs,
                "numeric_missing": torch.zeros_like(labs, dtype=torch.bool),
                "categorical": torch.zeros(n, 0, dtype=torch.long),
            },
            "vitals": {
                "numeric": vitals,
                "numeric_missing": torch.zeros_like(vitals, dtype=torch.bool),
                "categorical": torch.zeros(n, 0, dtype=torch.long),
            },
        },
        "available": {
            "labs": torch.ones(n, dtype=torch.bool),
            "vitals": torch.ones(n, dtype=torch.bool),
        },
    }


def test_a_model_on_some_modalities_never_reads_the_others() -> None:
    config = ModelConfig(
        core="synergy", dim=8, core_options={"num_latents": 2, "depth": 1}, modalities=["labs"]
    )
    model = build_model(config, INPUTS, TARGETS).eval()
    assert set(model.encoders) == {"labs"} and model.modalities == ("labs",)
    labs = torch.randn(3, 2)
    first = model(_batch(labs, torch.randn(3, 1)))["logits"]["label"]
    second = model(_batch(labs, torch.randn(3, 1) * 100))["logits"]["label"]
    assert torch.equal(first, second)


@pytest.mark.parametrize("modalities", [["ct"], []])
def test_unknown_or_no_modalities_are_a_model_error(modalities: list[str]) -> None:
    with pytest.raises(
        ModelError, match=r"'modalities' names .*modalities of this cohort \(labs, vitals\)"
    ):
        build_model(ModelConfig(modalities=modalities), INPUTS, TARGETS)
