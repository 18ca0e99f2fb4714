"""Images cached as 8-bit pixels where exact; what a model sees is unchanged bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from data.tiny_files import write_png
from polymodal.data.cache import SampleCache
from polymodal.data.dataset import _decode_image
from polymodal.data.pixel_store import pack_pixels, unpack_pixels
from polymodal.data.readers import read_image
from polymodal.data.spec import ImageModality


def _image(tmp_path, channels: int = 3, seed: int = 0):
    rng = np.random.default_rng(seed)
    shape = (24, 32, 3) if channels == 3 else (24, 32)
    return write_png(tmp_path / f"img{seed}.png", rng.integers(0, 256, shape, dtype=np.uint8))


def _cfg(**options) -> ImageModality:
    return ImageModality(kind="image", columns=["img"], **{"size": (24, 32), **options})


@pytest.mark.parametrize(
    "options", [{}, {"normalize": "none"}, {"channels": 1}, {"channels": 1, "normalize": "none"}]
)
def test_an_8bit_image_at_its_size_is_stored_as_uint8_and_read_back_bit_for_bit(tmp_path, options):
    cfg = _cfg(**options)
    path = _image(tmp_path, channels=cfg.channels)
    pixels = torch.from_numpy(read_image(path, cfg))
    entry = pack_pixels(pixels, cfg)
    assert set(entry) == {"pixels_u8"} and entry["pixels_u8"].dtype == torch.uint8
    back = unpack_pixels(entry, cfg)
    assert back.dtype == torch.float32
    assert torch.equal(back.view(torch.int32), pixels.view(torch.int32))


@pytest.mark.parametrize("options", [{"size": (12, 16)}, {"normalize": "minmax"}])
def test_resized_or_per_image_normalised_pixels_stay_float(tmp_path, options):
    cfg = _cfg(**options)
    pixels = torch.from_numpy(read_image(_image(tmp_path), cfg))
    entry = pack_pixels(pixels, cfg)
    assert set(entry) == {"pixels"} and torch.equal(unpack_pixels(entry, cfg), pixels)


def test_the_cache_entry_is_a_quarter_and_the_model_output_unchanged(tmp_path):
    cfg = _cfg()
    paths = [_image(tmp_path, seed=s) for s in range(4)]
    cache = SampleCache(tmp_path / "cache")
    uncached = torch.stack([_decode_image(p, cfg)["pixels"] for p in paths])

    def through_cache():
        return torch.stack(
            [
                unpack_pixels(
                    cache.load_or_compute(p, "fp", lambda p=p: _decode_image(p, cfg, pack=True)),
                    cfg,
                )
                for p in paths
            ]
        )

    first, second = through_cache(), through_cache()  # written, then read from disk
    assert cache.misses == 4 and cache.hits == 4
    entry = cache.entry_path(cache.key(paths[0], "fp"))
    assert load_file(entry)["pixels_u8"].dtype == torch.uint8
    assert entry.stat().st_size < uncached[0].numel() * 4 / 3.5  # about a quarter of float32
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(2)
    )
    expected = model(uncached)
    for batch in (first, second):
        assert torch.equal(batch, uncached)
        assert torch.equal(model(batch), expected)
