"""``polymodal fit``: train a model on a cohort and export a model folder."""

from __future__ import annotations

from pathlib import Path

import typer

from polymodal.cli._app import app, console


@app.command()
def fit(
    spec: Path = typer.Argument(..., help="Cohort spec (YAML)."),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (checkpoints, logs, model/)."),
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Run config YAML (model + train)."
    ),
    core: str | None = typer.Option(
        None,
        help="Fusion core by registered name (same as --set model.core=NAME; an unknown name "
        "is refused with the list of registered ones).",
    ),
    epochs: int | None = typer.Option(None, help="Shortcut for --set train.max_epochs=N."),
    set_: list[str] = typer.Option(
        [], "--set", help="Dotted override, e.g. train.lr=1e-4 (repeatable)."
    ),
    resume: bool = typer.Option(
        False,
        help="Continue from OUT/checkpoints/last.ckpt (same run config; max_epochs may change).",
    ),
    distill_from: Path | None = typer.Option(
        None,
        "--distill-from",
        help="Teacher model folder (OUT/model of a fit on this cohort): distil it into this model.",
    ),
    shards: str | None = typer.Option(
        None,
        "--shards",
        help="Read the training and validation rows from a folder written by `polymodal "
        "shards` (local, s3:// or gs://) instead of the files (same as --set train.shards=DIR).",
    ),
    allow_blocking: bool = typer.Option(
        False,
        "--allow-blocking",
        help="Train although `polymodal validate` finds blocking problems (duplicate ids, a "
        "patient in two splits, …); recorded in OUT/run.json.",
    ),
) -> None:
    """Fit preprocessing on the training split, train, pick the best epoch on validation, export."""
    import json

    from polymodal.data.spec import load_spec
    from polymodal.training.distributed import is_global_zero
    from polymodal.training.fit import fit as run_fit
    from polymodal.training.run_config import load_run_config

    overrides = list(set_)
    if core is not None:
        overrides.append(f"model.core={core}")
    if epochs is not None:
        overrides.append(f"train.max_epochs={epochs}")
    if distill_from is not None:
        # JSON quoting keeps any path a plain YAML string.
        overrides.append(f"distill.teacher={json.dumps(str(distill_from))}")
    if shards is not None:
        overrides.append(f"train.shards={json.dumps(shards)}")
    run = load_run_config(config, overrides)
    cohort_spec = load_spec(spec)
    if is_global_zero():
        console.print(f"fitting [bold]{run.model.core}[/] on [bold]{cohort_spec.name}[/] → {out}")
    result = run_fit(
        cohort_spec,
        out,
        run,
        resume=resume,
        allow_blocking=allow_blocking,
    )
    if not is_global_zero():  # another rank of a multi-process run: rank 0 reports
        return
    score = "n/a" if result.best_score is None else f"{result.best_score:.4f}"
    console.print(f"best {result.monitor} = {score}; model folder: [bold]{result.model_dir}[/]")
    if result.data_issues:
        console.print(
            f"[yellow]{len(result.data_issues)} values or files could not be used and were treated as "
            f"missing; see {out / 'data_issues.csv'}[/]"
        )
