"""The sample cache's size cap (least recently used evicted), compressed entries and hit counts."""

from __future__ import annotations

import multiprocessing

import numpy as np
import torch

from polymodal.data.cache import SampleCache
from polymodal.training.cache_log import sample_cache
from polymodal.training.config import TrainConfig

KEYS = [f"{i:02d}" + "a" * 38 for i in range(6)]


def _entry(seed: int) -> dict[str, torch.Tensor]:
    """About 16 kB of float32 noise (hardly compressible)."""
    return {"voxels": torch.from_numpy(np.random.default_rng(seed).normal(size=4096).astype("f4"))}


def _bytes_on_disk(cache: SampleCache) -> int:
    return sum(
        f.stat().st_size for f in cache.folder.glob("??/*") if f.suffix in (".safetensors", ".stz")
    )


def test_cap_keeps_the_cache_under_it_and_evicts_the_least_recently_used(tmp_path):
    one = len(_put_and_size(tmp_path / "probe", _entry(0)))
    cache = SampleCache(tmp_path / "cache", max_bytes=3 * one + 100)  # room for three entries
    for i in range(3):
        cache.put(KEYS[i], _entry(i))
    assert cache.get(KEYS[0]) is not None  # entry 0 is now more recent than 1 and 2
    cache.put(KEYS[3], _entry(3))  # over the cap: the least recently used (1) goes
    assert cache.get(KEYS[1]) is None
    assert all(cache.get(KEYS[i]) is not None for i in (0, 2, 3))
    cache.put(KEYS[4], _entry(4))  # now 0 (read before 2 and 3 were) is the oldest use
    assert cache.get(KEYS[0]) is None
    assert _bytes_on_disk(cache) <= cache.max_bytes
    assert cache.entries.total_bytes() == _bytes_on_disk(cache)


def _put_and_size(folder, tensors) -> bytes:
    probe = SampleCache(folder)
    probe.put(KEYS[5], tensors)
    return probe.entry_path(KEYS[5]).read_bytes()


def test_a_cap_takes_in_entries_written_before_the_index_existed(tmp_path):
    """A folder filled by an uncapped cache whose index is gone (an older version) is counted
    when a capped cache opens it: the cap holds for the old entries too."""
    old = SampleCache(tmp_path / "cache")
    for i in range(4):
        old.put(KEYS[i], _entry(i))
    (tmp_path / "cache" / "entries.sqlite").unlink()
    for extra in ("entries.sqlite-wal", "entries.sqlite-shm"):
        (tmp_path / "cache" / extra).unlink(missing_ok=True)
    one = old.entry_path(KEYS[0]).stat().st_size
    capped = SampleCache(tmp_path / "cache", max_bytes=2 * one + 100)
    capped.put(KEYS[4], _entry(4))
    assert _bytes_on_disk(capped) <= capped.max_bytes
    assert capped.get(KEYS[4]) is not None


def test_compressed_entry_round_trips_bit_exact_and_is_smaller(tmp_path):
    cache = SampleCache(tmp_path / "cache", compress=True)
    volume = torch.zeros(1, 32, 32, 32)
    volume[0, 8:24, 8:24, 8:24] = torch.rand(16, 16, 16)  # a body in air: zeros compress
    tensors = {
        "voxels": volume,
        "spacing": torch.tensor([1.5, 0.7, 0.7], dtype=torch.float64),
        "pixels_u8": torch.arange(77, dtype=torch.uint8),  # not a multiple of 4 bytes
        "mask": torch.tensor([True, False, True]),
    }
    cache.put(KEYS[0], tensors)
    stored = cache.entry_path(KEYS[0])
    assert stored.suffix == ".stz"
    assert stored.stat().st_size < volume.numel() * 4 / 2
    back = cache.get(KEYS[0], fields=tensors)
    assert back is not None
    for name, tensor in tensors.items():
        assert back[name].dtype == tensor.dtype
        assert torch.equal(back[name], tensor), name
    # Turning compression off keeps the entry: the compressed file is still read.
    assert torch.equal(SampleCache(tmp_path / "cache").get(KEYS[0])["voxels"], volume)


