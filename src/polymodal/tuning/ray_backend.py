"""``polymodal tune --backend ray``: the same search, its trials spread over a Ray cluster.

What a search is stays :mod:`polymodal.tuning.study`'s: the space, the study in
``OUT/study.db`` (its TPE sampler draws every trial's values, through Ray's ``OptunaSearch``),
the objective (one fit per trial, scored by its best epoch's validation metric), ``tune.md`` and
``best.yaml``. Ray Tune runs the trials wherever the cluster has the CPUs and GPUs a trial asks
for, several at once, and its ASHA scheduler stops a trial whose per-epoch validation score
falls behind the others' at the same epoch (from the third epoch on, like the Optuna backend's
pruner). The test split is never read: a trial is the same fit.

Every trial's fit writes to ``OUT/trials/NNN`` on the machine that runs it, and reads the cohort
at the paths the driver's spec gives: on several machines, the cohort and ``OUT`` must be at
the same paths on all of them (a shared file system). The driver (this process) alone writes
``study.db``, ``tune.md`` and ``best.yaml``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polymodal.data.spec import CohortSpec
from polymodal.errors import PolymodalError
from polymodal.tuning.base_config import BaseConfig
from polymodal.tuning.space import SearchSpace
from polymodal.tuning.study import (
    Search,
    TuneResult,
    finish_search,
    prepare_search,
    study_url,
)
from polymodal.tuning.summary import write_summary

INSTALL = "pip install 'polymodal[ray]'"


@dataclass(frozen=True)
class RayOptions:
    """Where and how a search's trials run on Ray.

    Args:
        address: the cluster: ``None`` starts a local one for this search, ``"auto"`` joins the
            cluster this machine belongs to (``ray start``), ``"ray://HOST:10001"`` connects
            through Ray Client.
        trials_at_once: at most this many trials run at the same time (``None``: as many as the
            cluster's resources allow).
        cpus_per_trial, gpus_per_trial: what each trial asks of the cluster (a fraction of a
            GPU shares one).
    """

    address: str | None = None
    trials_at_once: int | None = None
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0


def require_ray() -> Any:
    """The ``ray`` module with Ray Tune, or a message saying which extra installs it."""
    try:
        import ray
        import ray.tune  # its extra dependencies (pandas, pyarrow, fsspec) too
    except ImportError:
        raise PolymodalError(
            f"polymodal tune --backend ray needs Ray Tune (the 'ray' extra): {INSTALL}"
        ) from None
    return ray


def tune_with_ray(
    spec: CohortSpec,
    out: Path,
    base: BaseConfig | None = None,
    *,
    trials: int,
    options: RayOptions = RayOptions(),
    space: SearchSpace | None = None,
    space_source: str = "the --space file",
    study_name: str = "polymodal",
    timeout: float | None = None,
    seed: int = 0,
    scheduler: Any = None,
    on_trial: Callable[[Any], None] | None = None,
) -> TuneResult:
    """:func:`polymodal.tuning.study.tune`, its trials run as Ray Tune trials.

    The arguments are ``tune``'s, with ``options`` (the cluster and each trial's resources) and
    ``scheduler`` (a Ray ``TrialScheduler`` fed with ``score`` per ``epoch``; default: ASHA,
    see :func:`default_scheduler`) in place of Optuna's pruner. A Ray already started in this
    process (``ray.init``) is used as it is, whatever ``options.address`` says.

    Raises:
        PolymodalError: Ray is not installed, no cluster answers at ``options.address``, or
            anything :func:`~polymodal.tuning.study.tune` refuses.
    """
    ray = require_ray()
    search = prepare_search(
        spec,
        out,
        base,
        trials=trials,
        space=space,
        space_source=space_source,
        study_name=study_name,
        seed=seed,
    )
    if search.remaining > 0:
        started = _connect(ray, options.address)
        try:
            deadline = None if timeout is None else time.monotonic() + timeout
            _run_trials(search, options, scheduler, deadline, on_trial)
        finally:
            if started:
                ray.shutdown()
    return finish_search(search)


def _run_trials(
    search: Search,
    options: RayOptions,
    scheduler: Any,
    deadline: float | None,
    on_trial: Callable[[Any], None] | None,
) -> None:
    """Run the study's remaining trials on Ray (the cluster is connected)."""
    import optuna
    from ray import tune
    from ray.tune.search import ConcurrencyLimiter

    from polymodal.tuning.ray_trials import StudySearch, run_trial

    def after_trial(trial: Any) -> None:
        write_summary(search.study, search.out, search.setup)
        if on_trial is not None:
            on_trial(trial)

    mode = "max" if search.setup.direction == "maximize" else "min"
    searcher: Any = StudySearch(
        search.objective.space,
        search.study,
        storage=optuna.storages.RDBStorage(study_url(search.out)),
        sampler=search.study.sampler,
        mode=mode,
        deadline=deadline,
        after_trial=after_trial,
    )
    if options.trials_at_once is not None:
        searcher = ConcurrencyLimiter(searcher, max_concurrent=options.trials_at_once)
    trainable = tune.with_resources(
        tune.with_parameters(run_trial, objective=search.objective, workdir=os.getcwd()),
        {"cpu": options.cpus_per_trial, "gpu": options.gpus_per_trial},
    )
    tuner = tune.Tuner(
        trainable,
        tune_config=tune.TuneConfig(
            search_alg=searcher,
            scheduler=scheduler or default_scheduler(search, mode),
            num_samples=search.remaining,
        ),
        run_config=tune.RunConfig(
            name=f"{search.study.study_name}-{time.strftime('%Y%m%d-%H%M%S')}",
            storage_path=str((search.out / "ray").resolve()),
            verbose=0,
        ),
    )
    tuner.fit()


def default_scheduler(search: Search, mode: str) -> Any:
    """ASHA on each epoch's validation score: at epoch indices 2, 6, 18, … (the first is the
    Optuna backend's warm-up) a trial goes on only if it is in the best third of the trials
    that reached that epoch. A trial's last epoch is never one of them (its fit is done; the
    search keeps it whole), so a search whose trials run fewer than 4 epochs prunes nothing
    (Ray's FIFO scheduler)."""
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from polymodal.tuning.ray_trials import EPOCH, SCORE

    last_rung = _most_epochs(search) - 2  # the index of the last epoch but one
    if last_rung < 2:
        return FIFOScheduler()
    return ASHAScheduler(
        time_attr=EPOCH,
        metric=SCORE,
        mode=mode,
        max_t=last_rung,
        grace_period=2,
        reduction_factor=3,
        # Rungs up to max_t only; past it a trial runs to its end.
        stop_last_trials=False,
    )


def _most_epochs(search: Search) -> int:
    """The most epochs any trial of the search may run (the space may search max_epochs)."""
    epochs = [search.objective.base.load().train.max_epochs]
    param = search.objective.space.root.get("train.max_epochs")
    if param is not None:
        epochs += [int(value) for value in param.extremes()]
    return max(epochs)


def _connect(ray: Any, address: str | None) -> bool:
    """Join the cluster at ``address`` (or start a local one); whether this call started Ray
    (and so shuts it down after the search)."""
    if ray.is_initialized():
        return False
    try:
        if address is None:
            # A cluster of its own: no dashboard, and the trials' own output stays in their
            # logs (the search prints one line per trial).
            ray.init(include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address)
    except ConnectionError as err:
        raise PolymodalError(
            f"--ray-address {address}: no Ray cluster answers there ({err}); start one with "
            "'ray start --head' on its head node, or leave out --ray-address to run the trials "
            "on this machine"
        ) from None
    return True
