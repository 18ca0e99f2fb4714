"""``polymodal tune`` on a tiny tabular cohort: the study, the trials, best.yaml, a rerun that
continues the study, pruning, and scores that come from the validation split only."""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pandas as pd
import pytest
from typer.testing import CliRunner

from polymodal.cli import app
from polymodal.data.spec import load_spec
from polymodal.errors import PolymodalError
from polymodal.training.fit import fit
from polymodal.training.run_config import load_run_config
from polymodal.tuning import BaseConfig, load_space, study_target, tune
from training.tabular_cohort import TABULAR_MODEL, make_scrambled_test_cohort, make_tabular_cohort

runner = CliRunner()
BASE = (*TABULAR_MODEL, "train.max_epochs=2")
SPACE = (
    "train.lr: {type: float, low: 1.0e-3, high: 3.0e-2, log: true}\n"
    "model.dim: {type: categorical, choices: [8, 16]}\n"
)
MONITOR = "val/grade/auroc_macro"  # the first target's (multiclass) headline metric


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tabular_cohort(tmp_path_factory.mktemp("tune") / "cohort")


@pytest.fixture(scope="module")
def space_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("space") / "space.yaml"
    path.write_text(SPACE)
    return path


@pytest.fixture(scope="module")
def search(cohort: Path, space_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-trial search run through the command line (read-only for the tests)."""
    out = tmp_path_factory.mktemp("search") / "out"
    sets = [arg for item in BASE for arg in ("--set", item)]
    args = ["tune", str(cohort), "--trials", "2", "-o", str(out), "--space", str(space_file)]
    result = runner.invoke(app, [*args, *sets])
    assert result.exit_code == 0, result.output
    assert "trial 0: complete" in result.output and "trial 1: complete" in result.output
    assert f"best {MONITOR} = " in result.output
    return out


def load(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="polymodal", storage=f"sqlite:///{out / 'study.db'}")


def test_a_search_writes_its_trials_and_a_best_config_that_fits_to_the_same_score(
    search: Path, cohort: Path, tmp_path: Path
) -> None:
    study = load(search)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    for trial in study.trials:
        folder = search / "trials" / f"{trial.number:03d}"
        assert (folder / "model" / "model.safetensors").is_file()
        assert not (folder / "checkpoints").exists()
    table = (search / "tune.md").read_text()
    assert "| trial | state | val/grade/auroc_macro | epochs | train.lr | model.dim |" in table
    assert table.count("| complete |") == 2

    best = study.best_trial
    run = load_run_config(search / "best.yaml")
    assert run.model.dim == best.params["model.dim"]
    assert run.train.lr == pytest.approx(best.params["train.lr"])
    assert run.train.max_epochs == 2 and run.model.core == "concat"
    # The same config and seed train the same model: best.yaml is the best trial's run.
    result = fit(load_spec(cohort), tmp_path / "refit", run, progress=False)
    assert result.monitor == MONITOR
    assert result.best_score == pytest.approx(best.value, abs=1e-6)


def test_rerunning_the_command_continues_the_same_study(
    search: Path, cohort: Path, space_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    shutil.copytree(search, out)
    before = load(out).trials
    spec, space = load_spec(cohort), load_space(space_file)
    result = tune(spec, out, BaseConfig(None, BASE), trials=3, space=space)
    after = load(out).trials
    assert result.trials == 3 and len(after) == 3
    assert [(t.params, t.value) for t in after[:2]] == [(t.params, t.value) for t in before]
    assert (out / "trials" / "002" / "model").is_dir()
    assert (out / "tune.md").read_text().count("| complete |") == 3
    # The study already holds 3 finished trials: nothing more to run.
    assert tune(spec, out, BaseConfig(None, BASE), trials=3, space=space).trials == 3
    with pytest.raises(PolymodalError, match=f"the study optimises {MONITOR}; .* val/loss"):
        tune(spec, out, BaseConfig(None, (*BASE, "train.monitor=val/loss")), trials=4, space=space)
    with pytest.raises(
        PolymodalError, match="holds study 'polymodal'; pass --study-name polymodal"
    ):
        tune(spec, out, BaseConfig(None, BASE), trials=4, space=space, study_name="another")


def test_a_trial_the_pruner_stops_is_recorded_as_pruned(
    cohort: Path, space_file: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    # AUROC never reaches 2: the threshold pruner stops the trial after its first epoch.
    pruner = optuna.pruners.ThresholdPruner(lower=2.0)
    space = load_space(space_file)
    result = tune(
        load_spec(cohort), out, BaseConfig(None, BASE), trials=1, space=space, pruner=pruner
    )
    (trial,) = load(out).trials
    assert trial.state == optuna.trial.TrialState.PRUNED
    metrics = pd.read_csv(out / "trials" / "000" / "logs" / "metrics.csv")
    first_epoch = metrics[MONITOR].dropna().iloc[0]
    assert trial.intermediate_values == {0: pytest.approx(first_epoch)}
    assert not (out / "trials" / "000" / "model").exists()
    assert "| 0 | pruned |" in (out / "tune.md").read_text()
    assert result.best_config is None and not (out / "best.yaml").exists()


def test_a_trial_whose_values_build_no_model_fails_with_why_and_the_search_goes_on(
    cohort: Path, tmp_path: Path
) -> None:
    # A pooling name the bottleneck core refuses only when it is built.
    space_file = tmp_path / "space.yaml"
    space_file.write_text("model.core_options.pooling: {type: categorical, choices: [median]}\n")
    base = BaseConfig(None, (*BASE, "model.core=bottleneck"))
    out = tmp_path / "out"
    result = tune(load_spec(cohort), out, base, trials=2, space=load_space(space_file))
    trials = load(out).trials
    assert [t.state for t in trials] == [optuna.trial.TrialState.FAIL] * 2
    assert "pooling='median' is not one of" in trials[1].user_attrs["error"]
    assert (out / "tune.md").read_text().count("| fail |") == 2
    assert result.best_config is None and not (out / "best.yaml").exists()


def test_trials_are_scored_on_the_validation_metric_of_each_epoch(search: Path) -> None:
    study = load(search)
    assert study.user_attrs["monitor"] == MONITOR
    for trial in study.trials:
        metrics = pd.read_csv(search / "trials" / f"{trial.number:03d}" / "logs" / "metrics.csv")
        per_epoch = metrics.dropna(subset=[MONITOR]).set_index("epoch")[MONITOR]
        assert trial.intermediate_values == pytest.approx(per_epoch.to_dict())
        assert trial.value == pytest.approx(per_epoch.max())


def test_the_test_split_does_not_change_a_trials_score(
    search: Path, space_file: Path, tmp_path: Path
) -> None:
    # Every test row's inputs and labels scrambled: the first trial (same seed, same values)
    # must score exactly as on the original cohort.
    spec_path = make_scrambled_test_cohort(tmp_path / "cohort")
    out = tmp_path / "out"
    space = load_space(space_file)
    tune(load_spec(spec_path), out, BaseConfig(None, BASE), trials=1, space=space)
    (scrambled,) = load(out).trials
    original = load(search).trials[0]
    assert scrambled.params == original.params
    assert scrambled.value == pytest.approx(original.value, abs=1e-6)


@pytest.mark.parametrize(
    ("monitor", "expected"),
    [
        ("auto", (MONITOR, "maximize")),
        ("val/loss", ("val/loss", "minimize")),
        ("val/value/rmse", ("val/value/rmse", "minimize")),
        ("val/outcome/auprc", ("val/outcome/auprc", "maximize")),
    ],
)
def test_the_direction_follows_the_monitored_metric(
    cohort: Path, monitor: str, expected: tuple[str, str]
) -> None:
    run = load_run_config(None, [f"train.monitor={monitor}"])
    assert study_target(run, load_spec(cohort)) == expected
