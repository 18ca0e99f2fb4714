"""``--cache-dir`` on ``predict`` and ``evaluate``: decoded files are kept and read again."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest

from polymodal.cli import main
from polymodal.data.cache import SampleCache
from training.conftest import tiny_cohort, tiny_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory.getbasetemp())


def _main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["polymodal", *args])
    try:
        main()
    except SystemExit as exit_info:
        return int(exit_info.code or 0)
    return 0


def test_predict_keeps_decoded_files_and_predicts_the_same_from_them(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    manifest = tiny_cohort(tmp_path.parents[1]).parent / "manifest.csv"
    cache = tmp_path / "cache"
    outputs = []
    for name in ("first.csv", "second.csv"):
        args = ["predict", str(run_dir / "model"), str(manifest), "-o", str(tmp_path / name)]
        assert _main(monkeypatch, *args, "--cache-dir", str(cache), "--device", "cpu") == 0
        outputs.append(pd.read_csv(tmp_path / name))
        hits, misses = SampleCache(cache).counts()
        # The first run decodes every file; the second reads every one of them back.
        assert (hits, misses > 0) == ((0, True) if name == "first.csv" else (misses, True))
    pd.testing.assert_frame_equal(outputs[0], outputs[1])


def test_evaluate_reads_the_same_cache(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    args = ["evaluate", str(run_dir / "model"), "--n-boot", "20", "--no-subsets"]
    json_out = ["--json", str(tmp_path / "eval.json"), "--cache-dir", str(cache)]
    assert _main(monkeypatch, *args, *json_out) == 0
    assert any(p.is_file() for p in cache.rglob("*"))
