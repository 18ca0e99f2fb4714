"""Every registered core's declared capabilities match what it does (over ``list_cores()``).

A core says what it can do on its class (:class:`~polymodal.fusion.base.FusionCore`); the model,
the explanations and the training plugins believe it. These tests check each claim, and each
absence of one, on the core's own example.
"""

from __future__ import annotations

import inspect

import pytest
import torch
from torch import nn

from polymodal.errors import ModelError
from polymodal.explain.rollout import modality_token_shares
from polymodal.fusion import CORES, FusionCore, list_cores
from polymodal.heads import create_head
from polymodal.layers.rollout import recording_attention
from polymodal.model import MultimodalModel
from polymodal.registry import keyword_options

from .test_cores import make_batch, make_core

NAMES = list_cores()
TARGETS = {"label": {"kind": "binary", "n_outputs": 1, "prompts": ["Is it positive?"]}}


def example(name: str) -> FusionCore:
    return make_core(name, CORES.get(name).example_modalities())


@pytest.mark.parametrize("name", NAMES)
def test_the_registered_class_is_a_fusion_core_that_knows_its_name(name: str) -> None:
    cls = CORES.get(name)
    assert issubclass(cls, FusionCore) and cls.core_name == name
    core = example(name)
    assert set(core.modalities) <= set(core.modality_kinds)
    assert set(core.raw_inputs) <= set(core.modalities)
    assert all(isinstance(p, str) for p in core.required_plugins())


@pytest.mark.parametrize("name", NAMES)
def test_rollout_support_is_what_the_core_says(name: str) -> None:
    core = example(name)
    tokens, masks, available = make_batch(core)
    with torch.no_grad(), recording_attention(core):
        core(tokens, masks, available)
        if not core.supports_rollout:
            with pytest.raises(ModelError, match="rollout"):
                core.rollout_relevance([(m, 1) for m in core.modalities], 3)
            return
        layers = core.rollout_layers()
        assert layers and all(layer.attention_probs is not None for layer in layers)
        layout = [(m, tokens[m].shape[1]) for m in core.modalities if m in tokens]
        shares = modality_token_shares(core, layout, 3)
    total = sum(s.sum(dim=1) for s in shares.values())
    assert torch.allclose(total, torch.ones(3), atol=1e-5)
    for m, share in shares.items():
        # A sample's missing modality or padding gets no share at all.
        assert torch.all(share[~masks[m]] == 0) and bool((share >= 0).all())


@pytest.mark.parametrize("name", NAMES)
def test_auxiliary_outputs_are_returned_explicitly_and_reach_the_model_outputs(name: str) -> None:
    core = example(name)
    tokens, masks, available = make_batch(core)
    with torch.no_grad():
        features, auxiliary = core.forward_with_auxiliary(tokens, masks, available)
        assert torch.allclose(features, core(tokens, masks, available), atol=1e-6)
        assert set(auxiliary) == set(core.auxiliary_outputs)
        heads = nn.ModuleDict(
            {t: create_head(t, info, in_dim=core.out_dim) for t, info in TARGETS.items()}
        )
        model = MultimodalModel(nn.ModuleDict(), core, heads).eval()
        encoded = {m: (tokens[m], masks[m]) for m in core.modalities}
        outputs = model.fuse(encoded, {m: available[m] for m in core.modalities})
    assert ("auxiliary" in outputs) == bool(core.auxiliary_outputs)
    if core.auxiliary_outputs:
        assert set(outputs["auxiliary"]) == set(core.auxiliary_outputs)


@pytest.mark.parametrize("name", NAMES)
def test_per_task_features_exist_exactly_for_a_core_with_tasks(name: str) -> None:
    core = example(name)
    tokens, masks, available = make_batch(core)
    with torch.no_grad():
        if not core.tasks:
            with pytest.raises(ModelError, match="no per-task features"):
                core.forward_tasks(tokens, masks, available, ["label"])
            return
        per_task = core.forward_tasks(tokens, masks, available, core.tasks)
        assert per_task.shape == (3, len(core.tasks), core.out_dim)
        if len(core.tasks) == 1:
            assert torch.allclose(per_task[:, 0], core(tokens, masks, available), atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_prompt_hooks_exist_exactly_for_a_core_that_takes_prompts(name: str) -> None:
    core = example(name)
    if not core.takes_prompts:
        assert core.prompt_parameter_names() == []
        with pytest.raises(ModelError, match="takes no task prompts"):
            core.set_prompt("label", "Is it positive?")
        return
    names = dict(core.named_parameters())
    assert core.prompt_parameter_names() and set(core.prompt_parameter_names()) <= set(names)
    tokens, masks, available = make_batch(core)
    task = core.tasks[0]
    with torch.no_grad():
        before = core.forward_tasks(tokens, masks, available, [task])
        core.set_prompt(task, "An entirely different question about the sample?")
        changed = core.forward_tasks(tokens, masks, available, [task])
        core.set_prompt(task, None)
        restored = core.forward_tasks(tokens, masks, available, [task])
    assert not torch.allclose(before, changed) and torch.equal(before, restored)


@pytest.mark.parametrize("name", NAMES)
def test_target_options_are_options_the_core_derives_from_targets(name: str) -> None:
    cls = CORES.get(name)
    assert set(cls.target_options) <= set(keyword_options(cls))
    derived = cls.options_from_targets(TARGETS)
    assert set(derived) == set(cls.target_options)
    if derived:
        modalities = cls.example_modalities()
        options = {**cls.example_options(), **derived}
        assert isinstance(cls(modalities=modalities, dim=16, **options), FusionCore)


@pytest.mark.parametrize("name", NAMES)
def test_a_core_without_adapters_says_so(name: str) -> None:
    core = example(name)
    if "init_adapters" in vars(type(core)):
        return  # a core with adapters: tested with its own folders (test_intervention.py)
    with pytest.raises(ModelError, match="no adapters"):
        core.init_adapters(core.modalities[0], None)  # type: ignore[arg-type]


def test_example_hooks_are_overridden_only_with_the_base_signature() -> None:
    base = {n: inspect.signature(getattr(FusionCore, n)) for n in ("forward_tasks", "set_prompt")}
    for name in NAMES:
        cls = CORES.get(name)
        for method, signature in base.items():
            own = inspect.signature(getattr(cls, method))
            assert list(own.parameters)[: len(signature.parameters)] == list(signature.parameters)
