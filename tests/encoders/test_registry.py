"""Every registered encoder, tested the way timm tests every registered model."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from safetensors.torch import load_file, save_file

from polymodal.encoders import (
    INPUT_INFO_KEYS,
    KINDS,
    create_encoder,
    default_encoder,
    encoder_kinds,
    list_encoders,
)
from polymodal.errors import ModelError

DIM = 16
BATCH = 3

# Tiny input descriptions, one per kind, as the fitted preprocessing state writes them.
INPUT_INFO: dict[str, dict[str, Any]] = {
    "image": {"kind": "image", "channels": 1, "size": [32, 32], "views": 2},
    "volume": {"kind": "volume", "size": [16, 16, 16]},
    "tabular": {"kind": "tabular", "numeric": ["age", "crp"], "categorical": {"sex": 4, "site": 6}},
    "text": {"kind": "text", "vocab_size": 50, "pad_id": 0, "max_tokens": 24, "tokenizer": None},
    "series": {"kind": "series", "channels": ["hr", "sbp", "spo2"], "max_steps": 24},
}

# Small options so each encoder runs in well under a second on one CPU thread.
TINY_OPTIONS: dict[str, dict[str, Any]] = {
    "image_timm": {"backbone": "test_resnet"},
    "volume_patch": {"patch_size": 4, "depth": 1, "heads": 2},
    "volume_monai": {
        "network_options": {
            "init_features": 8,
            "growth_rate": 4,
            "block_config": (1, 1),
            "bn_size": 2,
        }
    },
    "volume_multiscale": {
        "scales": [{"size": [16, 16, 16], "patch": [4, 4, 4]}],
        "depth": 1,
        "heads": 2,
    },
    "text_transformer": {"depth": 1, "heads": 2},
    "series_tokens": {"num_frequencies": 3},
}


def make_inputs(kind: str, *, length: int = 10, seed: int = 0) -> dict[str, torch.Tensor]:
    """A batch of BATCH samples; the last sample is unavailable (all stand-ins / masked)."""
    generator = torch.Generator().manual_seed(seed)
    if kind == "image":
        view_mask = torch.tensor([[True, True], [True, False], [False, False]])
        pixels = (
            torch.randn(BATCH, 2, 1, 32, 32, generator=generator) * view_mask[..., None, None, None]
        )
        return {"pixels": pixels, "view_mask": view_mask}
    if kind == "volume":
        voxels = torch.rand(BATCH, 1, 16, 16, 16, generator=generator)
        voxels[-1] = 0
        spacing = torch.tensor([[2.0, 0.8, 0.8], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
        return {"voxels": voxels, "spacing": spacing}
    if kind == "tabular":
        numeric_missing = torch.tensor([[False, False], [True, False], [True, True]])
        numeric = torch.randn(BATCH, 2, generator=generator).masked_fill(numeric_missing, 0.0)
        categorical = torch.tensor([[2, 5], [1, 0], [0, 0]])
        return {"numeric": numeric, "numeric_missing": numeric_missing, "categorical": categorical}
    lengths = torch.tensor([length, length // 2, 0])
    mask = torch.arange(length)[None, :] < lengths[:, None]  # (B, L)
    if kind == "text":
        input_ids = torch.randint(2, 50, (BATCH, length), generator=generator).masked_fill(~mask, 0)
        return {"input_ids": input_ids, "attention_mask": mask}
    observed = (torch.rand(BATCH, length, 3, generator=generator) > 0.3) & mask[..., None]
    values = torch.randn(BATCH, length, 3, generator=generator).masked_fill(~observed, 0.0)
    times = torch.linspace(0, 1, length).expand(BATCH, length).masked_fill(~mask, 0.0)
    return {"values": values, "observed": observed, "times": times, "step_mask": mask}


def build(name: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    kind = encoder_kinds(name)[0]
    return create_encoder(name, input_info=INPUT_INFO[kind], dim=DIM, **TINY_OPTIONS.get(name, {}))


def kind_of(name: str) -> str:
    return encoder_kinds(name)[0]


def test_every_kind_has_a_registered_default() -> None:
    for kind in KINDS:
        assert default_encoder(kind) in list_encoders(kind)
        assert set(INPUT_INFO[kind]) == {"kind", *INPUT_INFO_KEYS[kind]}


def test_list_encoders_filters_by_kind() -> None:
    assert list_encoders("volume") == ["volume_monai", "volume_multiscale", "volume_patch"]
    assert list_encoders("tabular") == ["tabular_tokens"]
    assert list_encoders() == sorted(list_encoders())


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(
        ModelError, match=r"unknown encoder 'resnet'; known encoders: .*tabular_tokens"
    ):
        create_encoder("resnet", input_info=INPUT_INFO["image"], dim=DIM)


def test_encoder_for_the_wrong_kind_is_refused() -> None:
    with pytest.raises(
        ModelError,
        match=r"'tabular_tokens' encodes tabular inputs, not text; encoders for text: text_transformer",
    ):
        create_encoder("tabular_tokens", input_info=INPUT_INFO["text"], dim=DIM)


def test_unknown_option_lists_the_accepted_ones() -> None:
    with pytest.raises(ModelError, match=r"no option 'depht'; it accepts: .*depth"):
        create_encoder("volume_patch", input_info=INPUT_INFO["volume"], dim=DIM, depht=2)


def test_input_info_without_a_required_key_is_refused() -> None:
    info = {"kind": "image", "channels": 1, "size": [32, 32]}
    with pytest.raises(ModelError, match=r"lacks \['views'\]"):
        create_encoder("image_timm", input_info=info, dim=DIM)
    with pytest.raises(ModelError, match="dim must be a positive integer"):
        create_encoder("tabular_tokens", input_info=INPUT_INFO["tabular"], dim=0)
    with pytest.raises(ModelError, match="unknown modality kind 'audio'"):
        default_encoder("audio")


@pytest.mark.parametrize("name", list_encoders())
def test_forward_shapes_masks_and_finite_outputs(name: str) -> None:
    encoder = build(name)
    tokens, mask = encoder(make_inputs(kind_of(name)))
    assert encoder.dim == DIM
    assert tokens.dtype == torch.float32 and mask.dtype == torch.bool
    assert tokens.ndim == 3 and tokens.shape[0] == BATCH and tokens.shape[2] == DIM
    assert mask.shape == tokens.shape[:2]
    # The unavailable last sample must not poison anything with NaN or inf.
    assert torch.isfinite(tokens).all()
    if kind_of(name) in ("image", "text", "series"):
        assert not mask[-1].any()
    else:
        assert mask.all()
    # Eval mode takes other kernels (e.g. PyTorch's fused attention fast path): check it too.
    with torch.no_grad():
        eval_tokens, eval_mask = encoder.eval()(make_inputs(kind_of(name)))
    assert torch.isfinite(eval_tokens).all() and torch.equal(eval_mask, mask)


@pytest.mark.parametrize("name", list_encoders())
def test_backward_reaches_every_trainable_parameter(name: str) -> None:
    encoder = build(name)
    tokens, mask = encoder(make_inputs(kind_of(name)))
    (tokens[mask] ** 2).mean().backward()
    for parameter_name, parameter in encoder.named_parameters():
        if parameter.requires_grad:
            assert parameter.grad is not None, f"{parameter_name} got no gradient"
            assert torch.isfinite(parameter.grad).all(), (
                f"{parameter_name} has a non-finite gradient"
            )
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


@pytest.mark.parametrize("name", list_encoders("text") + list_encoders("series"))
def test_padding_to_a_longer_length_does_not_change_outputs(name: str) -> None:
    encoder = build(name).eval()
    short = make_inputs(kind_of(name), length=8)
    padded = {}
    for field, value in short.items():
        # Pad along the step/token axis (dim 1) with padding and garbage where allowed.
        extra_shape = (BATCH, 12, *value.shape[2:])
        if value.dtype == torch.bool:
            extra = torch.zeros(extra_shape, dtype=torch.bool)
        elif field == "input_ids":
            extra = torch.full(extra_shape, 7, dtype=value.dtype)
        else:
            extra = torch.full(extra_shape, 123.0)
        padded[field] = torch.cat([value, extra], dim=1)
    with torch.no_grad():
        short_tokens, short_mask = encoder(short)
        long_tokens, long_mask = encoder(padded)
    assert long_tokens.shape[1] == 20
    assert torch.equal(long_mask[:, :8], short_mask) and not long_mask[:, 8:].any()
    torch.testing.assert_close(
        long_tokens[:, :8][short_mask], short_tokens[short_mask], atol=1e-5, rtol=1e-5
    )


@pytest.mark.parametrize("name", list_encoders())
def test_safetensors_round_trip_gives_identical_outputs(name: str, tmp_path) -> None:
    original = build(name, seed=0).eval()
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in original.state_dict().items()}, str(path))
    restored = build(name, seed=1).eval()
    inputs = make_inputs(kind_of(name))
    with torch.no_grad():
        assert not torch.equal(restored(inputs)[0], original(inputs)[0])  # seeds differ
    restored.load_state_dict(load_file(str(path)), strict=True)
    with torch.no_grad():
        expected, expected_mask = original(inputs)
        actual, actual_mask = restored(inputs)
    assert torch.equal(actual, expected) and torch.equal(actual_mask, expected_mask)
