"""``polymodal tune``: search a run config with Optuna on the validation split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from polymodal.cli._app import app, console


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
) -> None:
    """Fit the base config with values drawn from the search space, trial after trial; score
    each by its best epoch's validation metric (train.monitor), prune poor trials per epoch, and
    write the best as a ready run config (OUT/best.yaml). The test split is never read."""
    from polymodal.data.spec import load_spec
    from polymodal.tuning import BaseConfig, load_space
    from polymodal.tuning.study import tune as run_tune

    _quiet_optuna()
    base = BaseConfig(config, tuple(set_))
    space = load_space(space_file) if space_file is not None else None
    cohort_spec = load_spec(spec)
    console.print(f"tuning on [bold]{cohort_spec.name}[/] → {out}", highlight=False)
    result = run_tune(
        cohort_spec,
        out,
        base,
        trials=trials,
        space=space,
        space_source=str(space_file),
        study_name=study_name,
        timeout=timeout,
        seed=seed,
        on_trial=_print_trial,
    )
    console.print(f"{result.trials} trials in {out / 'study.db'}; table: {out / 'tune.md'}")
    if result.best_config is None:
        console.print("[yellow]no trial completed: no best.yaml[/]")
        return
    console.print(
        f"best {result.monitor} = {result.best_value:.4f}; run config: "
        f"[bold]{result.best_config}[/] (polymodal fit {spec} -c {result.best_config} -o RUN)",
        highlight=False,
    )


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
