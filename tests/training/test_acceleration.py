"""train.channels_last and train.compile: faster layouts and compiled forwards that leave the
trained model, its weights' names and its predictions as they were."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from polymodal.data.spec import load_spec
from polymodal.training.acceleration import accelerate
from polymodal.training.fit import fit

from .conftest import tiny_config


def _conv_weights(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p for p in model.parameters() if p.ndim == 4]


def test_channels_last_trains_the_same_model_up_to_rounding(
    cohort_spec_path: Path, tmp_path: Path
) -> None:
    spec = load_spec(cohort_spec_path)
    weights = {}
    for layout in ("false", "true"):
        run = tiny_config("train.max_epochs=1", f"train.channels_last={layout}")
        result = fit(spec, tmp_path / layout, run, progress=False)
        weights[layout] = load_file(str(result.model_dir / "model.safetensors"))
    assert weights["true"].keys() == weights["false"].keys()
    for name, tensor in weights["false"].items():
        torch.testing.assert_close(weights["true"][name], tensor, rtol=1e-3, atol=1e-4)


def test_channels_last_lays_out_every_convolution_weight() -> None:
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Linear(4, 2))
    accelerate(model, tiny_config("train.channels_last=true").train)
    (weight,) = _conv_weights(model)
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert not weight.is_contiguous()


def test_compile_compiles_in_place_and_keeps_the_weight_names() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))
    names = list(model.state_dict())
    same = accelerate(model, tiny_config("train.compile=true").train)
    assert same is model and list(model.state_dict()) == names
    assert model._compiled_call_impl is not None  # what nn.Module.compile() sets
    untouched = torch.nn.Linear(3, 4)
    accelerate(untouched, tiny_config().train)
    assert untouched._compiled_call_impl is None
