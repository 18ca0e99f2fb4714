"""volume_patch and volume_monai: 3D tokens, positional table, voxel-spacing embedding."""

from __future__ import annotations

import pytest
import torch

from polymodal.encoders import create_encoder
from polymodal.encoders.volume import sincos_embedding, spacing_embedding
from polymodal.errors import ModelError

TINY_DENSENET = {"init_features": 8, "growth_rate": 4, "block_config": (1, 1), "bn_size": 2}


def volume_batch(size=(8, 16, 16), spacing=(2.0, 1.0, 1.0), batch: int = 2) -> dict:
    generator = torch.Generator().manual_seed(0)
    return {
        "voxels": torch.rand(batch, 1, *size, generator=generator),
        "spacing": torch.tensor([spacing] * batch),
    }


def test_spacing_embedding_splits_channels_like_m3fm() -> None:
    physical = torch.tensor([[5.0, 16.0, 16.0]])
    code = spacing_embedding(physical, 1024)
    assert code.shape == (1, 1024)
    # 344 channels for the slice axis, then 340 each for h and w.
    torch.testing.assert_close(code[:, :344], sincos_embedding(physical[:, 0], 344))
    torch.testing.assert_close(code[:, 684:], sincos_embedding(physical[:, 2], 340))
    torch.testing.assert_close(
        sincos_embedding(torch.zeros(1), 8), torch.tensor([[0.0] * 4 + [1.0] * 4])
    )


def test_patch_tokens_count_and_mask() -> None:
    encoder = create_encoder(
        "volume_patch",
        input_info={"kind": "volume", "size": [8, 16, 16]},
        dim=16,
        patch_size=(4, 8, 8),
        depth=1,
    )
    tokens, mask = encoder(volume_batch())
    assert encoder.num_tokens == 2 * 2 * 2
    assert tokens.shape == (2, 8, 16) and mask.shape == (2, 8) and mask.all()


def test_voxel_spacing_changes_the_tokens() -> None:
    encoder = create_encoder(
        "volume_patch",
        input_info={"kind": "volume", "size": [8, 16, 16]},
        dim=16,
        patch_size=4,
        depth=0,
    ).eval()
    inputs = volume_batch()
    thick = {**inputs, "spacing": torch.tensor([[5.0, 1.0, 1.0], [2.0, 1.0, 1.0]])}
    tokens, _ = encoder(inputs)
    thick_tokens, _ = encoder(thick)
    assert not torch.allclose(thick_tokens[0], tokens[0])
    torch.testing.assert_close(thick_tokens[1], tokens[1])


def test_positional_table_refuses_another_size() -> None:
    encoder = create_encoder(
        "volume_patch", input_info={"kind": "volume", "size": [8, 16, 16]}, dim=16, patch_size=4
    )
    with pytest.raises(
        ModelError, match=r"built for volumes of size \[8, 16, 16\] .* but got \[16, 16, 16\]"
    ):
        encoder(volume_batch(size=(16, 16, 16)))


def test_patch_encoder_configuration_errors() -> None:
    with pytest.raises(
        ModelError, match=r"size \[8, 16, 16\] is not a multiple of patch_size \[3, 3, 3\]"
    ):
        create_encoder(
            "volume_patch", input_info={"kind": "volume", "size": [8, 16, 16]}, dim=16, patch_size=3
        )
    with pytest.raises(ModelError, match="needs a fixed volume size"):
        create_encoder("volume_patch", input_info={"kind": "volume", "size": None}, dim=16)
    with pytest.raises(ModelError, match="dim must be even"):
        create_encoder(
            "volume_patch", input_info={"kind": "volume", "size": [8, 8, 8]}, dim=15, patch_size=4
        )


def test_monai_feature_map_tokens_for_any_size() -> None:
    encoder = create_encoder(
        "volume_monai",
        input_info={"kind": "volume", "size": None},
        dim=16,
        network_options=TINY_DENSENET,
    )
    # Stem /4, one transition /2: 16³ -> 2³ cells, 8×16×16 -> 1×2×2.
    tokens, mask = encoder(volume_batch(size=(16, 16, 16)))
    assert tokens.shape == (2, 8, 16) and mask.all()
    tokens, _ = encoder(volume_batch(size=(8, 16, 16)))
    assert tokens.shape == (2, 4, 16)


def test_monai_spacing_embedding_is_used() -> None:
    encoder = create_encoder(
        "volume_monai",
        input_info={"kind": "volume", "size": [16, 16, 16]},
        dim=16,
        network_options=TINY_DENSENET,
    ).eval()
    inputs = volume_batch(size=(16, 16, 16))
    tokens, _ = encoder(inputs)
    other, _ = encoder({**inputs, "spacing": inputs["spacing"] * 3})
    assert not torch.allclose(tokens, other)


def test_monai_volume_too_small_is_refused_when_built() -> None:
    with pytest.raises(
        ModelError, match=r"size \[28, 28, 28\] are too small for a DenseNet with 4 dense blocks"
    ):
        create_encoder(
            "volume_monai",
            input_info={"kind": "volume", "size": [28, 28, 28]},
            dim=16,
            network_options={**TINY_DENSENET, "block_config": (1, 1, 1, 1)},
        )
