"""``polymodal tune --backend ray`` on a tiny tabular cohort: Ray Tune trials recorded in the
same study as the Optuna backend's, a best.yaml that ``polymodal fit`` trains, pruning by Ray's
scheduler, scores that come from the validation split only, and the messages for a missing
extra and a cluster that does not answer.

The trials run on a local Ray of 2 CPUs started once for the module (no dashboard, worker
output kept in its logs)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import optuna
import pandas as pd
import pytest
from typer.testing import CliRunner

from polymodal.cli import app, main
from polymodal.data.spec import load_spec
from polymodal.tuning import BaseConfig, load_space
from polymodal.tuning.ray_backend import RayOptions, tune_with_ray
from training.tabular_cohort import TABULAR_MODEL, make_scrambled_test_cohort, make_tabular_cohort

runner = CliRunner()
BASE = (*TABULAR_MODEL, "train.max_epochs=2")
SPACE = (
    "train.lr: {type: float, low: 1.0e-3, high: 3.0e-2, log: true}\n"
    "model.dim: {type: categorical, choices: [8, 16]}\n"
)
MONITOR = "val/grade/auroc_macro"  # the first target's (multiclass) headline metric
NEEDS_RAY = "Ray Tune is not installed (the 'ray' extra)"


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tabular_cohort(tmp_path_factory.mktemp("ray_tune") / "cohort")


@pytest.fixture(scope="module")
def space_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("space") / "space.yaml"
    path.write_text(SPACE)
    return path


@pytest.fixture(scope="module")
def local_ray() -> Iterator[None]:
    ray = pytest.importorskip("ray", reason=NEEDS_RAY)
    pytest.importorskip("ray.tune", reason=NEEDS_RAY)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def search(
    local_ray: None, cohort: Path, space_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A 2-trial search, both trials at once, run through the command line (read-only).

    Its folder is given relative to the current folder, which a Ray trial is not in (Ray starts
    each in a folder of its own)."""
    folder = tmp_path_factory.mktemp("search")
    sets = [arg for item in BASE for arg in ("--set", item)]
    args = ["tune", str(cohort), "--trials", "2", "-o", "out", "--space", str(space_file)]
    ray_args = ["--backend", "ray", "--trials-at-once", "2", "--cpus-per-trial", "1"]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(folder)
        result = runner.invoke(app, [*args, *ray_args, *sets])
    assert result.exit_code == 0, result.output
    assert "trial 0: complete" in result.output and "trial 1: complete" in result.output
    assert f"best {MONITOR} = " in result.output
    return folder / "out"


def load(out: Path) -> optuna.Study:
    return optuna.load_study(study_name="polymodal", storage=f"sqlite:///{out / 'study.db'}")


def run_main(monkeypatch: pytest.MonkeyPatch, capsys, *args: str) -> tuple[int, str]:
    monkeypatch.setattr(sys, "argv", ["polymodal", *args])
    with pytest.raises(SystemExit) as exit_info:
        main()
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out + captured.err


def test_without_ray_the_ray_backend_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    monkeypatch.setitem(sys.modules, "ray.tune", None)
    out = tmp_path / "out"
    code, output = run_main(
        monkeypatch, capsys, "tune", str(tmp_path / "spec.yaml"), "-n", "2", "-o", str(out),
        "--backend", "ray",
    )  # fmt: skip
    assert code == 2
    assert "needs Ray Tune (the 'ray' extra): pip install 'polymodal[ray]'" in output
    assert "Traceback" not in output and not out.exists()


