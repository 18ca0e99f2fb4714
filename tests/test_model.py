"""MultimodalModel: masks, per-sample modality dropout, missing streams, save/load, build_model."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from polymodal.config import EncoderChoice, ModelConfig
from polymodal.errors import ModelError
from polymodal.fusion import FusionCore, create_core
from polymodal.heads import create_head
from polymodal.model import MultimodalModel, build_model

DIM = 8
FEATURES = 3
MODALITIES = {"xray": "image", "labs": "tabular", "vitals": "series"}
TARGETS = {
    "label": {"kind": "binary", "n_outputs": 1},
    "survival": {"kind": "time_to_event", "loss": "discrete", "bins": [1.0, 2.0, 3.0]},
}


class FakeEncoder(nn.Module):
    """A Linear over ``features`` (B, N, F); the mask is ``valid`` (B, N)."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(FEATURES, DIM)
        self.calls = 0

    def forward(self, inputs: dict) -> tuple[torch.Tensor, torch.Tensor]:
        self.calls += 1
        return self.proj(inputs["features"]), inputs["valid"]


class RecordingCore(FusionCore):
    """Wraps a real core and keeps the availability it was given."""

    def __init__(self, core: FusionCore) -> None:
        super().__init__(modalities=core.modality_kinds, dim=core.dim)
        self.core, self.modalities, self.out_dim = core, core.modalities, core.out_dim
        self.seen: dict[str, torch.Tensor] = {}

    def forward(self, tokens, masks, available):
        self.seen = {m: a.clone() for m, a in available.items()}
        return self.core(tokens, masks, available)


def make_model(core: str = "concat", dropout: float = 0.0, **options) -> MultimodalModel:
    torch.manual_seed(0)
    fusion = RecordingCore(create_core(core, modalities=MODALITIES, dim=DIM, **options))
    encoders = nn.ModuleDict({m: FakeEncoder() for m in fusion.modalities})
    heads = nn.ModuleDict({t: create_head(t, i, in_dim=fusion.out_dim) for t, i in TARGETS.items()})
    return MultimodalModel(encoders, fusion, heads, modality_dropout=dropout)


def make_batch(n: int = 4, seed: int = 1) -> dict:
    g = torch.Generator().manual_seed(seed)
    inputs = {
        m: {
            "features": torch.randn(n, 2 + i, FEATURES, generator=g),
            "valid": torch.ones(n, 2 + i, dtype=torch.bool),
        }
        for i, m in enumerate(MODALITIES)
    }
    available = {m: torch.ones(n, dtype=torch.bool) for m in MODALITIES}
    available["labs"][0] = False
    times = torch.rand(n, generator=g) * 4
    return {
        "ids": [f"s{i}" for i in range(n)],
        "inputs": inputs,
        "available": available,
        "targets": {
            "label": (torch.arange(n) % 2).float(),
            "survival": torch.stack([times, (torch.arange(n) % 2).float()], dim=1),
        },
        "target_mask": {
            "label": torch.ones(n, dtype=torch.bool),
            "survival": torch.ones(n, dtype=torch.bool),
        },
    }


def test_forward_loss_and_predict() -> None:
    model = make_model().train()
    batch = make_batch()
    outputs = model(batch)
    assert outputs["features"].shape == (4, DIM)
    assert outputs["logits"]["label"].shape == (4,) and outputs["logits"]["survival"].shape == (
        4,
        3,
    )
    total, per_target = model.loss(batch, outputs)
    assert torch.allclose(total, (per_target["label"] + per_target["survival"]) / 2)
    total.backward()
    assert all(p.grad is not None for p in model.parameters())
    predictions = model.eval().predict(batch)
    assert set(predictions["label"]) == {"probability"}
    assert predictions["survival"]["survival"].shape == (4, 3)


def test_unavailable_modality_is_masked_by_the_model() -> None:
    # The fake encoder marks every token valid; the model must AND with availability itself.
    model = make_model("attention", depth=1).eval()
    batch = make_batch()
    expected = model(batch)["features"]
    batch["inputs"]["labs"]["features"][0] = 1e4  # sample 0 has no labs
    assert torch.allclose(model(batch)["features"], expected, atol=1e-6)


def test_absent_modality_is_unavailable_and_unknown_one_is_ignored() -> None:
    model = make_model("synergy", num_latents=4, depth=1).eval()
    batch = make_batch()
    batch["available"]["vitals"][:] = False
    expected = model(batch)["features"]
    del batch["inputs"]["vitals"], batch["available"]["vitals"]
    batch["inputs"]["ecg"] = {
        "features": torch.randn(4, 2, FEATURES),
        "valid": torch.ones(4, 2, dtype=bool),
    }
    batch["available"]["ecg"] = torch.ones(4, dtype=torch.bool)
    assert torch.allclose(model(batch)["features"], expected, atol=1e-6)
    assert "ecg" not in model.core.seen


