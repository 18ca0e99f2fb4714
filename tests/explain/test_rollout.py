"""Attention rollout: opt-in recording, shares that sum to 1, nothing for masked tokens."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from polymodal.config import ModelConfig
from polymodal.errors import ModelError
from polymodal.explain import (
    explain_model,
    modality_token_shares,
    recording_attention,
    rollout,
    rollout_cores,
)
from polymodal.fusion import create_core
from polymodal.layers.attention import Attention
from polymodal.model import build_model
from polymodal.model_folder import load_model_folder

DIM = 8
MODALITIES = {"xray": "image", "labs": "tabular", "note": "text"}
SIZES = {"xray": 4, "labs": 3, "note": 5}
CORES = {
    "prompted": {"task_prompts": "Is the lesion malignant?", "depth": 2, "heads": 2},
    "attention": {"depth": 2, "heads": 2},
    "synergy": {"num_latents": 3, "depth": 2, "cross_dim_head": 4, "latent_dim_head": 4},
    "synergy_attention_pool": {
        "num_latents": 3,
        "depth": 1,
        "cross_dim_head": 4,
        "latent_dim_head": 4,
        "pool": "attention",
    },
    "synergy_paper": {
        "num_latents": 3,
        "depth": 1,
        "cross_dim_head": 4,
        "latent_dim_head": 4,
        "layout": "paper",
        "fusion_depth": 2,
        "fusion_heads": 2,
    },
}


def streams(batch: int = 3) -> tuple[dict, dict, dict]:
    """Random tokens; sample 0 lacks ``labs``; sample 1's note has two padding tokens."""
    generator = torch.Generator().manual_seed(0)
    tokens = {m: torch.randn(batch, n, DIM, generator=generator) for m, n in SIZES.items()}
    masks = {m: torch.ones(batch, n, dtype=torch.bool) for m, n in SIZES.items()}
    masks["note"][1, 3:] = False
    available = {m: torch.ones(batch, dtype=torch.bool) for m in SIZES}
    available["labs"][0] = False
    return tokens, masks, available


