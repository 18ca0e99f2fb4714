"""Search space files: what a bad one is told, and the default space of each core."""

from __future__ import annotations

import sys
from pathlib import Path

import optuna
import pytest

from polymodal.cli import main
from polymodal.errors import SpecError
from polymodal.fusion import list_cores
from polymodal.tuning import BaseConfig, SearchSpace, default_space, load_space
from training.tabular_cohort import tabular_cohort


def write_space(folder: Path, text: str) -> Path:
    path = folder / "space.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "train.lr: {type: float, low: 1.0e-4, hihg: 1.0e-2}\n",
            r"space.yaml: not a valid search space:\n  train.lr: unknown field 'hihg'; "
            r"a parameter takes: type, low, high",
        ),
        (
            "train.lr: {type: float, low: 0.0, high: 1.0e-2, log: true}\n",
            r"train.lr: log: true needs low > 0",
        ),
        ("model.dim: {type: int, low: 64}\n", r"model.dim: type 'int' needs 'low' and 'high'"),
        ("model.dim: {type: categorical}\n", r"model.dim: a categorical parameter needs 'choices'"),
        ("model.dim: {type: integer, low: 8, high: 16}\n", r"model.dim.type: Input should be"),
        ("model.dim: {type: int, low: 16, high: 8}\n", r"model.dim: low \(16.0\) is above high"),
        ("- train.lr\n", r"expected a mapping of dotted run-config keys"),
    ],
)
def test_a_malformed_parameter_is_named_with_what_to_fix(
    tmp_path: Path, text: str, message: str
) -> None:
    with pytest.raises(SpecError, match=message):
        load_space(write_space(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "model.width: {type: int, low: 8, high: 16}\n",
            r"model.width = 8 is not a valid run config value: model.width: unknown key; "
            r"valid keys of model: core, dim",
        ),
        (
            "trian.lr: {type: float, low: 1.0e-4, high: 1.0e-2}\n",
            r"trian.lr = 0.0001 .*trian: unknown section; valid sections: model, train",
        ),
        (
            "model.core_options.num_latent: {type: int, low: 4, high: 8}\n",
            r"model.core_options.num_latent = 4 .*fusion core 'synergy' has no option "
            r"'num_latent'; it accepts: num_latents",
        ),
        (
            "model.modality_dropout: {type: float, low: 0.0, high: 1.0}\n",
            r"model.modality_dropout = 1.0 .*model.modality_dropout: Input should be less than 1",
        ),
        (
            "train.devices: {type: categorical, choices: [1, 2]}\n",
            r"train.devices = 2 .*polymodal tune fits every trial in one process on one device",
        ),
        (
            "distill.lambda_logit: {type: float, low: 0.1, high: 1.0}\n",
            r"distill.lambda_logit: the base run config has no 'distill' section",
        ),
    ],
)
def test_a_key_the_run_config_does_not_take_is_refused_by_name(
    tmp_path: Path, text: str, message: str
) -> None:
    space = load_space(write_space(tmp_path, text))
    with pytest.raises(SpecError, match=rf"^space.yaml: {message}"):
        BaseConfig(None, ("model.core=synergy",)).check_space(space, "space.yaml")


def test_the_cli_refuses_a_bad_space_file_with_exit_2_before_any_trial(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    space = write_space(tmp_path, "model.dimm: {type: categorical, choices: [8, 16]}\n")
    spec = tabular_cohort(tmp_path)
    out = tmp_path / "search"
    argv = ["polymodal", "tune", str(spec), "--trials", "1", "-o", str(out), "--space", str(space)]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as exit_info:
        main()
    printed = capsys.readouterr()
    assert exit_info.value.code == 2
    assert "model.dimm" in printed.err and "unknown key; valid keys of model" in printed.err
    assert "Traceback" not in printed.err + printed.out
    assert not (out / "study.db").exists()


@pytest.mark.parametrize("core", list_cores())
def test_every_cores_default_space_is_valid_for_a_config_of_that_core(core: str) -> None:
    base = BaseConfig(None, (f"model.core={core}",))
    space, files = default_space(base.load())
    base.check_space(space, str(files[0]))
    assert {"train.lr", "model.modality_dropout"} <= set(space.names())
    # Only the plugin sections the base config has are searched.
    assert not [k for k in space.names() if k.split(".")[0] not in ("model", "train")]


def test_the_default_space_follows_the_core_and_the_plugin_sections() -> None:
    synergy, _ = default_space(BaseConfig(None, ("model.core=synergy",)).load())
    assert "model.core_options.num_latents" in synergy.names()
    with_kd_gm = BaseConfig(
        None, ("model.core=bottleneck", "distill.teacher=teacher/model", "modulation={}")
    )
    space, files = default_space(with_kd_gm.load())
    with_kd_gm.check_space(space, str(files[0]))
    assert [f.name for f in files] == ["bottleneck.yaml", "plugins.yaml"]
    keys = set(space.names())
    assert {"model.core_options.num_bottlenecks", "model.core_options.depth"} <= keys
    assert {"distill.lambda_logit", "distill.lambda_feature", "modulation.alpha"} <= keys
    assert not any(k.startswith("intervention_loss.") for k in keys)


def test_values_on_a_grid_are_the_grid_points_a_run_config_would_hold() -> None:
    space = SearchSpace.model_validate(
        {"model.modality_dropout": {"type": "float", "low": 0.0, "high": 0.5, "step": 0.05}}
    )
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    drawn = {space.suggest(study.ask())["model.modality_dropout"] for _ in range(60)}
    assert drawn == {round(0.05 * k, 2) for k in range(11)}
