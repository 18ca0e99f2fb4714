"""``polymodal demo-data`` through the command line."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from polymodal.cli import app, main
from polymodal.data.spec import load_spec
from polymodal.errors import PolymodalError

runner = CliRunner()


def test_demo_data_writes_a_cohort_and_prints_the_spec(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo-data", str(out), "--n", "20", "--seed", "2"])
    assert result.exit_code == 0, result.output
    assert f"cohort spec: {out / 'spec.yaml'}" in result.output
    assert load_spec(out / "spec.yaml").name == "polymodal-demo"
    assert len((out / "manifest.csv").read_text().splitlines()) == 21


def test_demo_data_refuses_a_foreign_folder_unless_forced(tmp_path: Path) -> None:
    (tmp_path / "results.csv").write_text("mine")
    result = runner.invoke(app, ["demo-data", str(tmp_path), "--n", "20"])
    assert isinstance(result.exception, PolymodalError)
    assert "not empty" in str(result.exception) and "--force" in str(result.exception)
    assert not (tmp_path / "manifest.csv").exists()
    forced = runner.invoke(app, ["demo-data", str(tmp_path), "--n", "20", "--force"])
    assert forced.exit_code == 0, forced.output
    assert (tmp_path / "results.csv").read_text() == "mine"


def test_bad_input_is_a_message_and_exit_status_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["polymodal", "demo-data", str(tmp_path / "demo"), "--label-noise", "1.5"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    stderr = capsys.readouterr().err
    assert "label_noise must be in [0, 1) (got 1.5)" in stderr
    assert "Traceback" not in stderr


def test_an_error_message_keeps_brackets_from_the_users_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A message quoting an id or a path like 'scan[red]' prints it as written, not as markup."""
    missing = tmp_path / "scan[red]" / "spec.yaml"
    monkeypatch.setattr(sys, "argv", ["polymodal", "validate", str(missing)])
    with pytest.raises(SystemExit) as exit_info:
        main()
    assert exit_info.value.code == 2
    assert "scan[red]" in capsys.readouterr().err