def test_modality_dropout_is_per_sample_and_never_drops_everything() -> None:
    model = make_model(dropout=0.5).train()
    batch = make_batch(n=256)
    batch["available"]["xray"][:64] = False
    batch["available"]["vitals"][:64] = False  # samples 0..63 have labs only (sample 0: nothing)
    torch.manual_seed(3)
    model(batch)
    seen = torch.stack([model.core.seen[m] for m in MODALITIES], dim=1)  # (B, M)
    given = torch.stack([batch["available"][m] for m in MODALITIES], dim=1)
    assert not (seen & ~given).any(), "dropout never makes a modality available"
    assert (seen.any(1) == given.any(1)).all(), "a sample never loses all its modalities"
    assert seen[1:64, 1].all(), "a sample's only modality is never dropped"
    dropped = given & ~seen
    assert dropped[64:].float().mean() > 0.2
    # Per sample: the full-availability samples end up with many different patterns.
    assert len({tuple(row.tolist()) for row in seen[64:]}) >= 5


def test_modality_dropout_is_off_in_eval_mode() -> None:
    model = make_model(dropout=0.9).eval()
    batch = make_batch(n=64)
    first = model(batch)["features"]
    for m in MODALITIES:
        assert torch.equal(model.core.seen[m], batch["available"][m])
    assert torch.equal(model(batch)["features"], first)


def test_single_core_never_runs_the_other_encoders() -> None:
    model = make_model("single", modality="labs").eval()
    assert model.modalities == ("labs",)
    batch = make_batch()
    batch["inputs"]["xray"]["features"][:] = float("nan")
    features = model(batch)["features"]
    assert torch.isfinite(features).all()
    assert model.encoders["labs"].calls == 1 and "xray" not in model.encoders


def test_eval_skips_an_encoder_when_no_sample_has_the_modality() -> None:
    model = make_model().eval()
    batch = make_batch()
    batch["available"]["xray"][:] = False
    model(batch)
    assert model.encoders["xray"].calls == 0
    model.train()(batch)
    assert model.encoders["xray"].calls == 1


def test_missing_target_in_batch_counts_as_unlabeled() -> None:
    model = make_model().train()
    batch = make_batch()
    del batch["targets"]["survival"]
    total, per_target = model.loss(batch, model(batch))
    assert per_target["survival"].item() == 0.0 and torch.equal(total, per_target["label"])


def test_safetensors_round_trip(tmp_path) -> None:
    model = make_model("synergy", num_latents=4, depth=1).eval()
    batch = make_batch()
    expected = model.predict(batch)
    model.save_weights(tmp_path / "model.safetensors")
    save_file(model.state_dict(), str(tmp_path / "state.safetensors"))
    for load in ("weights", "state"):
        torch.manual_seed(99)
        fresh = make_model("synergy", num_latents=4, depth=1)
        torch.nn.init.normal_(fresh.core.core.memory.latents)
        if load == "weights":
            fresh.load_weights(tmp_path / "model.safetensors")
        else:
            fresh.load_state_dict(load_file(str(tmp_path / "state.safetensors")))
        got = fresh.eval().predict(batch)
        for target, values in expected.items():
            for name, value in values.items():
                assert torch.equal(got[target][name], value), (load, target, name)


def test_load_weights_of_another_model_is_a_model_error(tmp_path) -> None:
    make_model("concat").save_weights(tmp_path / "w.safetensors")
    with pytest.raises(ModelError, match="do not fit this model"):
        make_model("attention", depth=1).load_weights(tmp_path / "w.safetensors")
    with pytest.raises(ModelError, match="not found"):
        make_model().load_weights(tmp_path / "nope.safetensors")


def test_bad_modality_dropout_is_a_model_error() -> None:
    with pytest.raises(ModelError, match=r"modality_dropout must be in \[0, 1\)"):
        make_model(dropout=1.0)