def make_core(name: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return create_core(name.split("_")[0], modalities=MODALITIES, dim=DIM, **CORES[name]).eval()


@pytest.mark.parametrize("name", list(CORES))
def test_shares_sum_to_one_and_masked_tokens_get_none(name: str) -> None:
    core = make_core(name)
    tokens, masks, available = streams()
    with torch.no_grad(), recording_attention(core):
        core(tokens, masks, available)
        shares = modality_token_shares(core, list(SIZES.items()), 3)
    total = sum(s.sum(dim=1) for s in shares.values())
    assert torch.allclose(total, torch.ones(3), atol=1e-5)
    assert torch.all(shares["labs"][0] == 0)  # the missing modality
    assert torch.all(shares["note"][1, 3:] == 0)  # padding
    assert all(bool((s >= 0).all()) for s in shares.values())
    assert float(shares["labs"][1:].sum()) > 0


@pytest.mark.parametrize("name", ["prompted", "attention", "synergy_paper"])
def test_recording_is_off_by_default_and_changes_no_output(name: str) -> None:
    core = make_core(name)
    tokens, masks, available = streams()
    with torch.no_grad():
        plain = core(tokens, masks, available)
        layers = [m for m in core.modules() if isinstance(m, Attention)]
        assert all(not a.record_attention and a.attention_probs is None for a in layers)
        with recording_attention(core):
            recorded = core(tokens, masks, available)
            probs = layers[0].attention_probs
            assert probs is not None
            assert torch.allclose(probs.sum(dim=-1), torch.ones_like(probs.sum(dim=-1)))
    assert torch.allclose(plain, recorded, atol=1e-5)
    assert all(a.attention_probs is None and not a.record_attention for a in layers)


def test_prompted_core_with_several_tasks_reads_the_task_row() -> None:
    torch.manual_seed(0)
    prompts = {"cancer": "Predict the lung cancer risk.", "heart": "Any cardiac abnormality?"}
    core = create_core(
        "prompted", modalities=MODALITIES, dim=DIM, task_prompts=prompts, depth=1, heads=2
    ).eval()
    tokens, masks, available = streams()
    layout = list(SIZES.items())
    per_task = {}
    with torch.no_grad(), recording_attention(core):
        core.forward_tasks(tokens, masks, available)  # both tasks, folded into the batch
        for task in prompts:
            per_task[task] = modality_token_shares(core, layout, 3, task)
        with pytest.raises(ModelError, match="no task 'lungs'; its tasks: 'cancer', 'heart'"):
            modality_token_shares(core, layout, 3, "lungs")
    with torch.no_grad(), recording_attention(core):
        core(tokens, masks, available, task="heart")  # the heart task alone
        alone = modality_token_shares(core, layout, 3)
    for m in SIZES:
        assert torch.allclose(per_task["heart"][m], alone[m], atol=1e-5)
    assert not torch.allclose(per_task["cancer"]["note"], per_task["heart"]["note"])


def test_rollout_accumulates_from_the_identity() -> None:
    attention = torch.tensor([[[[0.5, 0.5], [0.0, 1.0]]]])  # (B=1, H=1, 2, 2)
    relevance = rollout([attention])
    # R = I + A·I
    assert torch.allclose(relevance[0], torch.tensor([[1.5, 0.5], [0.0, 2.0]]))
    twice = rollout([attention, attention])
    assert torch.allclose(twice[0], relevance[0] + attention[0, 0] @ relevance[0])


def test_a_core_without_rollout_gets_a_clear_message() -> None:
    core = create_core("concat", modalities=MODALITIES, dim=DIM)
    assert {"attention", "prompted", "synergy"} <= set(rollout_cores())
    listed = ", ".join(rollout_cores())
    with pytest.raises(ModelError, match=f"supports the fusion cores {listed};"):
        modality_token_shares(core, list(SIZES.items()), 3)


def test_rollout_on_a_fitted_model_maps_tokens_to_fields(key_model: Path, key_cohort: Path) -> None:
    result = explain_model(
        key_model, key_cohort.parent / "manifest.csv", method="rollout", max_samples=6
    )
    assert result.methods == ("rollout",)
    table = result.per_sample
    assert table["occlusion_effect"].isna().all()
    for _, rows in table.groupby("sample_id"):
        shares = rows.set_index("element")["rollout_share"]
        modality_total = shares[rows.set_index("element")["kind"] == "modality"].sum()
        assert modality_total == pytest.approx(1.0, abs=1e-5)
        fields = [f"labs.{c}" for c in ("key", "noise_a", "noise_b", "colour")]
        assert shares[fields].sum() == pytest.approx(shares["labs"], abs=1e-6)
        sentences = [e for e in shares.index if e.startswith("note.")]
        assert len(sentences) == 3
        # The [CLS] token belongs to no sentence: the sentences share less than the note.
        assert 0 < shares[sentences].sum() < shares["note"] + 1e-6
    assert result.cohort["rank"].iloc[0] == 1


def test_a_multitask_prompted_model_is_explained_per_task(
    key_model: Path, key_cohort: Path
) -> None:
    loaded = load_model_folder(key_model)
    target_infos = {
        "label": loaded.target_infos["label"],
        "severity": {"kind": "regression", "n_outputs": 1, "mean": 0.0, "std": 1.0},
    }
    torch.manual_seed(0)
    config = ModelConfig(core="prompted", dim=16, core_options={"depth": 1, "heads": 2})
    model = build_model(config, loaded.input_infos, target_infos).eval()
    assert model.task_routing == ("label", "severity")
    multitask = replace(loaded, model=model, config=config, target_infos=target_infos)
    manifest = key_cohort.parent / "manifest.csv"
    shares = {}
    for task in target_infos:
        result = explain_model(multitask, manifest, task, method="both", max_samples=3)
        table = result.per_sample.set_index(["sample_id", "element"])
        shares[task] = table["rollout_share"]
        modalities = table[table["kind"] == "modality"]["rollout_share"]
        assert modalities.groupby("sample_id").sum().to_numpy() == pytest.approx(1.0, abs=1e-5)
    assert result.score == "predicted value"
    assert not np.allclose(shares["label"].to_numpy(), shares["severity"].to_numpy())


def test_a_model_without_rollout_support_falls_back_or_refuses(
    key_model: Path, key_cohort: Path
) -> None:
    loaded = load_model_folder(key_model)
    config = ModelConfig(core="concat", dim=16)
    model = build_model(config, loaded.input_infos, loaded.target_infos).eval()
    concat = replace(loaded, model=model, config=config)
    manifest = key_cohort.parent / "manifest.csv"
    with pytest.raises(ModelError, match="this model's core is 'concat': use --method occlusion"):
        explain_model(concat, manifest, method="rollout", max_samples=2)
    both = explain_model(concat, manifest, method="both", max_samples=2)
    assert both.methods == ("occlusion",)
    assert both.notes[0] == (
        "attention rollout is not available for the 'concat' core "
        f"(only {', '.join(rollout_cores())}): occlusion only"
    )
    assert both.per_sample["rollout_share"].isna().all()
