"""volume_multiscale: token counts per crop size, separable positions, voxel-size code, MAE."""

from __future__ import annotations

import pytest
import torch

from polymodal.encoders import create_encoder
from polymodal.encoders.volume import spacing_embedding
from polymodal.encoders.volume_multiscale import random_token_masking
from polymodal.errors import ModelError

DIM = 12
# Two small crops like a lung and a heart crop (methods.md §2.2 scales 4 and 3, shrunk).
SCALES = [
    {"size": [8, 16, 16], "patch": [4, 8, 8]},  # 2×2×2 = 8 tokens
    {"size": [16, 8, 24], "patch": [4, 4, 4]},  # 4×2×6 = 48 tokens
]


def build(**options) -> torch.nn.Module:
    torch.manual_seed(0)
    options = {"scales": SCALES, "depth": 0, **options}
    return create_encoder(
        "volume_multiscale", input_info={"kind": "volume", "size": None}, dim=DIM, **options
    )


def batch(size, spacing=(2.0, 1.0, 1.0), n: int = 2) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "voxels": torch.rand(n, 1, *size, generator=generator),
        "spacing": torch.tensor([spacing] * n),
    }


def test_token_count_per_crop_size() -> None:
    encoder = build().eval()
    assert encoder.supported_sizes == [[8, 16, 16], [16, 8, 24]]
    assert encoder.grid([16, 8, 24]) == (4, 2, 6)
    for size, expected in (((8, 16, 16), 8 + 1), ((16, 8, 24), 48 + 1)):
        tokens, mask = encoder(batch(size))
        assert encoder.num_tokens(size) == expected
        assert tokens.shape == (2, expected, DIM) and mask.shape == (2, expected) and mask.all()
    assert build(cls_token=False).num_tokens([8, 16, 16]) == 8


def test_m3fm_lung_crop_token_count() -> None:
    # methods.md §2.2: (128, 448, 320) in 16³ patches -> 8×28×20 = 4480 tokens + CLS.
    encoder = create_encoder(
        "volume_multiscale",
        input_info={"kind": "volume", "size": [128, 448, 320]},
        dim=DIM,
        scales=[{"size": [128, 448, 320], "patch": [16, 16, 16]}],
        depth=0,
    )
    assert encoder.num_tokens([128, 448, 320]) == 4481


def test_unsupported_crop_size_names_it_and_the_supported_ones() -> None:
    encoder = build()
    message = (
        r"crop size \[8, 8, 8\] is not supported; supported sizes: \[\[8, 16, 16\], \[16, 8, 24\]\]"
    )
    with pytest.raises(ModelError, match=message):
        encoder(batch((8, 8, 8)))
    with pytest.raises(ModelError, match=message):
        encoder.num_tokens([8, 8, 8])
    # A modality whose fixed size is not a scale is refused when the encoder is built.
    with pytest.raises(ModelError, match=r"crop size \[24, 24, 24\] is not supported"):
        create_encoder(
            "volume_multiscale", input_info={"kind": "volume", "size": [24, 24, 24]}, dim=DIM
        )


def test_bad_scales_are_refused() -> None:
    with pytest.raises(ModelError, match=r"size \[8, 16, 16\] is not a multiple of its patch"):
        build(scales=[{"size": [8, 16, 16], "patch": [3, 8, 8]}])
    with pytest.raises(ModelError, match="listed twice"):
        build(scales=[SCALES[0], SCALES[0]])
    with pytest.raises(ModelError, match=r"scales\[0\] must be a mapping with exactly"):
        build(scales=[{"size": [8, 16, 16]}])
    with pytest.raises(ModelError, match="mask_ratio must be in"):
        build(mask_ratio=1.0)


def test_separable_positional_tables_per_scale() -> None:
    encoder = build()
    lung = encoder.scales["8x16x16"]
    assert lung.slice_position.shape == (2, DIM) and lung.plane_position.shape == (4, DIM)
    heart = encoder.scales["16x8x24"]
    assert heart.slice_position.shape == (4, DIM) and heart.plane_position.shape == (12, DIM)
    assert heart.patch_embedding.kernel_size == (4, 4, 4)
    table = heart.position()  # (s·h·w, D), slice-major
    assert table.shape == (48, DIM)
    # Token (slice 3, in-plane 5) = slice row 3 + plane row 5.
    torch.testing.assert_close(table[3 * 12 + 5], heart.slice_position[3] + heart.plane_position[5])


def test_voxel_size_embedding_follows_spacing() -> None:
    encoder = build().eval()
    inputs = batch((8, 16, 16))
    thick = {**inputs, "spacing": torch.tensor([[5.0, 1.0, 1.0], [2.0, 1.0, 1.0]])}
    tokens, _ = encoder(inputs)
    thick_tokens, _ = encoder(thick)
    # Sample 0 changed spacing: its patch tokens change; the CLS token carries no spacing code.
    assert not torch.allclose(thick_tokens[0, 1:], tokens[0, 1:])
    torch.testing.assert_close(thick_tokens[0, 0], tokens[0, 0])
    # Sample 1 kept its spacing: identical tokens.
    torch.testing.assert_close(thick_tokens[1], tokens[1])
    # The difference is exactly the change of the sin-cos code of spacing × patch (4, 8, 8).
    code = spacing_embedding(torch.tensor([[20.0, 8.0, 8.0], [8.0, 8.0, 8.0]]), DIM)
    encoder.norm = torch.nn.Identity()
    raw, _ = encoder(inputs)
    raw_thick, _ = encoder(thick)
    torch.testing.assert_close(raw_thick[0, 1:] - raw[0, 1:], (code[0] - code[1]).expand(8, DIM))


def test_mae_masking_keeps_a_different_share_per_sample_in_training_only() -> None:
    encoder = build(mask_ratio=0.75).train()
    inputs = batch((16, 8, 24), n=4)
    generator = torch.Generator().manual_seed(3)
    tokens, mask, kept = encoder.tokenize(inputs["voxels"], inputs["spacing"], generator=generator)
    assert kept.shape == (4, 12)  # int(48 · 0.25)
    assert tokens.shape == (4, 1 + 12, DIM) and mask.all()
    assert all(len(set(row.tolist())) == 12 for row in kept)  # no index twice
    assert len({tuple(sorted(row.tolist())) for row in kept}) == 4  # different per sample
    # The kept tokens are the unmasked tokens at those grid positions.
    full, _, everything = encoder.eval().tokenize(inputs["voxels"], inputs["spacing"])
    assert full.shape == (4, 49, DIM) and torch.equal(everything[0], torch.arange(48))
    torch.testing.assert_close(tokens[2, 1:], full[2, 1:][kept[2]])
    with torch.no_grad():
        assert encoder(inputs)[0].shape == (4, 49, DIM)  # eval: no masking
        assert encoder.train()(inputs)[0].shape == (4, 13, DIM)


def test_random_token_masking_alone() -> None:
    tokens = torch.arange(10.0).reshape(1, 10, 1).expand(3, 10, 1)
    kept, indices = random_token_masking(tokens, 0.6, torch.Generator().manual_seed(0))
    assert kept.shape == (3, 4, 1) and indices.shape == (3, 4)
    assert torch.equal(kept[..., 0], indices.float())
