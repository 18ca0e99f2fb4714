"""Files named by URLs (object storage), read through fsspec: here its in-memory file system.

A URL cohort must give the very samples a local cohort with the same files gives; a URL is
read only where the spec allows it; the sample cache keys a URL by the object's version.
"""

from __future__ import annotations

import http.server
import importlib.util
import os
import threading
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pytest
import torch
from tiny_files import write_dicom_series, write_png, write_table

from polymodal.data.cache import SampleCache
from polymodal.data.dataset import CohortDataset
from polymodal.data.manifest import load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.readers import read_text, read_volume
from polymodal.data.remote import MissingProtocol, RemoteFile
from polymodal.data.spec import VolumeModality, parse_spec
from polymodal.errors import ReadError, SpecError
from polymodal.validation.validate import validate_cohort

ROWS = 6


@pytest.fixture
def bucket():
    """A fresh folder of fsspec's memory file system, ``memory://<name>``; removed afterwards."""
    name = f"pm-{uuid.uuid4().hex[:8]}"
    yield name
    fs = fsspec.filesystem("memory")
    if fs.exists(f"/{name}"):
        fs.rm(f"/{name}", recursive=True)


def _files(root: Path) -> None:
    """An image, a report and a vital-signs series per row under ``root``."""
    rng = np.random.default_rng(0)
    for i in range(ROWS):
        write_png(root / f"img{i}.png", rng.integers(0, 255, (10, 12), dtype=np.uint8))
        (root / f"note{i}.txt").write_text(f"report {i} mild effusion" if i % 2 else "clear lungs")
        (root / f"hr{i}.csv").write_text(f"t,hr\n0,{60 + i}\n1,{70 + i}\n3,{65 + i}\n")


def _cohort(folder: Path, template: str | None, **spec_changes):
    """The same manifest read with files at ``template`` (None: beside the manifest)."""
    write_table(
        folder / "manifest.csv",
        {
            "id": [f"s{i}" for i in range(ROWS)],
            "split": ["train"] * 4 + ["val"] * 2,
            "y": [str(i % 2) for i in range(ROWS)],
            "img": [f"img{i}.png" for i in range(ROWS)],
            "note": [f"note{i}.txt" for i in range(ROWS)],
            "hr": [f"hr{i}.csv" for i in range(ROWS)],
        },
    )
    template_field = {} if template is None else {"path_template": template}
    spec = parse_spec(
        {
            "manifest": "manifest.csv",
            "id_column": "id",
            "split": {"column": "split"},
            "targets": {"y": {"kind": "binary", "column": "y", "positive": "1"}},
            "modalities": {
                "xray": {"kind": "image", "columns": ["img"], "size": [8, 8], "channels": 1}
                | template_field,
                "report": {"kind": "text", "column": "note", "source": "file", "min_count": 1}
                | template_field,
                "vitals": {"kind": "series", "column": "hr", "time_column": "t", "channels": ["hr"]}
                | template_field,
            },
            **spec_changes,
        },
        base_dir=folder,
    )
    return load_cohort(spec)


def _upload(local: Path, bucket: str) -> None:
    fs = fsspec.filesystem("memory")
    for file in local.iterdir():
        if file.name != "manifest.csv":
            fs.pipe(f"/{bucket}/{file.name}", file.read_bytes())


def _samples(cohort, cache=None):
    prep = Preprocessor.fit(cohort)
    dataset = CohortDataset(cohort, prep, None, cache=cache, on_error="fail")
    return [dataset[i] for i in range(len(dataset))], dataset


def test_memory_urls_give_the_local_files_samples_and_are_cached(tmp_path, bucket):
    local = tmp_path / "local"
    _files(local)
    _upload(local, bucket)
    (tmp_path / "remote").mkdir()
    remote = _cohort(
        tmp_path / "remote", f"memory://{bucket}/{{}}", url_prefixes=[f"memory://{bucket}/"]
    )
    expected, _ = _samples(_cohort(local, None))
    cache = SampleCache(tmp_path / "cache")
    got, dataset = _samples(remote, cache)
    for want, have in zip(expected, got, strict=True):
        assert have["available"] == {"xray": True, "report": True, "vitals": True}
        for modality, fields in want["inputs"].items():
            for name, tensor in fields.items():
                assert torch.equal(have["inputs"][modality][name], tensor), (modality, name)
    hits_before, misses = cache.counts()
    assert misses == 2 * ROWS  # images and series go through the cache (text is tokenised)
    again = [dataset[i] for i in range(ROWS)]
    assert cache.counts() == (hits_before + 2 * ROWS, misses)  # read again: every one a hit
    assert torch.equal(again[0]["inputs"]["xray"]["pixels"], got[0]["inputs"]["xray"]["pixels"])


def test_rewritten_object_gets_a_new_cache_key(tmp_path, bucket):
    fs = fsspec.filesystem("memory")
    fs.pipe(f"/{bucket}/a.csv", b"t,hr\n0,60\n")
    remote = RemoteFile(f"memory://{bucket}/a.csv")
    before = SampleCache(tmp_path / "cache").key(remote, "fp")
    assert SampleCache(tmp_path / "cache").key(remote, "fp") == before  # unchanged: a hit
    fs.pipe(f"/{bucket}/a.csv", b"t,hr\n0,61\n")
    # The next run (or loader worker) misses the old entry.
    assert SampleCache(tmp_path / "cache").key(remote, "fp") != before


