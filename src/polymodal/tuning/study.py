"""``polymodal tune``: search a run config with Optuna, in a study that a rerun continues.

Search folder layout (``OUT``)::

    OUT/
      study.db        the Optuna study (SQLite): every trial's values, per-epoch scores, state
      trials/NNN/     trial NNN's fit (polymodal.training.fit layout, without checkpoints/)
      cache/          the sample cache the trials share (unless train.cache_dir is set)
      best.yaml       the best trial's run config: polymodal fit SPEC -c OUT/best.yaml -o RUN
      tune.md         every trial: state, validation score, epochs, values, seconds

``trials`` counts the study's finished trials (complete, pruned or failed): rerunning the same
command after an interruption goes on to that number, and a larger number searches further.
Several processes given the same ``OUT`` share the study and split the trials (SQLite over a
network file system is not safe; use one machine). A trial of a process that died is marked
failed by the next run (Optuna's heartbeat).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polymodal.data.manifest import load_cohort
from polymodal.data.spec import CohortSpec
from polymodal.errors import PolymodalError
from polymodal.training.module import resolve_monitor
from polymodal.training.preflight import check_blocking
from polymodal.training.run_config import RunConfig
from polymodal.tuning.base_config import BaseConfig, dotted
from polymodal.tuning.defaults import default_space
from polymodal.tuning.objective import Objective
from polymodal.tuning.space import SearchSpace
from polymodal.tuning.summary import SearchSetup, write_summary


@dataclass
class TuneResult:
    """Where the search wrote, and its best trial so far."""

    folder: Path
    study_name: str
    monitor: str
    direction: str
    trials: int  # in the study, every state
    best_value: float | None = None
    best_params: dict[str, Any] = field(default_factory=dict)
    best_config: Path | None = None  # OUT/best.yaml once a trial has completed


@dataclass
class Search:
    """A search ready to run trials, whichever backend runs them: the study in ``OUT/study.db``,
    the objective every trial calls, and how many finished trials the study still lacks."""

    study: Any
    objective: Objective
    setup: SearchSetup
    out: Path
    trials: int  # the finished trials the study should hold
    remaining: int


def tune(
    spec: CohortSpec,
    out: Path,
    base: BaseConfig | None = None,
    *,
    trials: int,
    space: SearchSpace | None = None,
    space_source: str = "the --space file",
    study_name: str = "polymodal",
    timeout: float | None = None,
    seed: int = 0,
    pruner: Any = None,
    on_trial: Callable[[Any], None] | None = None,
) -> TuneResult:
    """Search ``space`` (default: :func:`polymodal.tuning.defaults.default_space` of the base
    config's core) until the study in ``OUT/study.db`` holds ``trials`` finished trials.

    Each trial fits the base config with its drawn values and is scored by its best epoch's
    validation metric (the base config's ``train.monitor``; its direction from the target
    kinds); ``pruner`` (default: Optuna's median pruner after 5 trials and 2 epochs) stops a
    trial early on the scores it reports per epoch. ``timeout`` (seconds) starts no new trial
    after that long. ``on_trial(frozen_trial)`` is called after each trial.

    Raises:
        PolymodalError: a space key the base config cannot take (before any fit), a blocking
            cohort problem, or a study in ``OUT`` that optimises another metric or has another
            name.
    """
    optuna = _optuna()
    search = prepare_search(
        spec,
        out,
        base,
        trials=trials,
        space=space,
        space_source=space_source,
        study_name=study_name,
        seed=seed,
        pruner=pruner,
    )
    if search.remaining > 0:

        def after_trial(study: Any, trial: Any) -> None:
            write_summary(study, search.out, search.setup)
            if on_trial is not None:
                on_trial(trial)

        search.study.optimize(
            search.objective,
            n_trials=search.remaining,
            timeout=timeout,
            catch=trial_failures(),
            callbacks=[
                optuna.study.MaxTrialsCallback(trials, states=finished_states()),
                after_trial,
            ],
            gc_after_trial=True,
        )
    return finish_search(search)


def prepare_search(
    spec: CohortSpec,
    out: Path,
    base: BaseConfig | None = None,
    *,
    trials: int,
    space: SearchSpace | None = None,
    space_source: str = "the --space file",
    study_name: str = "polymodal",
    seed: int = 0,
    pruner: Any = None,
) -> Search:
    """Check the space against the base config, load the cohort and open the study: everything
    a search does before its first trial (the arguments are :func:`tune`'s).

    Raises:
        PolymodalError: as :func:`tune`.
    """
    _optuna()
    if trials < 1:
        raise PolymodalError(f"--trials must be at least 1; got {trials}")
    base = base or BaseConfig()
    base_run = base.load()
    if space is None:
        space, files = default_space(base_run)
        space_source = " + ".join(f"{f.parent.name}/{f.name}" for f in files)
    base.check_space(space, space_source)
    monitor, direction = study_target(base_run, spec)
    cohort = load_cohort(spec)
    check_blocking(cohort)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    study = open_study(out, study_name, monitor, direction, seed=seed, pruner=pruner)
    setup = SearchSetup(spec.name, base, space_source, monitor, direction)
    done = len(study.get_trials(deepcopy=False, states=finished_states()))
    objective = Objective(spec, cohort, base, space, out, monitor, _shared_cache(base_run, out))
    return Search(study, objective, setup, out, trials, trials - done)


def finish_search(search: Search) -> TuneResult:
    """Write ``tune.md`` and ``best.yaml`` from the study as it now stands, and say where."""
    best_config = write_summary(search.study, search.out, search.setup)
    setup = search.setup
    return _result(search.study, search.out, setup.monitor, setup.direction, best_config)


def study_target(run: RunConfig, spec: CohortSpec) -> tuple[str, str]:
    """The validation metric a search on ``spec`` optimises and its direction
    (``"maximize"``/``"minimize"``): the metric ``fit`` would select epochs on."""
    kinds = {name: {"kind": target.kind} for name, target in spec.targets.items()}
    monitor, mode = resolve_monitor(run.train, kinds)
    return monitor, "maximize" if mode == "max" else "minimize"


def open_study(
    out: Path, study_name: str, monitor: str, direction: str, *, seed: int = 0, pruner: Any = None
) -> Any:
    """The study in ``OUT/study.db``, created or loaded, checked to optimise ``monitor``."""
    optuna = _optuna()
    with warnings.catch_warnings():
        # The heartbeat (a dead process's trial marked failed) is stable in use, "experimental"
        # in name.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        storage = optuna.storages.RDBStorage(
            study_url(out), heartbeat_interval=60, grace_period=180
        )
    names = optuna.get_all_study_names(storage)
    if names and study_name not in names:
        raise PolymodalError(
            f"{out / 'study.db'} holds study {names[0]!r}; pass --study-name {names[0]} to "
            "continue it, or another -o folder for a new search"
        )
    study = optuna.create_study(
        storage=storage,
        study_name=study_name,
        direction=direction,
        load_if_exists=True,
        pruner=pruner or optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=2),
    )
    searched = study.user_attrs.get("monitor")
    if searched is not None and searched != monitor:
        raise PolymodalError(
            f"{out / 'study.db'}: the study optimises {searched}; this run config selects on "
            f"{monitor}. Keep train.monitor as it was, or search into another -o folder"
        )
    study.set_user_attr("monitor", monitor)
    # A rerun must not draw again the random start-up values of the trials already run.
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials))
    return study


def study_url(out: Path) -> str:
    """The SQLAlchemy URL of ``OUT/study.db``."""
    return f"sqlite:///{(Path(out) / 'study.db').resolve()}"


def _shared_cache(run: RunConfig, out: Path) -> list[str]:
    """Every trial decodes the same files: one sample cache for all (not kept in best.yaml)."""
    if not run.train.cache or run.train.cache_dir is not None:
        return []
    return [dotted("train.cache_dir", str((out / "cache").resolve()))]


def _result(
    study: Any, out: Path, monitor: str, direction: str, best_config: Path | None
) -> TuneResult:
    result = TuneResult(out, study.study_name, monitor, direction, len(study.trials))
    if best_config is not None:
        best = study.best_trial
        result.best_value, result.best_params = best.value, dict(best.params)
        result.best_config = best_config
    return result


def finished_states() -> tuple[Any, ...]:
    """The trial states ``--trials`` counts: complete, pruned and failed."""
    state = _optuna().trial.TrialState
    return (state.COMPLETE, state.PRUNED, state.FAIL)


def trial_failures() -> tuple[type[BaseException], ...]:
    """Errors that fail one trial and let the search go on: values that give no valid run
    (reported by polymodal) and a model too large for the GPU."""
    import torch

    return (PolymodalError, torch.cuda.OutOfMemoryError)


def _optuna() -> Any:
    """The optuna module, or a message saying how to install it."""
    try:
        import optuna
    except ImportError:
        raise PolymodalError(
            "polymodal tune needs Optuna (the 'tune' extra): pip install 'polymodal[tune]'"
        ) from None
    return optuna