def test_build_model_with_real_tabular_and_series_encoders(tmp_path) -> None:
    input_infos = {
        "labs": {"kind": "tabular", "numeric": ["age", "crp"], "categorical": {"sex": 4}},
        "vitals": {"kind": "series", "channels": ["hr", "sbp"], "max_steps": 6},
    }
    config = ModelConfig(
        core="synergy",
        dim=16,
        core_options={"num_latents": 4, "depth": 1},
        encoders={"vitals": EncoderChoice(options={"num_frequencies": 2})},
        modality_dropout=0.3,
    )
    model = build_model(config, input_infos, TARGETS)
    assert set(model.encoders) == {"labs", "vitals"}
    n, steps = 3, 6
    step_mask = torch.arange(steps)[None, :] < torch.tensor([[6], [3], [1]])
    batch = {
        "ids": ["a", "b", "c"],
        "inputs": {
            "labs": {
                "numeric": torch.randn(n, 2),
                "numeric_missing": torch.tensor([[False, True], [False, False], [True, True]]),
                "categorical": torch.tensor([[2], [0], [3]]),
            },
            "vitals": {
                "values": torch.randn(n, steps, 2),
                "observed": torch.ones(n, steps, 2, dtype=torch.bool),
                "times": torch.linspace(0, 1, steps).expand(n, -1).clone(),
                "step_mask": step_mask,
            },
        },
        "available": {
            "labs": torch.tensor([True, True, False]),
            "vitals": torch.tensor([True, False, True]),
        },
        "targets": make_batch(n)["targets"],
        "target_mask": make_batch(n)["target_mask"],
    }
    total, _ = model.train().loss(batch, model(batch))
    total.backward()
    model.eval()
    expected = model(batch)["features"]
    # Padded steps and the unavailable sample's series hold garbage: same output.
    batch["inputs"]["vitals"]["values"][1] = 1e3
    batch["inputs"]["vitals"]["values"][2, 1:] = -1e3
    assert torch.allclose(model(batch)["features"], expected, atol=1e-5)
    model.save_weights(tmp_path / "m.safetensors")
    rebuilt = build_model(
        ModelConfig.model_validate(config.model_dump(mode="json")), input_infos, TARGETS
    )
    rebuilt.load_weights(tmp_path / "m.safetensors")
    assert torch.equal(rebuilt.eval()(batch)["features"], model(batch)["features"])


def test_build_model_rejects_an_encoder_for_an_unknown_modality() -> None:
    config = ModelConfig(encoders={"ct": EncoderChoice(name="volume_patch")})
    with pytest.raises(ModelError, match=r"names \['ct'\], which are not modalities"):
        build_model(
            config, {"labs": {"kind": "tabular", "numeric": ["a"], "categorical": {}}}, TARGETS
        )


def test_build_model_rejects_dotted_names() -> None:
    infos = {"lab.values": {"kind": "tabular", "numeric": ["a"], "categorical": {}}}
    with pytest.raises(ModelError, match=r"modality name\(s\) \['lab.values'\]"):
        build_model(ModelConfig(), infos, TARGETS)


def test_a_core_that_reads_raw_pixels_gets_them_instead_of_an_encoder(tmp_path) -> None:
    input_infos = {
        "xray": {"kind": "image", "channels": 1},
        "labs": {"kind": "tabular", "numeric": ["age"], "categorical": {}},
    }
    vit = {"img_size": 32, "embed_dim": 16, "depth": 1, "num_heads": 2}
    config = ModelConfig(
        core="intervention",
        dim=DIM,
        core_options={"backbone": "vit_tiny_patch16_224", "backbone_options": vit},
    )
    model = build_model(config, input_infos, TARGETS).eval()
    # The core runs the image backbone itself: no encoder for xray, its raw input goes through.
    assert set(model.encoders) == {"labs"} and model.modalities == ("xray", "labs")
    batch = make_batch(n=3)
    batch["inputs"] = {
        "xray": {
            "pixels": torch.randn(3, 2, 1, 32, 32),
            "view_mask": torch.tensor([[True, True], [True, False], [True, True]]),
        },
        "labs": {
            "numeric": torch.randn(3, 1),
            "numeric_missing": torch.zeros(3, 1, dtype=torch.bool),
            "categorical": torch.zeros(3, 0, dtype=torch.long),
        },
    }
    batch["available"] = {
        "xray": torch.tensor([True, True, False]),
        "labs": torch.ones(3, dtype=torch.bool),
    }
    encoded, _ = model.encode(batch)
    assert encoded["xray"][0] is batch["inputs"]["xray"]["pixels"]
    expected = model(batch)["features"]
    # A missing view and an unavailable sample's pixels are never read.
    batch["inputs"]["xray"]["pixels"][1, 1] = float("nan")
    batch["inputs"]["xray"]["pixels"][2] = float("nan")
    assert torch.equal(model(batch)["features"], expected)
    model.save_weights(tmp_path / "m.safetensors")
    rebuilt = build_model(config, input_infos, TARGETS)
    rebuilt.load_weights(tmp_path / "m.safetensors")
    assert torch.equal(rebuilt.eval()(batch)["features"], expected)
    del batch["inputs"]["xray"]["view_mask"]
    with pytest.raises(ModelError, match=r"reads modality 'xray' raw.*\['view_mask'\]"):
        model(batch)
