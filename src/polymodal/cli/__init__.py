"""The ``polymodal`` command line: one typer app, one file per command group.

Each command module registers itself on :data:`app` when imported below. Errors that are the
user's input (:class:`polymodal.errors.PolymodalError`) are printed as a message, never as a
traceback; exit status 2 means "your input needs fixing".
"""

from __future__ import annotations

import sys

from rich.text import Text

import polymodal.huge_pages  # noqa: F401  (before torch: huge pages for big tensors)
from polymodal.cli._app import app, console, err_console
from polymodal.errors import PolymodalError


@app.command()
def version() -> None:
    """Print the installed polymodal version."""
    from polymodal import __version__

    console.print(__version__)


def main() -> None:
    """Entry point: run the app, turning user-input errors into a clear message."""
    from polymodal.progress import log_to_stderr

    log_to_stderr()
    try:
        app()
    except PolymodalError as err:
        # The message quotes the user's values: '[...]' in an id or a path is text, not markup.
        message = Text.assemble(("error:", "bold red"), " ", str(err))
        err_console.print(message, highlight=False, soft_wrap=True)
        sys.exit(2)


# Command modules (each adds its commands to `app` when imported).
from polymodal.cli import (  # noqa: E402
    adapt,
    card,
    compare,
    configs,
    cv,
    demo,
    demo_data,
    evaluate,
    explain,
    export,
    fit,
    inspect,
    predict,
    prepare,
    report,
    serve,
    shards,
    tune,
    validate,
)

__all__ = [
    "adapt",
    "app",
    "card",
    "compare",
    "configs",
    "cv",
    "demo",
    "demo_data",
    "evaluate",
    "explain",
    "export",
    "fit",
    "inspect",
    "main",
    "predict",
    "prepare",
    "report",
    "serve",
    "shards",
    "tune",
    "validate",
]
