"""``polymodal adapt`` passes training plugin sections on to the run and refuses a model setting,
which the adaptation (keeping the trained model) would otherwise drop silently."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from polymodal.cli import main
from polymodal.model_folder import load_model_folder
from training.conftest import tiny_run
from training.test_adapt import new_task_spec


def run_main(monkeypatch: pytest.MonkeyPatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["polymodal", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err


@pytest.mark.parametrize("setting", ["model.dim=8", "model.core=concat"])
def test_a_model_setting_is_refused(
    setting: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    argv = ["adapt", str(tmp_path / "model"), str(tmp_path / "spec.yaml"), "-o", str(tmp_path)]
    code, output = run_main(monkeypatch, capsys, *argv, "--set", setting)
    assert code == 2 and "keeps the trained model's architecture" in output and setting in output


def test_a_model_section_of_the_config_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    config = tmp_path / "run.yaml"
    config.write_text("model: {dim: 8}\ntrain: {max_epochs: 1}\n")
    argv = ["adapt", str(tmp_path / "model"), str(tmp_path / "spec.yaml"), "-o", str(tmp_path)]
    code, output = run_main(monkeypatch, capsys, *argv, "--config", str(config))
    assert code == 2 and "leave the run config's model section out" in output


def test_a_plugin_section_reaches_the_adapted_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    base = tmp_path.parent.parent
    model_dir = tiny_run(base) / "model"
    spec = new_task_spec(base, tmp_path / "cohort")
    config = tmp_path / "run.yaml"
    config.write_text("train: {max_epochs: 1, batch_size: 16}\nema: {decay: 0.9}\n")
    out = tmp_path / "adapted"
    argv = ["adapt", str(model_dir), str(spec), "-o", str(out), "--config", str(config)]
    argv += ["--set", "train.early_stopping_patience=null", "--train", "head"]
    code, output = run_main(monkeypatch, capsys, *argv)
    assert code == 0, output
    record = json.loads((out / "run.json").read_text())
    assert record["ema"] == {"decay": 0.9}
    assert record["train"]["max_epochs"] == 1
    # The model is the trained one, whatever the config file's defaults would have built.
    assert record["model"]["core"] == load_model_folder(model_dir).config.core
    assert (out / "model" / "config.json").is_file()
