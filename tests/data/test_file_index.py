"""Each file is hashed once (polymodal.data.file_index), and never trusted once it changed."""

from __future__ import annotations

import os
import pickle
import sqlite3

import torch

from polymodal.data.cache import SampleCache
from polymodal.data.file_index import INDEX_NAME, FileIndex, content_hash


def _write(path, data: bytes, mtime_ns: int) -> None:
    path.write_bytes(data)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def test_a_file_is_read_once_then_recalled_by_a_later_process(tmp_path):
    image = tmp_path / "a.jpg"
    _write(image, b"pixels", 10**18)
    first = FileIndex(tmp_path / INDEX_NAME)
    assert first.content_key(image) == content_hash(image)
    assert (first.hashed, first.recalled) == (1, 0)
    later = pickle.loads(pickle.dumps(first))  # as a loader worker or the next run gets it
    assert later.content_key(image) == content_hash(image)
    assert (later.hashed, later.recalled) == (0, 1)


def test_a_changed_file_is_never_served_from_the_old_entry(tmp_path):
    image = tmp_path / "a.jpg"
    _write(image, b"old bytes", 10**18)
    cache = SampleCache(tmp_path / "cache")

    def decode():
        return {"pixels": torch.tensor(list(image.read_bytes()), dtype=torch.uint8)}

    assert bytes(cache.load_or_compute(image, "fp", decode)["pixels"].tolist()) == b"old bytes"
    _write(image, b"new bytes!", 10**18 + 1)  # same name, new bytes, new mtime
    again = SampleCache(tmp_path / "cache")  # the next run, with the index on disk
    assert bytes(again.load_or_compute(image, "fp", decode)["pixels"].tolist()) == b"new bytes!"
    assert again.misses == 1 and again.files.hashed == 1


def test_same_size_new_mtime_is_hashed_again(tmp_path):
    image = tmp_path / "a.jpg"
    _write(image, b"aaaa", 10**18)
    index = FileIndex(tmp_path / INDEX_NAME)
    old = index.content_key(image)
    _write(image, b"bbbb", 10**18 + 5)
    assert FileIndex(tmp_path / INDEX_NAME).content_key(image) == content_hash(image) != old


def test_a_damaged_index_is_set_aside_and_rebuilt(tmp_path, caplog):
    image = tmp_path / "a.jpg"
    _write(image, b"pixels", 10**18)
    (tmp_path / INDEX_NAME).write_bytes(b"not a database" * 100)
    index = FileIndex(tmp_path / INDEX_NAME)
    assert index.content_key(image) == content_hash(image)
    assert index.hashed == 1
    assert "rebuilding" in caplog.text
    assert (tmp_path / f"{INDEX_NAME}.damaged").is_file()
    assert FileIndex(tmp_path / INDEX_NAME).content_key(image) == content_hash(image)


def test_a_row_that_is_not_a_hash_is_recomputed(tmp_path):
    image = tmp_path / "a.jpg"
    _write(image, b"pixels", 10**18)
    index = FileIndex(tmp_path / INDEX_NAME)
    index.content_key(image)
    with sqlite3.connect(tmp_path / INDEX_NAME) as db:
        db.execute("UPDATE files SET digest = 'garbage'")
    fresh = FileIndex(tmp_path / INDEX_NAME)
    assert fresh.content_key(image) == content_hash(image)
    assert fresh.hashed == 1


def test_a_series_folder_is_rehashed_when_a_member_changes(tmp_path):
    folder = tmp_path / "series"
    folder.mkdir()
    _write(folder / "1.dcm", b"slice one", 10**18)
    index = FileIndex(tmp_path / INDEX_NAME)
    before = index.content_key(folder)
    _write(folder / "1.dcm", b"slice 1!!", 10**18 + 1)
    assert FileIndex(tmp_path / INDEX_NAME).content_key(folder) == content_hash(folder) != before
