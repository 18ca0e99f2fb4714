"""The frozen-feature store on its own: batch entries, disk round trip, memory bound."""

from __future__ import annotations

from pathlib import Path

import torch

from polymodal.data.feature_store import FeatureStore


def tokens(pixels: torch.Tensor) -> torch.Tensor:
    """(M, C, H, W) -> (M, 4, 3): channel-major tokens transposed, as a CNN's feature map gives
    them (not contiguous)."""
    return pixels.flatten(2)[:, :3, :4].transpose(1, 2)


def test_non_contiguous_batches_are_stored_and_read_back(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, (4, 3), tokens)
    pixels = torch.randn(2, 3, 2, 2)
    computed = store.add(["aa01", "bb02"], pixels)
    again = FeatureStore(tmp_path, (4, 3), tokens)  # another process: reads the disk
    assert torch.equal(again.lookup("aa01"), computed[0])
    assert torch.equal(again.lookup("bb02"), computed[1])
    assert again.disk_hits == 2 and again.lookup("cc03") is None


def test_memory_holds_at_most_max_bytes_and_the_rest_is_read_from_disk(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, (4, 3), tokens, max_bytes=4 * 3 * 4)  # one entry
    store.add(["aa01", "bb02"], torch.randn(2, 3, 2, 2))
    assert list(store.entries) == ["aa01"] and store.held_bytes == 48
    assert store.lookup("bb02") is not None and store.disk_hits == 1


def test_get_computes_a_missing_entry_from_its_pixels_once(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path, (4, 3), tokens)
    loads = []
    image = torch.randn(3, 2, 2)
    first = store.get("aa01", lambda: loads.append(1) or image)
    second = store.get("aa01", lambda: loads.append(1) or image)
    assert loads == [1] and torch.equal(first, second) and store.computed == 1
    assert torch.equal(first, tokens(image[None])[0])