def test_damaged_compressed_entry_is_rebuilt_not_used(tmp_path):
    cache = SampleCache(tmp_path / "cache", compress=True)
    cache.put(KEYS[0], _entry(0))
    stored = cache.entry_path(KEYS[0])
    stored.write_bytes(stored.read_bytes()[:-50])
    assert cache.get(KEYS[0]) is None
    assert cache.rebuilt == 1 and not stored.exists()


def test_hits_and_misses_are_counted_for_every_process(tmp_path):
    source = tmp_path / "a.bin"
    source.write_bytes(b"file")
    cache = SampleCache(tmp_path / "cache")
    for _ in range(3):
        cache.load_or_compute(source, "fp", lambda: _entry(0))
    assert cache.counts() == (2, 1)
    # Another process (a loader worker, a DDP rank) reading the same folder adds to the counts.
    context = multiprocessing.get_context("fork")  # a fresh interpreter would import torch: 20 s
    worker = context.Process(target=_read_twice, args=(tmp_path / "cache", source))
    worker.start()
    worker.join(60)
    assert worker.exitcode == 0
    assert cache.counts() == (4, 1)


def _read_twice(folder, source) -> None:
    cache = SampleCache(folder)
    for _ in range(2):
        cache.load_or_compute(source, "fp", lambda: _entry(0))


def test_run_config_sets_cap_and_compression(tmp_path):
    cfg = TrainConfig(cache_max_gb=0.5, cache_compress=True, cache_dir=tmp_path / "c")
    cache = sample_cache(cfg, tmp_path)
    assert cache is not None and cache.max_bytes == 500_000_000 and cache.compress
    assert cache.folder == tmp_path / "c"
    assert sample_cache(TrainConfig(cache=False), tmp_path) is None


def test_keep_policy_stores_until_the_cap_and_then_no_more(tmp_path):
    one = len(_put_and_size(tmp_path / "probe", _entry(0)))
    cache = SampleCache(tmp_path / "cache", max_bytes=3 * one + 100, policy="keep")
    for i in range(5):
        cache.put(KEYS[i], _entry(i))
    assert all(cache.get(KEYS[i]) is not None for i in range(3))
    assert cache.get(KEYS[3]) is None and cache.get(KEYS[4]) is None  # not stored, nothing evicted
    assert not list(cache.folder.glob("??/.*.tmp"))  # the refused entries leave no temporary file
    assert _bytes_on_disk(cache) <= cache.max_bytes
    assert cache.entries.total_bytes() == _bytes_on_disk(cache)


def _epoch_hits(cache: SampleCache, keys: list[str], order: np.ndarray) -> int:
    """One epoch as a loader reads it: every key once, in ``order``; a miss is stored."""
    hits = 0
    for i in order:
        if cache.get(keys[i]) is None:
            cache.put(keys[i], _entry(int(i)))
        else:
            hits += 1
    return hits


def test_under_reshuffled_epochs_a_half_cap_hits_half_with_keep_and_far_less_with_lru(tmp_path):
    keys = [f"{i:02d}" + "b" * 38 for i in range(20)]
    one = len(_put_and_size(tmp_path / "probe", _entry(0)))
    rng = np.random.default_rng(0)
    orders = [rng.permutation(20) for _ in range(3)]
    hits = {}
    for policy in ("lru", "keep"):
        cache = SampleCache(tmp_path / policy, max_bytes=10 * one + 100, policy=policy)
        hits[policy] = [_epoch_hits(cache, keys, order) for order in orders]
    assert hits["keep"] == [0, 10, 10]  # the same ten entries, read every epoch
    assert sum(hits["lru"][1:]) < sum(hits["keep"][1:]) / 2


def test_the_run_config_chooses_the_policy(tmp_path):
    cfg = TrainConfig(cache_max_gb=0.001, cache_policy="keep", cache_dir=tmp_path / "c")
    assert sample_cache(cfg, tmp_path).policy == "keep"
    assert sample_cache(TrainConfig(cache_dir=tmp_path / "d"), tmp_path).policy == "lru"
