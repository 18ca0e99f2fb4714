"""Every registered fusion core: forward/backward, masks, missing modalities, save/load.

Like timm's test_models.py, the tests run over ``list_cores()``, each core built from its own
``example_modalities()`` and ``example_options()``: a new core is covered with no entry here.
``VARIANTS`` adds option combinations of the built-in cores worth covering too; the capability
tests are in ``test_core_capabilities.py``.
"""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from polymodal.errors import ModelError
from polymodal.fusion import CORES, FusionCore, create_core, list_cores
from polymodal.modalities import get as modality_kind
from polymodal.modalities import kinds as modality_kinds

DIM = 16
MODALITIES = {"xray": "image", "labs": "tabular", "vitals": "series"}
SMALL_SYNERGY = {"num_latents": 4, "depth": 2, "cross_dim_head": 8, "latent_dim_head": 8}
TINY_VIT = {
    "backbone": "vit_tiny_patch16_224",
    "backbone_options": {"img_size": 32, "embed_dim": 32, "depth": 2, "num_heads": 2},
}

# Further options of the built-in cores over MODALITIES, beyond each core's own example.
VARIANTS: dict[str, list[dict]] = {
    "synergy": [
        SMALL_SYNERGY,
        {**SMALL_SYNERGY, "pool": "attention", "self_per_cross": 2},
        {**SMALL_SYNERGY, "layout": "paper", "fusion_depth": 2},
        {**SMALL_SYNERGY, "layout": "paper", "direct": ["xray", "vitals"], "fusion_depth": 1},
        {**SMALL_SYNERGY, "layout": "paper", "pe_mode": "faithful_double_add", "fusion_depth": 1},
    ],
    "attention": [{"depth": 2}],
    "bottleneck": [
        {"depth": 2, "num_bottlenecks": 2},
        {"depth": 1, "num_bottlenecks": 3, "pooling": "attention", "readout": "bottleneck_tokens"},
    ],
    "prompted": [
        {"task_prompts": "Is there any significant abnormality?", "depth": 2},
        {"task_prompts": {"label": "Predict the label."}, "depth": 1, "num_registers": 0},
    ],
    "intervention": [
        {**TINY_VIT, "insert_at": 1, "adapter_options": {"ranks": [2, 4], "alphas": [4, 8]}},
    ],
}

CASES = [
    pytest.param(name, CORES.get(name).example_modalities(), None, id=f"{name}-example")
    for name in list_cores()
] + [
    pytest.param(name, MODALITIES, options, id=f"{name}-{i}")
    for name, variants in VARIANTS.items()
    for i, options in enumerate(variants)
]


def make_core(
    name: str, modalities: dict | None = None, options: dict | None = None, seed: int = 0
) -> FusionCore:
    """``name`` over ``modalities`` (default MODALITIES) with ``options`` (default: its example)."""
    torch.manual_seed(seed)
    options = CORES.get(name).example_options() if options is None else options
    return create_core(name, modalities=modalities or MODALITIES, dim=DIM, **options).eval()


# Availability of the i-th modality over 3 samples: the second one misses in sample 1 and every
# other one in sample 2 (so each modality is missing somewhere, and sample 0 has everything).
AVAILABLE = ([True, True, False], [True, False, True])


def make_batch(core: FusionCore, seed: int = 1) -> tuple[dict, dict, dict]:
    """3 samples over every modality the core was given, each stream from the core's
    ``example_stream`` (tokens, or pixels for a modality it reads raw). The last modality is
    padded: sample 1 keeps 2 positions, sample 2 one."""
    g = torch.Generator().manual_seed(seed)
    names = list(core.modality_kinds)
    tokens, masks, available = {}, {}, {}
    for i, m in enumerate(names):
        tokens[m], masks[m] = core.example_stream(m, 3, g)
        available[m] = torch.tensor(AVAILABLE[1] if i == 1 else AVAILABLE[0])
    masks[names[-1]][1, 2:] = False
    masks[names[-1]][2, 1:] = False
    # The model ANDs each encoder mask with availability before the core sees it.
    masks = {m: masks[m] & available[m][:, None] for m in masks}
    return tokens, masks, available


def with_garbage(tokens: dict, masks: dict, seed: int = 7) -> dict:
    """Replace every masked token (or view, for raw pixels) by large random values."""
    g = torch.Generator().manual_seed(seed)
    return {
        m: torch.where(_expand(masks[m], t), t, torch.randn(t.shape, generator=g) * 1e3)
        for m, t in tokens.items()
    }


