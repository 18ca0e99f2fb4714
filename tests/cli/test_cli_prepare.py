"""``polymodal prepare adrenalmnist3d|iu-xray`` through the command line."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from polymodal.cli import app
from polymodal.errors import ReadError

runner = CliRunner()


@pytest.mark.shared_data
def test_prepare_adrenalmnist3d_with_progress(shared_data: Path, tmp_path: Path) -> None:
    source = shared_data / "adrenalmnist3d" / "adrenalmnist3d.npz"
    out = tmp_path / "adrenal"
    result = runner.invoke(
        app, ["prepare", "adrenalmnist3d", str(source), str(out), "--limit", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "train: wrote 3 volumes" in result.output
    assert f"next: polymodal validate {out / 'spec.yaml'}" in result.output
    assert len(pd.read_csv(out / "manifest.csv")) == 9


@pytest.mark.shared_data
def test_prepare_iu_xray_with_progress(shared_data: Path, tmp_path: Path) -> None:
    out = tmp_path / "iu"
    result = runner.invoke(
        app, ["prepare", "iu-xray", str(shared_data / "iu_xray"), str(out), "--limit", "25"]
    )
    assert result.exit_code == 0, result.output
    assert "read 7469 image headers" in result.output
    assert "left out 0 reports without a label" in result.output
    assert (out / "spec.yaml").is_file()


def test_prepare_bad_source_path_names_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "adrenalmnist3d.npz"
    result = runner.invoke(app, ["prepare", "adrenalmnist3d", str(missing), str(tmp_path / "o")])
    assert isinstance(result.exception, ReadError)
    assert str(result.exception).startswith(f"{missing}: file not found")
    result = runner.invoke(app, ["prepare", "iu-xray", str(tmp_path / "nope"), str(tmp_path / "o")])
    assert isinstance(result.exception, ReadError)
    assert "folder not found; give the folder that holds NLMCXR_reports.tgz" in str(
        result.exception
    )
    assert not (tmp_path / "o").exists()