def test_url_refused_without_permission_names_the_spec_fields(tmp_path, bucket):
    local = tmp_path / "local"
    _files(local)
    _upload(local, bucket)
    (tmp_path / "remote").mkdir()
    cohort = _cohort(tmp_path / "remote", f"memory://{bucket}/{{}}")
    with pytest.raises(ReadError, match=r"allow_urls: true.*url_prefixes"):
        cohort.resolve_path("img0.png", f"memory://{bucket}/{{}}")
    report = validate_cohort(cohort, on_error="skip-modality")
    reasons = " ".join(str(problem) for problem in report.problems)
    assert "allow_urls" in reasons and f"memory://{bucket}/img0.png" in reasons


@pytest.mark.parametrize(
    "url",
    [
        "memory://{b}-other/img0.png",  # a longer name that starts like the prefix
        "memory://{b}/../elsewhere/secret.txt",  # climbs out of it
        "memory://another/img0.png",
    ],
)
def test_url_outside_the_listed_prefixes_is_refused(tmp_path, bucket, url):
    (tmp_path / "remote").mkdir()
    cohort = _cohort(tmp_path / "remote", None, url_prefixes=[f"memory://{bucket}"])
    with pytest.raises(ReadError, match="url_prefixes"):
        cohort.resolve_path(url.format(b=bucket))
    assert isinstance(cohort.resolve_path(f"memory://{bucket}/img0.png"), RemoteFile)


def test_missing_object_is_a_read_error_naming_the_url(tmp_path, bucket):
    (tmp_path / "remote").mkdir()
    cohort = _cohort(tmp_path / "remote", f"memory://{bucket}/{{}}", allow_urls=True)
    report = validate_cohort(cohort, on_error="skip-modality")
    reasons = " ".join(str(problem) for problem in report.problems)
    assert f"memory://{bucket}/img0.png" in reasons and "file not found" in reasons


def test_missing_protocol_package_is_named(tmp_path):
    fsspec.register_implementation(
        "pmtestproto", "pm_absent_package.FileSystem", clobber=True, errtxt="install it"
    )
    (tmp_path / "remote").mkdir()
    cohort = _cohort(tmp_path / "remote", None, allow_urls=True)
    with pytest.raises(MissingProtocol, match=r"pip install pm_absent_package"):
        cohort.resolve_path("pmtestproto://bucket/img0.png")
    with pytest.raises(SpecError, match="unknown URL protocol 'nosuchproto'"):
        cohort.resolve_path("nosuchproto://bucket/img0.png")


@pytest.mark.skipif(importlib.util.find_spec("s3fs") is not None, reason="s3fs is installed")
def test_s3_without_s3fs_says_to_install_it(tmp_path):
    (tmp_path / "remote").mkdir()
    cohort = _cohort(tmp_path / "remote", None, allow_urls=True)
    with pytest.raises(MissingProtocol, match=r"pip install s3fs"):
        cohort.resolve_path("s3://bucket/img0.png")


def test_url_prefixes_must_be_urls(tmp_path):
    (tmp_path / "remote").mkdir()
    with pytest.raises(SpecError, match="url_prefixes: 'images/' is not a URL prefix"):
        _cohort(tmp_path / "remote", None, url_prefixes=["images/"])


def test_dicom_series_folder_url_reads_as_the_local_folder(tmp_path, bucket):
    folder = write_dicom_series(tmp_path / "series1")
    fs = fsspec.filesystem("memory")
    for file in folder.iterdir():
        fs.pipe(f"/{bucket}/series1/{file.name}", file.read_bytes())
    cfg = VolumeModality(kind="volume", column="ct")
    voxels, spacing = read_volume(RemoteFile(f"memory://{bucket}/series1"), cfg)
    local_voxels, local_spacing = read_volume(folder, cfg)
    assert np.array_equal(voxels, local_voxels) and spacing == local_spacing


def test_file_url_is_read_when_listed(tmp_path):
    notes = tmp_path / "elsewhere"
    notes.mkdir()
    (notes / "n.txt").write_text("pleural effusion noted")
    (tmp_path / "remote").mkdir()
    cohort = _cohort(tmp_path / "remote", None, url_prefixes=[notes.as_uri() + "/"])
    cfg = cohort.spec.modalities["report"]
    assert (
        read_text((notes / "n.txt").as_uri(), cfg, cohort.resolve_path) == "pleural effusion noted"
    )
    with pytest.raises(ReadError, match="file not found"):
        read_text((notes / "missing.txt").as_uri(), cfg, cohort.resolve_path)


@pytest.fixture
def web_folder(tmp_path):
    """``(folder, base URL)``: a local HTTP server (fsspec's HTTP file system, as for https://)."""
    folder = tmp_path / "site"
    folder.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(folder), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()


@pytest.mark.skipif(importlib.util.find_spec("aiohttp") is None, reason="needs aiohttp")
def test_http_url_is_read_and_keyed_by_size_and_modification_time(tmp_path, web_folder):
    folder, base = web_folder
    (folder / "n.txt").write_text("consolidation in the left lower lobe")
    (tmp_path / "remote").mkdir()
    cohort = _cohort(tmp_path / "remote", None, url_prefixes=[base + "/"])
    cfg = cohort.spec.modalities["report"]
    text = read_text(f"{base}/n.txt", cfg, cohort.resolve_path)
    assert text == "consolidation in the left lower lobe"
    remote = RemoteFile(f"{base}/n.txt")
    first = remote.content_key()
    assert remote.content_key() == first
    # The key comes from the server's Content-Length and Last-Modified (no download): a new
    # modification time is a new version even with the same bytes.
    os.utime(folder / "n.txt", (2_000_000_000, 2_000_000_000))
    assert remote.content_key() != first
