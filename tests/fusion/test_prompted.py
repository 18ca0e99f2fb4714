"""``prompted``: the prompt token reads every modality; one feature per task prompt."""

from __future__ import annotations

import pytest
import torch

from polymodal.errors import ModelError
from polymodal.fusion import create_core
from polymodal.fusion.prompted import prompt_word_buckets

DIM = 16
MODALITIES = {"ct": "volume", "clinical": "text"}
PROMPTS = {
    "cancer": "Predict the lung cancer risk over six years.",
    "cvd": "Is there any significant cardiovascular abnormality?",
}


def make(prompts, seed: int = 0, **options) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_core(
        "prompted", modalities=MODALITIES, dim=DIM, task_prompts=prompts, depth=1, **options
    ).eval()


def make_batch() -> tuple[dict, dict, dict]:
    g = torch.Generator().manual_seed(0)
    tokens = {
        "ct": torch.randn(2, 9, DIM, generator=g),
        "clinical": torch.randn(2, 6, DIM, generator=g),
    }
    masks = {
        "ct": torch.ones(2, 9, dtype=torch.bool),
        "clinical": torch.ones(2, 6, dtype=torch.bool),
    }
    masks["clinical"][1, 3:] = False
    available = {"ct": torch.tensor([True, True]), "clinical": torch.tensor([True, True])}
    return tokens, masks, available


def test_one_feature_per_task_and_tasks_do_not_interact() -> None:
    both = make(PROMPTS)
    tokens, masks, available = make_batch()
    features = both.forward_tasks(tokens, masks, available)
    assert features.shape == (2, 2, DIM) and both.tasks == ("cancer", "cvd")
    assert not torch.allclose(features[:, 0], features[:, 1])  # the prompt changes the answer
    # A core with only the cancer prompt and the same weights gives the same cancer feature.
    alone = make({"cancer": PROMPTS["cancer"]})
    alone.load_state_dict(both.state_dict())
    torch.testing.assert_close(alone(tokens, masks, available), features[:, 0])
    torch.testing.assert_close(both(tokens, masks, available, task="cvd"), features[:, 1])
    torch.testing.assert_close(
        both.forward_tasks(tokens, masks, available, ["cvd"])[:, 0], features[:, 1]
    )


def test_prompt_attends_to_every_modality_and_registers_count() -> None:
    core = make(PROMPTS["cancer"], num_registers=3)
    assert core.registers.shape == (3, DIM) and core.tasks == ("task",)
    tokens, masks, available = make_batch()
    reference = core(tokens, masks, available)
    for name in MODALITIES:
        changed = dict(tokens, **{name: tokens[name] + torch.randn(tokens[name].shape)})
        assert not torch.allclose(core(changed, masks, available), reference), name


def test_prompt_words_are_hashed_stably_and_shared() -> None:
    # Same words give the same buckets whatever the case or punctuation (paraphrases share them).
    assert prompt_word_buckets("Lung cancer risk?", 1024) == prompt_word_buckets(
        "lung CANCER risk", 1024
    )
    assert prompt_word_buckets("lung cancer", 1024) != prompt_word_buckets("heart disease", 1024)
    core = make(PROMPTS)
    tokens = core.prompt_tokens()
    assert tokens.shape == (2, DIM)
    words = prompt_word_buckets(PROMPTS["cvd"], 1024)
    torch.testing.assert_close(tokens[1], core.word_embedding.weight[words].mean(0))


def test_errors_name_the_problem() -> None:
    with pytest.raises(ModelError, match="needs task_prompts"):
        create_core("prompted", modalities=MODALITIES, dim=DIM)
    with pytest.raises(ModelError, match="has no words"):
        make({"cancer": "?!"})
    core = make(PROMPTS)
    tokens, masks, available = make_batch()
    with pytest.raises(ModelError, match=r"has 2 task prompts \('cancer', 'cvd'\); name the task"):
        core(tokens, masks, available)
    with pytest.raises(ModelError, match=r"no task prompt for 'copd'"):
        core(tokens, masks, available, task="copd")