def test_a_cluster_that_does_not_answer_is_one_message(
    cohort: Path, space_file: Path, monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    ray = pytest.importorskip("ray", reason=NEEDS_RAY)
    if ray.is_initialized():  # a Ray already running in this process is used as it is
        pytest.skip("this test process already runs Ray")
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    sets = [arg for item in BASE for arg in ("--set", item)]
    code, output = run_main(
        monkeypatch, capsys, "tune", str(cohort), "-n", "1", "-o", str(tmp_path / "out"),
        "--space", str(space_file), "--backend", "ray", "--ray-address", "auto", *sets,
    )  # fmt: skip
    assert code == 2
    assert "--ray-address auto: no Ray cluster answers there" in output
    assert "ray start --head" in output and "Traceback" not in output


def test_ray_options_without_the_ray_backend_are_refused(
    monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    code, output = run_main(
        monkeypatch, capsys, "tune", str(tmp_path / "spec.yaml"), "-n", "2",
        "-o", str(tmp_path / "out"), "--trials-at-once", "2",
    )  # fmt: skip
    assert code == 2 and "--trials-at-once: only with --backend ray" in output


def test_ray_trials_are_recorded_in_the_study_and_the_best_config_trains(
    search: Path, cohort: Path, monkeypatch: pytest.MonkeyPatch, capsys, tmp_path: Path
) -> None:
    study = load(search)
    assert [t.state for t in study.trials] == [optuna.trial.TrialState.COMPLETE] * 2
    assert study.user_attrs["monitor"] == MONITOR
    for trial in study.trials:
        folder = search / "trials" / f"{trial.number:03d}"
        assert trial.user_attrs["folder"] == f"trials/{trial.number:03d}"
        assert (folder / "model" / "model.safetensors").is_file()
        assert not (folder / "checkpoints").exists()
        # Scored like an Optuna trial: every epoch's validation value, the best one kept.
        metrics = pd.read_csv(folder / "logs" / "metrics.csv")
        per_epoch = metrics.dropna(subset=[MONITOR]).set_index("epoch")[MONITOR]
        assert trial.intermediate_values == pytest.approx(per_epoch.to_dict())
        assert trial.value == pytest.approx(per_epoch.max())
    assert (search / "tune.md").read_text().count("| complete |") == 2

    best = study.best_trial
    text = (search / "best.yaml").read_text()
    assert f"# polymodal tune: trial {best.number} of study 'polymodal'" in text
    run = tmp_path / "refit"
    code, output = run_main(
        monkeypatch, capsys, "fit", str(cohort), "-c", str(search / "best.yaml"), "-o", str(run)
    )
    assert code in (0, None), output
    metrics = pd.read_csv(run / "logs" / "metrics.csv")
    # The same config and seed train the same model: best.yaml is the best trial's run.
    assert metrics[MONITOR].max() == pytest.approx(best.value, abs=1e-6)


def test_a_trial_rays_scheduler_stops_is_pruned_and_a_rerun_continues_the_study(
    local_ray: None, cohort: Path, space_file: Path, tmp_path: Path
) -> None:
    from ray.tune.schedulers import FIFOScheduler, TrialScheduler

    class StopAfterFirstEpoch(FIFOScheduler):
        def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
            return TrialScheduler.STOP if "epoch" in result else TrialScheduler.CONTINUE

    out = tmp_path / "out"
    result = tune_with_ray(
        load_spec(cohort), out, BaseConfig(None, BASE), trials=1,
        space=load_space(space_file), scheduler=StopAfterFirstEpoch(),
    )  # fmt: skip
    (trial,) = load(out).trials
    assert trial.state == optuna.trial.TrialState.PRUNED
    metrics = pd.read_csv(out / "trials" / "000" / "logs" / "metrics.csv")
    # The epoch the scheduler stopped on is in the study, as Optuna's pruner records it.
    assert trial.intermediate_values == {0: pytest.approx(metrics[MONITOR].dropna().iloc[0])}
    assert "| 0 | pruned |" in (out / "tune.md").read_text()
    assert result.best_config is None and not (out / "best.yaml").exists()

    # Rerun with a larger --trials: the study goes on from where it stood (trial 1 is new).
    result = tune_with_ray(
        load_spec(cohort), out, BaseConfig(None, BASE), trials=2, space=load_space(space_file)
    )
    first, second = load(out).trials
    assert (first.state, first.intermediate_values) == (trial.state, trial.intermediate_values)
    assert second.state == optuna.trial.TrialState.COMPLETE and second.params != trial.params
    assert result.best_config == out / "best.yaml" and (out / "trials" / "001" / "model").is_dir()


def test_the_test_split_does_not_change_a_ray_trials_score(
    search: Path, space_file: Path, tmp_path: Path
) -> None:
    # Every test row's inputs and labels scrambled: the first trial (same seed, same values)
    # must score exactly as on the original cohort.
    spec_path = make_scrambled_test_cohort(tmp_path / "cohort")
    out = tmp_path / "out"
    space = load_space(space_file)
    options = RayOptions(trials_at_once=1)
    tune_with_ray(load_spec(spec_path), out, BaseConfig(None, BASE), trials=1, space=space,
                  options=options)  # fmt: skip
    (scrambled,) = load(out).trials
    original = load(search).trials[0]
    assert scrambled.params == original.params
    assert scrambled.value == pytest.approx(original.value, abs=1e-6)
