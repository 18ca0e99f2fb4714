"""``polymodal serve``: the model as an HTTP service with a page for one patient at a time."""

from __future__ import annotations

from pathlib import Path

import typer

from polymodal.cli._app import app, console
from polymodal.cli.device_option import DEVICE_HELP
from polymodal.errors import PolymodalError


@app.command()
def serve(
    model_dir: Path = typer.Argument(
        ..., help="Model folder written by `polymodal fit` (OUT/model)."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (loopback by default)."),
    port: int = typer.Option(8000, min=0, max=65535, help="Port to listen on."),
    device: str = typer.Option("auto", help=DEVICE_HELP),
    allow_dir: Path | None = typer.Option(
        None,
        "--allow-dir",
        help="The only folder whose files a request may name by path (default: none, uploads "
        "only; the --examples folder when examples are given).",
    ),
    max_upload_mb: float = typer.Option(
        64.0, "--max-upload-mb", min=0.001, help="Largest request body (uploads): 413 beyond."
    ),
    examples: Path | None = typer.Option(
        None,
        "--examples",
        help="Manifest whose first rows the page offers as example patients.",
    ),
    batch_size: int = typer.Option(32, min=1, help="Rows per model call (dynamic batching)."),
    max_wait_ms: float = typer.Option(
        5.0, "--max-wait-ms", min=0.0, help="How long a request waits for others to batch with."
    ),
) -> None:
    """Serve POST /predict, GET /health, GET /model and the page at GET / (Ctrl-C stops)."""
    try:
        import uvicorn

        from polymodal.serve.app import create_app
    except ImportError as err:
        raise PolymodalError(
            f"serving needs the 'serve' extra ({err.name} is not installed): "
            "pip install 'polymodal[serve]'"
        ) from None
    from polymodal.devices import resolve_device
    from polymodal.predictor import Predictor
    from polymodal.runtime import setup_process

    setup_process()
    if examples is not None and allow_dir is None:
        allow_dir = examples.expanduser().resolve().parent
    if allow_dir is not None and not allow_dir.is_dir():
        raise PolymodalError(f"--allow-dir {allow_dir}: not a folder")
    predictor = Predictor.load(model_dir, device=resolve_device(device), batch_size=batch_size)
    service = create_app(
        predictor,
        allow_dir=allow_dir,
        max_upload_mb=max_upload_mb,
        examples=examples,
        max_batch=batch_size,
        max_wait_ms=max_wait_ms,
    )
    console.print(
        f"serving {model_dir} on http://{host}:{port}/ ({predictor.device}); "
        f"files by path from {allow_dir or 'nowhere (uploads only)'}",
        highlight=False,
        soft_wrap=True,
    )
    uvicorn.run(service, host=host, port=port, log_level="info")
