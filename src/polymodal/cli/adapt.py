"""``polymodal adapt``: fine-tune a trained model to a new task from a small labelled set."""

from __future__ import annotations

from pathlib import Path

import typer

from polymodal.cli._app import app, console


@app.command()
def adapt(
    model_dir: Path = typer.Argument(..., help="Trained model folder (OUT/model of a fit)."),
    spec: Path = typer.Argument(
        ...,
        help="Cohort spec of the new task: the model's modalities (as in its spec.yaml) and the "
        "new target(s), each with its prompt.",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Run folder (checkpoints, logs, model/)."),
    train: str = typer.Option(
        "core",
        help="What to train: 'head' (new heads and prompt encoder), 'core' (fusion core and "
        "heads; encoders frozen) or 'all'.",
    ),
    config: Path | None = typer.Option(
        None,
        "--config",
        "-c",
        help="Run config YAML: its 'train' and training plugin sections (e.g. 'ema'); the model "
        "is the trained one.",
    ),
    epochs: int | None = typer.Option(None, help="Shortcut for --set train.max_epochs=N."),
    set_: list[str] = typer.Option(
        [],
        "--set",
        help="Dotted override of the training or a plugin section, e.g. train.lr=1e-4 "
        "(repeatable).",
    ),
    resume: bool = typer.Option(False, help="Continue from OUT/checkpoints/last.ckpt."),
) -> None:
    """Train the model in MODEL_DIR on SPEC's targets, starting from its weights; export."""
    from polymodal.config import ModelConfig
    from polymodal.data.spec import load_spec
    from polymodal.errors import SpecError
    from polymodal.training.adapt import TRAINABLE
    from polymodal.training.adapt import adapt as run_adapt
    from polymodal.training.run_config import load_run_config

    if train not in TRAINABLE:
        raise SpecError(f"--train must be one of {', '.join(TRAINABLE)}; got {train!r}")
    overrides = list(set_)
    model = [item for item in overrides if item.strip().startswith("model.")]
    if model:
        # The adaptation keeps the trained model: a model override would change nothing.
        raise SpecError(
            "polymodal adapt keeps the trained model's architecture; --set accepts train.* and "
            f"training plugin sections, not {', '.join(model)}"
        )
    if epochs is not None:
        overrides.append(f"train.max_epochs={epochs}")
    run = load_run_config(config, overrides)
    if run.model != ModelConfig():
        raise SpecError(
            f"{config}: polymodal adapt keeps the trained model's architecture; leave the run "
            "config's model section out (its train and training plugin sections apply)"
        )
    cohort_spec = load_spec(spec)
    console.print(
        f"adapting [bold]{model_dir}[/] to [bold]{cohort_spec.name}[/] (train {train}) → {out}"
    )
    result, started = run_adapt(
        model_dir,
        cohort_spec,
        out,
        run,
        train=train,
        resume=resume,  # type: ignore[arg-type]
    )
    if started.loaded:
        console.print(
            f"loaded {len(started.loaded)} trained tensors; new: {', '.join(started.new) or 'none'}; "
            f"{len(started.trainable)} parameter tensors train"
        )
    score = "n/a" if result.best_score is None else f"{result.best_score:.4f}"
    console.print(f"best {result.monitor} = {score}; model folder: [bold]{result.model_dir}[/]")
