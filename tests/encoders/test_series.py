"""series_tokens: one token per step, observed masks, Fourier time features."""

from __future__ import annotations

import math

import pytest
import torch

from polymodal.encoders import create_encoder
from polymodal.encoders.series import fourier_time_features
from polymodal.errors import ModelError

INFO = {"kind": "series", "channels": ["hr", "sbp"], "max_steps": 16}


def encoder():
    torch.manual_seed(0)
    return create_encoder("series_tokens", input_info=INFO, dim=8, num_frequencies=4).eval()


def series(steps: int = 5) -> dict:
    generator = torch.Generator().manual_seed(0)
    return {
        "values": torch.randn(1, steps, 2, generator=generator),
        "observed": torch.ones(1, steps, 2, dtype=torch.bool),
        "times": torch.linspace(0, 1, steps)[None],
        "step_mask": torch.ones(1, steps, dtype=torch.bool),
    }


def test_one_token_per_step_and_mask_is_step_mask() -> None:
    inputs = series()
    inputs["step_mask"][0, 3:] = False
    tokens, mask = encoder()(inputs)
    assert tokens.shape == (1, 5, 8)
    assert torch.equal(mask, inputs["step_mask"])
    assert torch.all(tokens[0, 3:] == 0)


def test_fourier_features_follow_lsmt() -> None:
    times = torch.tensor([[0.5]])
    features = fourier_time_features(times, torch.tensor([1.0, 2.0]))
    expected = [
        math.sin(math.pi * 0.5),
        math.sin(math.pi),
        math.cos(math.pi * 0.5),
        math.cos(math.pi),
        0.5,
    ]
    torch.testing.assert_close(features[0, 0], torch.tensor(expected), atol=1e-6, rtol=0)


def test_step_time_changes_its_token() -> None:
    model = encoder()
    inputs = series()
    shifted = {**inputs, "times": inputs["times"].clone()}
    shifted["times"][0, 2] += 0.3
    tokens, _ = model(inputs)
    shifted_tokens, _ = model(shifted)
    changed = ~torch.isclose(tokens, shifted_tokens).all(dim=-1)[0]
    assert changed.tolist() == [False, False, True, False, False]


def test_unobserved_value_is_ignored_but_its_absence_is_seen() -> None:
    model = encoder()
    inputs = series()
    inputs["observed"][0, 1, 0] = False
    garbage = {**inputs, "values": inputs["values"].clone()}
    garbage["values"][0, 1, 0] = 1e6
    tokens, _ = model(inputs)
    torch.testing.assert_close(model(garbage)[0], tokens)
    observed_zero = {
        **inputs,
        "values": inputs["values"].clone(),
        "observed": torch.ones(1, 5, 2, dtype=torch.bool),
    }
    observed_zero["values"][0, 1, 0] = 0.0
    assert not torch.allclose(model(observed_zero)[0][0, 1], tokens[0, 1])


def test_wrong_channel_count_names_the_channels() -> None:
    inputs = series()
    inputs["values"] = torch.zeros(1, 5, 3)
    inputs["observed"] = torch.ones(1, 5, 3, dtype=torch.bool)
    with pytest.raises(ModelError, match=r"built for 2 channels \(hr, sbp\) but got 3"):
        encoder()(inputs)
