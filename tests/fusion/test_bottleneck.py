"""The ``bottleneck`` core: pooling over present modalities only, one-modality samples, cost."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, sdpa_flop_count

from polymodal.errors import ModelError
from polymodal.fusion import create_core
from polymodal.heads import create_head
from polymodal.model import MultimodalModel

DIM = 16
MODALITIES = {"xray": "image", "labs": "tabular", "note": "text"}
LENGTHS = {"xray": 6, "labs": 4, "note": 5}


def make_core(seed: int = 0, **options) -> nn.Module:
    torch.manual_seed(seed)
    options = {"depth": 2, "num_bottlenecks": 3, **options}
    return create_core("bottleneck", modalities=MODALITIES, dim=DIM, **options).eval()


def make_inputs(n: int = 4, seed: int = 1) -> tuple[dict, dict, dict]:
    g = torch.Generator().manual_seed(seed)
    tokens = {m: torch.randn(n, k, DIM, generator=g) for m, k in LENGTHS.items()}
    masks = {m: torch.ones(n, k, dtype=torch.bool) for m, k in LENGTHS.items()}
    available = {m: torch.ones(n, dtype=torch.bool) for m in MODALITIES}
    return tokens, masks, available


def drop(available: dict, masks: dict, modality: str, rows: list[int]) -> tuple[dict, dict]:
    """Mark ``modality`` missing for ``rows`` (availability and token mask, as the model does)."""
    available = {m: a.clone() for m, a in available.items()}
    available[modality][rows] = False
    masks = {m: k & available[m][:, None] for m, k in masks.items()}
    return available, masks


@pytest.mark.parametrize("pooling", ["mean", "attention"])
def test_garbage_in_a_missing_stream_changes_nothing(pooling: str) -> None:
    core = make_core(pooling=pooling)
    tokens, masks, available = make_inputs()
    available, masks = drop(available, masks, "labs", [0, 2])
    reference = core(tokens, masks, available)
    pooled = core.pooled_bottleneck(tokens, masks, available)
    garbage = dict(tokens)
    garbage["labs"] = tokens["labs"].clone()
    garbage["labs"][0] = 1e4
    garbage["labs"][2] = float("nan")
    assert torch.equal(core(garbage, masks, available), reference)
    assert torch.equal(core.pooled_bottleneck(garbage, masks, available), pooled)
    # The samples that do have labs see it: their output depends on it.
    changed = dict(tokens, labs=tokens["labs"] + torch.randn_like(tokens["labs"]))
    out = core(changed, masks, available)
    assert not torch.allclose(out[1], reference[1]) and torch.equal(out[0], reference[0])


def test_pool_is_the_mean_over_present_modalities_only() -> None:
    # With one fusion layer each modality's bottleneck copy depends on that modality alone, so
    # the pooled Z of a sample with xray and labs is exactly the mean of the single-modality Zs.
    core = make_core(depth=1)
    tokens, masks, available = make_inputs(n=1)
    both_available, both_masks = drop(available, masks, "note", [0])
    both = core.pooled_bottleneck(tokens, both_masks, both_available)
    singles = []
    for keep in ("xray", "labs"):
        only = {m: torch.tensor([m == keep]) for m in MODALITIES}
        singles.append(
            core.pooled_bottleneck(
                tokens, {m: k & only[m][:, None] for m, k in masks.items()}, only
            )
        )
    assert torch.allclose(both, (singles[0] + singles[1]) / 2, atol=1e-6)
    assert not torch.allclose(singles[0], singles[1])


class TokenEncoder(nn.Module):
    """A Linear over ``features (B, N, 3)``; mask ``valid (B, N)``."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, DIM)

    def forward(self, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        return self.proj(inputs["features"]), inputs["valid"]


@pytest.mark.parametrize("readout", ["bottleneck", "bottleneck_tokens"])
def test_a_sample_with_only_one_modality_gets_a_prediction(readout: str) -> None:
    torch.manual_seed(0)
    core = create_core("bottleneck", modalities=MODALITIES, dim=DIM, depth=2, readout=readout)
    encoders = nn.ModuleDict({m: TokenEncoder() for m in MODALITIES})
    heads = nn.ModuleDict({"label": create_head("label", {"kind": "binary"}, in_dim=core.out_dim)})
    model = MultimodalModel(encoders, core, heads).eval()
    n = len(MODALITIES)
    inputs = {
        m: {"features": torch.randn(n, k, 3), "valid": torch.ones(n, k, dtype=torch.bool)}
        for m, k in LENGTHS.items()
    }
    # Sample i has only modality i; the others hold NaN, which must never be read.
    available = {m: torch.arange(n) == i for i, m in enumerate(MODALITIES)}
    for m in MODALITIES:
        inputs[m]["features"][~available[m]] = float("nan")
    probability = model.predict({"inputs": inputs, "available": available})["label"]["probability"]
    assert probability.shape == (n,)
    assert torch.isfinite(probability).all()
    assert ((probability > 0) & (probability < 1)).all()
    # And each one-modality sample is predicted from its modality: changing it changes the output.
    inputs["xray"]["features"][0] += 1.0
    moved = model.predict({"inputs": inputs, "available": available})["label"]["probability"]
    assert moved[0] != probability[0] and torch.equal(moved[1:], probability[1:])


def attention_aware_flops(core: nn.Module, tokens: dict, masks: dict, available: dict) -> int:
    """Forward FLOPs, counting CPU fused attention (which FlopCounterMode does not cover)."""

    def cpu_sdpa_flops(query_shape, key_shape, value_shape, *args, **kwargs) -> int:
        return sdpa_flop_count(query_shape, key_shape, value_shape)

    mapping = {torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: cpu_sdpa_flops}
    with torch.no_grad(), FlopCounterMode(display=False, custom_mapping=mapping) as counter:
        core(tokens, masks, available)
    return counter.get_total_flops()


def quadratic_coefficient(name: str, n_streams: int, options: dict) -> int:
    """Second difference of FLOPs in the tokens per stream N: 2·a·Δ² for FLOPs = a·N² + b·N + c."""
    modalities = {f"m{i}": "tabular" for i in range(n_streams)}
    torch.manual_seed(0)
    core = create_core(name, modalities=modalities, dim=DIM, **options).eval()
    flops = []
    for n_tokens in (32, 64, 96):
        tokens = {m: torch.randn(1, n_tokens, DIM) for m in modalities}
        masks = {m: torch.ones(1, n_tokens, dtype=torch.bool) for m in modalities}
        flops.append(
            attention_aware_flops(
                core, tokens, masks, {m: torch.ones(1, dtype=bool) for m in modalities}
            )
        )
    assert flops[0] > 0
    return flops[2] - 2 * flops[1] + flops[0]


@pytest.mark.parametrize("n_streams", [2, 3])
def test_cost_grows_with_the_sum_of_squares(n_streams: int) -> None:
    # Same depth and attention shape in both cores: full joint attention over M streams of N
    # tokens costs (M·N)² per layer, the bottleneck M·N², so the quadratic parts differ by M.
    shape = {"depth": 2, "heads": 2, "dim_head": 8}
    bottleneck = quadratic_coefficient("bottleneck", n_streams, {**shape, "num_bottlenecks": 4})
    joint = quadratic_coefficient("attention", n_streams, shape)
    assert bottleneck > 0
    assert joint == n_streams * bottleneck


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"pooling": "max"}, "pooling='max' is not one of mean, attention"),
        ({"readout": "cls"}, "readout='cls' is not one of bottleneck, bottleneck_tokens"),
        ({"num_bottlenecks": 0}, "num_bottlenecks must be at least 1"),
    ],
)
def test_bad_options_are_model_errors(options: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        create_core("bottleneck", modalities=MODALITIES, dim=DIM, **options)
