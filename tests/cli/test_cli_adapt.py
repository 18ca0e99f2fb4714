"""``polymodal adapt`` refuses settings it would not use instead of dropping them silently."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from polymodal.cli import main


def run_main(monkeypatch: pytest.MonkeyPatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["polymodal", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err


@pytest.mark.parametrize("setting", ["ema.decay=0.9", "distill.teacher=t", "model.dim=8"])
def test_a_setting_adapt_does_not_use_is_refused(
    setting: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    argv = ["adapt", str(tmp_path / "model"), str(tmp_path / "spec.yaml"), "-o", str(tmp_path)]
    code, output = run_main(monkeypatch, capsys, *argv, "--set", setting)
    assert code == 2 and "--set accepts train.* only" in output and setting in output


def test_a_plugin_section_of_the_config_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("train: {max_epochs: 1}\nmodulation: {alpha: 0.3}\n")
    argv = ["adapt", str(tmp_path / "model"), str(tmp_path / "spec.yaml"), "-o", str(tmp_path)]
    code, output = run_main(monkeypatch, capsys, *argv, "--config", str(config))
    assert code == 2 and "runs no training plugin" in output and "modulation" in output
