"""``polymodal predict``: probabilities for new rows with any subset of modalities."""

from __future__ import annotations

import warnings
from pathlib import Path

import typer
from rich.markup import escape

from polymodal.cli._app import app, console, err_console
from polymodal.cli.device_option import DEVICE_HELP


@app.command()
def predict(
    model_dir: Path = typer.Argument(
        ..., help="Model folder written by `polymodal fit` (OUT/model)."
    ),
    manifest: Path = typer.Argument(
        ...,
        help="CSV/Parquet laid out like the training manifest; a modality may lack its columns.",
    ),
    root: Path | None = typer.Option(
        None,
        help="Folder that the table's relative file paths start from (default: the table's "
        "own folder, never the training cohort's); every file must lie inside it.",
    ),
    out: Path = typer.Option(
        Path("predictions.csv"), "--out", "-o", help="Where to write the CSV."
    ),
    batch_size: int = typer.Option(64, help="Rows per batch."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    cache_dir: Path | None = typer.Option(
        None,
        "--cache-dir",
        help="Keep decoded images, volumes and series, and a frozen backbone's features, here "
        "between runs (a fit's train.cache_dir can be given: the same files are read again).",
    ),
    tta: bool = typer.Option(
        False,
        help="Average the probabilities over the images' dihedral views (8; 4 if not square).",
    ),
    prompt: list[str] = typer.Option(
        [],
        "--prompt",
        help="TASK=TEXT: ask a task in your own words, of a model whose fusion core takes "
        "task prompts, e.g. "
        "--prompt 'cancer=How likely is lung cancer within six years?' (repeatable).",
    ),
) -> None:
    """Write one CSV row of predictions per manifest row (labels are not needed).

    A row with no data in any modality the model reads gets blank outputs and a note; rows
    without data, repeated ids and unseen categories are warned about.
    """
    from polymodal.devices import resolve_device
    from polymodal.predictor import Predictor
    from polymodal.runtime import setup_process

    setup_process()  # threads for this process, allocator buffers kept across batches
    predictor = Predictor.load(
        model_dir,
        device=resolve_device(device),
        batch_size=batch_size,
        prompts=_parse_prompts(prompt),
        tta=tta,
        cache_dir=cache_dir,
    )
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        table = predictor.predict_manifest(manifest, root=root, progress=True)
    # Printed as messages, unbroken, rather than as Python's "file:line: UserWarning" lines.
    for warning in caught:
        message = escape(str(warning.message))
        err_console.print(f"[bold yellow]warning:[/] {message}", soft_wrap=True, highlight=False)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, index=False)
    console.print(f"{len(table)} rows → [bold]{out}[/]")


def _parse_prompts(values: list[str]) -> dict[str, str]:
    """``["task=text", ...]`` -> ``{task: text}``."""
    prompts = {}
    for value in values:
        task, sep, text = value.partition("=")
        if not sep or not task.strip() or not text.strip():
            raise typer.BadParameter(
                f"{value!r} is not TASK=TEXT; write e.g. --prompt 'cancer=Lung cancer risk?'",
                param_hint="--prompt",
            )
        prompts[task.strip()] = text.strip()
    return prompts
