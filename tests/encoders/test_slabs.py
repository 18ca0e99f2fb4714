"""Small long-lived tensors kept in large blocks, so a cache of them cannot fragment the heap."""

from __future__ import annotations

import pytest
import torch

from polymodal.encoders.image import FrozenFeatureCache
from polymodal.encoders.stage_cache import StageCache
from polymodal.slabs import Slabs


def test_a_copy_holds_the_values_in_memory_of_its_own() -> None:
    slabs = Slabs(per_block=4)
    source = torch.arange(6, dtype=torch.float16).reshape(2, 3)
    copy = slabs.copy(source)
    source.zero_()
    assert copy.tolist() == [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]]
    assert copy.dtype == torch.float16 and copy.shape == (2, 3)


def test_copies_of_one_shape_fill_a_block_before_the_next_is_made() -> None:
    slabs = Slabs(per_block=4)
    copies = [slabs.copy(torch.full((3,), float(i))) for i in range(9)]
    blocks = {c.untyped_storage().data_ptr() for c in copies}
    assert len(blocks) == slabs.blocks == 3  # 4 + 4 + 1
    assert [c[0].item() for c in copies] == list(range(9))
    other = slabs.copy(torch.ones(2, dtype=torch.int64))  # another shape: a block of its own
    assert other.untyped_storage().data_ptr() not in blocks and slabs.blocks == 4


def test_the_stage_cache_keeps_its_entries_in_shared_blocks() -> None:
    # Kept one allocation each, 29 KB entries grew HAM10000's recipe by ~400 KB apiece (to 24 GB).
    cache = StageCache()
    images = torch.rand(6, 3, 8, 8)

    def prefix(batch: torch.Tensor, views: torch.Tensor) -> torch.Tensor:
        return batch[:, :2] * 2

    out = cache.features(images, torch.zeros(6, dtype=torch.long), prefix, (2, 8, 8))
    torch.testing.assert_close(out, (images[:, :2] * 2).half())
    assert len({e.untyped_storage().data_ptr() for e in cache.entries.values()}) == 1
    again = cache.features(images, torch.zeros(6, dtype=torch.long), prefix, (2, 8, 8))
    assert torch.equal(again, out) and cache.hits == 6


def test_the_frozen_feature_cache_keeps_features_read_from_disk_in_shared_blocks(tmp_path):
    # A later process reads each image's features from its own file: one allocation apiece.
    images = torch.rand(5, 3, 4, 4)

    def backbone(batch: torch.Tensor) -> torch.Tensor:
        return batch.flatten(2).transpose(1, 2) * 3  # (M, N, C)

    FrozenFeatureCache(folder=tmp_path).features(images, backbone)  # writes them to disk
    later = FrozenFeatureCache(folder=tmp_path)
    out = later.features(images, lambda batch: pytest.fail("every feature is on disk"))
    torch.testing.assert_close(out, backbone(images))
    assert later.disk_hits == 5
    assert len({e.untyped_storage().data_ptr() for e in later.entries.values()}) == 1


def test_a_freed_slot_is_reused_and_a_block_can_be_capped_in_bytes() -> None:
    slabs = Slabs(per_block=256, block_bytes=64)
    first = [slabs.copy(torch.zeros(4, dtype=torch.float32)) for _ in range(4)]  # 16 B each
    assert slabs.blocks == 1  # 4 slots of 16 bytes fill one 64-byte block
    slabs.free(first[2])
    again = slabs.copy(torch.ones(4))
    assert again.data_ptr() == first[2].data_ptr() and slabs.blocks == 1
    slabs.copy(torch.ones(4))
    assert slabs.blocks == 2


def test_a_block_all_given_back_is_let_go_and_blocks_can_grow_from_one_slot() -> None:
    slabs = Slabs(per_block=8, first_block=1)
    copies = [slabs.copy(torch.full((2,), float(i))) for i in range(15)]
    assert slabs.blocks == 4  # 1 + 2 + 4 + 8 slots
    assert [c[0].item() for c in copies] == list(range(15))
    for copy in copies[:3]:  # the first two blocks, every slot
        slabs.free(copy)
    assert slabs.blocks == 2
    for copy in copies[3:]:
        slabs.free(copy)
    assert slabs.blocks == 0 and not slabs._free and not slabs._owner


def test_a_block_needs_a_slot() -> None:
    with pytest.raises(ValueError, match="per_block must be ≥ 1"):
        Slabs(per_block=0)
