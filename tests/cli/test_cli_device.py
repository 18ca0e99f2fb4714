"""``--device`` on ``predict`` and ``evaluate`` reaches the Predictor; a bad one is a message."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from polymodal.cli import main
from polymodal.devices import resolve_device
from training.conftest import tiny_run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_run(tmp_path_factory.getbasetemp())


def _main(monkeypatch: pytest.MonkeyPatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["polymodal", *args])
    try:
        main()
        status = 0
    except SystemExit as exit_info:
        status = exit_info.code or 0
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def test_predict_and_evaluate_run_on_the_device_asked_for(
    run_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    from polymodal.predictor import Predictor

    devices = []
    original = Predictor.load.__func__

    def recording(cls, folder, **options):
        devices.append(options.get("device"))
        return original(cls, folder, **options)

    monkeypatch.setattr(Predictor, "load", classmethod(recording))
    spec_manifest = Predictor.load(run_dir / "model").loaded.spec.manifest_path
    rows = pd.read_csv(spec_manifest, dtype=str, keep_default_na=False).head(5)
    rows.to_csv(tmp_path / "rows.csv", index=False)
    devices.clear()
    out = tmp_path / "p.csv"
    status, output = _main(
        monkeypatch,
        capsys,
        "predict",
        str(run_dir / "model"),
        str(tmp_path / "rows.csv"),
        "--root",
        str(spec_manifest.parent),
        "--device",
        "cpu",
        "-o",
        str(out),
    )
    assert status == 0, output
    assert len(pd.read_csv(out)) == 5
    status, output = _main(
        monkeypatch,
        capsys,
        "evaluate",
        str(run_dir / "model"),
        "--split",
        "val",
        "--n-boot",
        "5",
        "--no-subsets",
        "--no-keep-predictions",
    )
    assert status == 0, output
    # predict asked for the CPU; evaluate was left at auto
    assert devices == [torch.device("cpu"), resolve_device("auto")]


@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_a_device_that_is_not_there_is_a_message_and_exit_2(
    command: str, run_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    args = [command, str(run_dir / "model"), "--device", "tpu"]
    if command == "predict":
        args.insert(2, str(run_dir / "model" / "missing.csv"))
    status, output = _main(monkeypatch, capsys, *args)
    assert status == 2 and "--device 'tpu' is not a device" in output
    assert "Traceback" not in output
