"""The sample cache's memory tier: later epochs read no file, yet every hit is counted, a copy is
handed out, the budget holds, and a changed file is never served from memory."""

from __future__ import annotations

import os
import pickle

import pytest
import torch
from test_cache import make_cohort

from polymodal.data.cache import SampleCache
from polymodal.data.dataset import CohortDataset
from polymodal.data.file_index import INDEX_NAME, FileIndex, content_hash
from polymodal.data.memory_tier import MemoryTier
from polymodal.data.preprocessing import Preprocessor
from polymodal.training.cache_log import sample_cache
from polymodal.training.config import TrainConfig


def _entry(value: int, size: int = 100) -> dict[str, torch.Tensor]:
    return {"pixels": torch.full((size,), value, dtype=torch.uint8)}


def test_a_kept_entry_is_handed_out_as_a_copy():
    tier = MemoryTier(10_000)
    tier.put("k", _entry(7))
    first = tier.get("k")
    first["pixels"].zero_()  # an in-place augmentation of what a reader got
    assert torch.equal(tier.get("k")["pixels"], _entry(7)["pixels"])


def test_the_budget_evicts_the_least_recently_used_and_reuses_its_memory():
    tier = MemoryTier(300)  # three entries of 100 bytes
    for key in "abc":
        tier.put(key, _entry(ord(key)))
    tier.get("a")  # a is now the most recently used
    tier.put("d", _entry(ord("d")))
    assert tier.get("b") is None
    assert [tier.get(k)["pixels"][0].item() for k in "acd"] == [ord(k) for k in "acd"]
    assert tier.bytes == 300
    blocks = tier._slabs.blocks
    for n in range(20):  # churn: each new entry takes an evicted one's slot
        tier.put(f"new{n}", _entry(n))
    assert tier._slabs.blocks == blocks and len(tier) == 3


def test_shapes_that_stop_coming_do_not_keep_memory():
    # Series of many lengths: each shape is seen once, then evicted for good.
    tier = MemoryTier(300)
    for length in range(1, 60):
        tier.put(f"series{length}", {"values": torch.zeros(length, dtype=torch.uint8)})
    assert tier._slabs.blocks == len(tier) <= 300
    assert sum(b.data.numel() for b in tier._slabs._open.values()) == tier.bytes


def test_an_entry_over_the_budget_is_not_kept_and_a_worker_starts_empty():
    tier = MemoryTier(50)
    tier.put("big", _entry(1, size=51))
    assert tier.get("big") is None and tier.bytes == 0
    tier.put("small", _entry(1, size=10))
    worker = pickle.loads(pickle.dumps(tier))
    assert len(worker) == 0 and worker.max_bytes == 50
    with pytest.raises(ValueError, match=">= 0"):
        MemoryTier(-1)


def test_a_memory_hit_reads_no_file_and_is_still_counted(tmp_path):
    source = tmp_path / "a.bin"
    source.write_bytes(b"file")
    cache = SampleCache(tmp_path / "cache", memory_bytes=10_000)
    calls = []

    def compute(value):
        calls.append(value)
        return _entry(value)

    assert cache.load_or_compute(source, "fp", lambda: compute(3))["pixels"][0] == 3
    # Evicted from disk and from the index (a cap, another process): only memory can answer.
    assert cache.entries.evict(0, cache._remove) == 1
    assert not list((tmp_path / "cache").glob("??/*.safetensors"))
    again = cache.load_or_compute(source, "fp", lambda: compute(9))
    assert again["pixels"][0] == 3 and calls == [3]
    assert cache.counts() == (1, 1)
    # The hit does not put the evicted entry back on record: its bytes would count against
    # the cap for a file that is not there.
    assert cache.entries.total_bytes() == 0


def test_a_changed_file_is_not_served_from_memory(tmp_path):
    source = tmp_path / "a.bin"
    source.write_bytes(b"old!")
    os.utime(source, ns=(10**18, 10**18))
    cache = SampleCache(tmp_path / "cache", memory_bytes=10_000)
    cache.load_or_compute(source, "fp", lambda: _entry(1))
    source.write_bytes(b"new!")  # same size
    os.utime(source, ns=(10**18 + 1, 10**18 + 1))
    assert cache.load_or_compute(source, "fp", lambda: _entry(2))["pixels"][0] == 2


def test_a_symlink_pointed_at_another_file_is_hashed_again_in_the_same_process(tmp_path):
    one, two, link = tmp_path / "one.bin", tmp_path / "two.bin", tmp_path / "link.bin"
    one.write_bytes(b"aaaa")
    two.write_bytes(b"bbbb")  # same size and time: only the inode tells them apart
    for path in (one, two):
        os.utime(path, ns=(10**18, 10**18))
    link.symlink_to(one)
    index = FileIndex(tmp_path / INDEX_NAME)
    assert index.content_key(link) == content_hash(one)
    assert index.content_key(link) == content_hash(one) and index.hashed == 1  # remembered
    link.unlink()
    link.symlink_to(two)
    assert index.content_key(link) == content_hash(two)


def test_a_batch_records_its_hits_in_one_transaction_and_reads_the_same_samples(tmp_path):
    cohort = make_cohort(tmp_path / "data")
    prep = Preprocessor.fit(cohort)
    cache = SampleCache(tmp_path / "cache", memory_bytes=10**6)
    dataset = CohortDataset(cohort, prep, "train", cache=cache)
    first = [dataset[i] for i in range(len(dataset))]  # fills the cache (misses)
    transactions = []
    record = cache.entries.used_many
    cache.entries.used_many = lambda hits: transactions.append(len(hits)) or record(hits)
    batch = dataset.__getitems__(list(range(len(dataset))))
    files_per_row = 3  # an image, a volume and a series each
    assert transactions == [files_per_row * len(dataset)]
    assert cache.counts()[0] == files_per_row * len(dataset)
    for before, after in zip(first, batch, strict=True):
        for name, fields in before["inputs"].items():
            for field, value in fields.items():
                assert torch.equal(value, after["inputs"][name][field]), (name, field)


def test_the_run_config_shares_the_memory_budget_among_the_loader_workers(tmp_path):
    alone = sample_cache(TrainConfig(cache_memory_gb=0.5), tmp_path)
    workers = sample_cache(TrainConfig(cache_memory_gb=0.5, num_workers=2), tmp_path)
    assert alone.memory.max_bytes == 500_000_000 and workers.memory.max_bytes == 250_000_000