def _expand(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(B, N) -> (B, N, 1, …) so that it broadcasts over ``like`` (B, N, …)."""
    return mask.reshape(*mask.shape, *([1] * (like.ndim - mask.ndim)))


@pytest.mark.parametrize(("name", "modalities", "options"), CASES)
def test_forward_backward(name: str, modalities: dict, options: dict | None) -> None:
    core = make_core(name, modalities, options).train()
    tokens, masks, available = make_batch(core)
    tokens = {m: t.requires_grad_() for m, t in tokens.items()}
    out = core(tokens, masks, available)
    assert out.shape == (3, core.out_dim)
    assert torch.isfinite(out).all()
    out.square().sum().backward()
    grads = [p.grad for p in core.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    # Gradient reaches the tokens the core reads, and never a masked one.
    for m in core.modalities:
        assert tokens[m].grad is not None and tokens[m].grad.abs().sum() > 0
        assert (tokens[m].grad[~masks[m]] == 0).all()


@pytest.mark.parametrize(("name", "modalities", "options"), CASES)
def test_missing_modality_garbage_does_not_change_output(
    name: str, modalities: dict, options: dict | None
) -> None:
    core = make_core(name, modalities, options)
    tokens, masks, available = make_batch(core)
    reference = core(tokens, masks, available)
    garbage = with_garbage(tokens, masks)
    second = list(core.modality_kinds)[1]  # unavailable in sample 1
    garbage[second][1] = float("nan")  # even NaN in an unavailable stream is never read
    assert torch.allclose(core(garbage, masks, available), reference, atol=1e-6)


@pytest.mark.parametrize(("name", "modalities", "options"), CASES)
def test_absent_stream_equals_unavailable_stream(
    name: str, modalities: dict, options: dict | None
) -> None:
    core = make_core(name, modalities, options)
    tokens, masks, available = make_batch(core)
    last = list(core.modality_kinds)[-1]
    available[last] = torch.zeros(3, dtype=torch.bool)
    masks[last] = torch.zeros_like(masks[last])
    garbage = with_garbage(tokens, masks)
    absent = {m: t for m, t in tokens.items() if m != last}
    absent_masks = {m: k for m, k in masks.items() if m != last}
    expected = core(absent, absent_masks, {m: available[m] for m in absent})
    assert torch.allclose(core(garbage, masks, available), expected, atol=1e-6)


@pytest.mark.parametrize(("name", "modalities", "options"), CASES)
def test_padding_does_not_change_output(name: str, modalities: dict, options: dict | None) -> None:
    core = make_core(name, modalities, options)
    tokens, masks, available = make_batch(core)
    reference = core(tokens, masks, available)
    for m in core.modality_kinds:
        padding = torch.randn(3, 9, *tokens[m].shape[2:])
        padded_tokens = dict(tokens, **{m: torch.cat([tokens[m], padding], 1)})
        padded_masks = dict(masks, **{m: torch.cat([masks[m], torch.zeros(3, 9, dtype=bool)], 1)})
        out = core(padded_tokens, padded_masks, available)
        assert torch.allclose(out, reference, atol=1e-6), f"padding {m} changed the output"


@pytest.mark.parametrize(("name", "modalities", "options"), CASES)
def test_all_but_one_missing_gives_finite_output(
    name: str, modalities: dict, options: dict | None
) -> None:
    core = make_core(name, modalities, options)
    tokens, masks, _ = make_batch(core)
    for keep in core.modality_kinds:
        only = {m: torch.full((3,), m == keep) for m in core.modality_kinds}
        only_masks = {m: masks[m] & only[m][:, None] for m in masks}
        out = core(with_garbage(tokens, only_masks), only_masks, only)
        assert torch.isfinite(out).all(), f"only {keep} available"
    # A sample with nothing at all (every token masked) still gets a finite output.
    none = {m: torch.zeros(3, dtype=torch.bool) for m in core.modality_kinds}
    none_masks = {m: torch.zeros_like(k) for m, k in masks.items()}
    assert torch.isfinite(core(with_garbage(tokens, none_masks), none_masks, none)).all()


@pytest.mark.parametrize(("name", "modalities", "options"), CASES)
def test_safetensors_round_trip(
    name: str, modalities: dict, options: dict | None, tmp_path
) -> None:
    core = make_core(name, modalities, options, seed=0)
    tokens, masks, available = make_batch(core)
    expected = core(tokens, masks, available)
    save_file(core.state_dict(), str(tmp_path / "core.safetensors"))
    fresh = make_core(name, modalities, options, seed=123)
    fresh.load_state_dict(load_file(str(tmp_path / "core.safetensors")))
    assert torch.equal(fresh(tokens, masks, available), expected)


def test_single_reads_only_its_modality() -> None:
    core = make_core("single", options={"modality": "labs"})
    assert core.modalities == ("labs",)
    tokens, masks, available = make_batch(core)
    expected = core(tokens, masks, available)
    # Other streams NaN and marked available: still untouched.
    noisy = {m: (t if m == "labs" else torch.full_like(t, float("nan"))) for m, t in tokens.items()}
    everything = {m: torch.ones(3, dtype=torch.bool) for m in MODALITIES}
    all_masks = {m: torch.ones_like(k) for m, k in masks.items()}
    all_masks["labs"] = masks["labs"]
    everything["labs"] = available["labs"]
    assert torch.equal(core(noisy, all_masks, everything), expected)
    only = core({"labs": tokens["labs"]}, {"labs": masks["labs"]}, {"labs": available["labs"]})
    assert torch.equal(only, expected)


def test_synergy_paper_layout_defaults_direct_to_images() -> None:
    core = make_core("synergy", options={**SMALL_SYNERGY, "layout": "paper"})
    assert core.direct == ("xray",)
    tokens, masks, available = make_batch(core)
    # The image goes into the fusion transformer, not the memory: changing an available image
    # token changes the output; the output is CLS-based with width dim.
    out = core(tokens, masks, available)
    tokens["xray"][0, 0] += torch.randn(DIM)  # not a constant shift, which LayerNorm removes
    changed = core(tokens, masks, available)
    assert not torch.allclose(out[0], changed[0]) and torch.equal(out[2], changed[2])
    assert core.out_dim == DIM


def test_synergy_paper_layout_feeds_every_spatial_kind_directly() -> None:
    # One modality of every registered kind: the spatial ones (pixels, voxels) skip the memory.
    every_kind = {f"m_{kind.name}": kind.name for kind in modality_kinds()}
    core = create_core(
        "synergy", modalities=every_kind, dim=DIM, **SMALL_SYNERGY, layout="paper", fusion_depth=1
    )
    assert core.direct == tuple(m for m, kind in every_kind.items() if modality_kind(kind).spatial)
    assert {"m_image", "m_volume"} <= set(core.direct)
    assert {"m_tabular", "m_text"}.isdisjoint(core.direct)


def test_faithful_double_add_differs_from_standard() -> None:
    paper = {**SMALL_SYNERGY, "layout": "paper", "fusion_depth": 1}
    standard = make_core("synergy", options=paper)
    faithful = make_core("synergy", options={**paper, "pe_mode": "faithful_double_add"})
    tokens, masks, available = make_batch(standard)
    assert not torch.allclose(
        standard(tokens, masks, available), faithful(tokens, masks, available)
    )


def test_unknown_core_lists_the_known_ones() -> None:
    with pytest.raises(ModelError, match=r"unknown fusion core 'perceiver'.*synergy"):
        create_core("perceiver", modalities=MODALITIES, dim=DIM)


def test_unknown_option_lists_the_accepted_ones() -> None:
    with pytest.raises(ModelError, match=r"has no option 'latents'.*accepts: .*num_latents"):
        create_core("synergy", modalities=MODALITIES, dim=DIM, latents=8)


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("single", {}, "needs the option modality="),
        ("single", {"modality": "ecg"}, "unknown modality 'ecg'"),
        ("synergy", {"layout": "paper", "direct": ["ct"]}, "unknown modality 'ct'"),
        ("synergy", {"direct": ["xray"]}, "'direct' needs layout='paper'"),
        ("synergy", {"pool": "max"}, "pool='max' is not one of mean, attention"),
        ("synergy", {"pe_mode": "double"}, "pe_mode='double'"),
    ],
)
def test_bad_options_are_model_errors(name: str, options: dict, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        create_core(name, modalities=MODALITIES, dim=DIM, **options)
