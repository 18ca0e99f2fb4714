"""``polymodal tune``: search a run config with Optuna on the validation split, its trials one
after another here or spread over a Ray cluster (``--backend ray``)."""

from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import Any

import typer

from polymodal.cli._app import app, console
from polymodal.errors import PolymodalError


class Backend(str, Enum):
    """Who runs the trials of a search."""

    optuna = "optuna"
    ray = "ray"


@app.command()
def tune(
    spec: Path = typer.Argument(..., help="Cohort spec (YAML)."),
    trials: int = typer.Option(
        ...,
        "--trials",
        "-n",
        min=1,
        help="Finished trials the study should hold (a rerun continues up to this number).",
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Search folder: study.db, trials/, best.yaml, tune.md."
    ),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Base run config YAML (model + train + plugin sections)."
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Dotted override of the base config, e.g. train.max_epochs=20."
    ),
    space_file: Path | None = typer.Option(
        None,
        "--space",
        help="Search space YAML (dotted key: {type, low, high, log, step, choices}); default: "
        "the shipped space of the base config's core.",
    ),
    study_name: str = typer.Option("polymodal", "--study-name", help="Name of the study."),
    timeout: float | None = typer.Option(
        None, min=0, help="Start no new trial after this many seconds."
    ),
    seed: int = typer.Option(0, help="Seed of the sampler (TPE)."),
    backend: Backend = typer.Option(
        Backend.optuna,
        "--backend",
        help="optuna: trials one after another in this process; ray: trials as Ray Tune trials, "
        "several at once, on this machine or a Ray cluster (the 'ray' extra).",
    ),
    ray_address: str | None = typer.Option(
        None,
        "--ray-address",
        help="With --backend ray: the cluster to run on ('auto': the one this machine joined "
        "with 'ray start'; 'ray://HOST:10001': through Ray Client). Default: a local one.",
    ),
    trials_at_once: int | None = typer.Option(
        None,
        "--trials-at-once",
        min=1,
        help="With --backend ray: at most this many trials at once.",
    ),
    cpus_per_trial: float = typer.Option(
        1.0, "--cpus-per-trial", min=0, help="With --backend ray: CPUs each trial reserves."
    ),
    gpus_per_trial: float = typer.Option(
        0.0,
        "--gpus-per-trial",
        min=0,
        help="With --backend ray: GPUs each trial reserves (0.5 shares one).",
    ),
) -> None:
    """Fit the base config with values drawn from the search space, trial after trial (or
    several at once on Ray: --backend ray); score each by its best epoch's validation metric
    (train.monitor), prune poor trials per epoch, and write the best as a ready run config
    (OUT/best.yaml). The test split is never read."""
    from polymodal.data.spec import load_spec
    from polymodal.tuning import BaseConfig, load_space
    from polymodal.tuning.study import tune as run_tune

    ray_options = _ray_options(backend, ray_address, trials_at_once, cpus_per_trial, gpus_per_trial)
    _quiet_optuna()
    base = BaseConfig(config, tuple(set_))
    space = load_space(space_file) if space_file is not None else None
    cohort_spec = load_spec(spec)
    console.print(f"tuning on [bold]{cohort_spec.name}[/] → {out}", highlight=False)
    search = dict(
        trials=trials,
        space=space,
        space_source=str(space_file),
        study_name=study_name,
        timeout=timeout,
        seed=seed,
        on_trial=_print_trial,
    )
    if ray_options is None:
        result = run_tune(cohort_spec, out, base, **search)
    else:
        from polymodal.tuning.ray_backend import tune_with_ray

        result = tune_with_ray(cohort_spec, out, base, options=ray_options, **search)
    console.print(f"{result.trials} trials in {out / 'study.db'}; table: {out / 'tune.md'}")
    if result.best_config is None:
        console.print("[yellow]no trial completed: no best.yaml[/]")
        return
    console.print(
        f"best {result.monitor} = {result.best_value:.4f}; run config: "
        f"[bold]{result.best_config}[/] (polymodal fit {spec} -c {result.best_config} -o RUN)",
        highlight=False,
    )


def _ray_options(
    backend: Backend,
    address: str | None,
    trials_at_once: int | None,
    cpus_per_trial: float,
    gpus_per_trial: float,
) -> Any:
    """The Ray options of a ``--backend ray`` search (``None`` for Optuna); Ray options given
    without it are refused rather than ignored."""
    if backend is Backend.optuna:
        given = [
            name
            for name, value, default in [
                ("--ray-address", address, None),
                ("--trials-at-once", trials_at_once, None),
                ("--cpus-per-trial", cpus_per_trial, 1.0),
                ("--gpus-per-trial", gpus_per_trial, 0.0),
            ]
            if value != default
        ]
        if given:
            raise PolymodalError(f"{', '.join(given)}: only with --backend ray")
        return None
    from polymodal.tuning.ray_backend import RayOptions, require_ray

    require_ray()
    return RayOptions(address, trials_at_once, cpus_per_trial, gpus_per_trial)


def _print_trial(trial: Any) -> None:
    """One line per finished trial: its state, score and values (or why it failed)."""
    score = "" if trial.value is None else f" {trial.value:.4f}"
    values = ", ".join(
        f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in trial.params.items()
    )
    note = trial.user_attrs.get("error", "")
    console.print(
        f"trial {trial.number}: {trial.state.name.lower()}{score}  {values}"
        + (f"  ({note})" if note else ""),
        markup=False,
        highlight=False,
    )


def _quiet_optuna() -> None:
    """polymodal prints one line per trial; Optuna's own lines (and a failed trial's traceback,
    whose message the line carries) would repeat it."""
    try:
        import optuna
    except ImportError:
        return  # tune() says how to install it
    optuna.logging.set_verbosity(optuna.logging.ERROR)
