"""The typer app and the consoles every command module registers on and prints to.

Kept apart from ``polymodal.cli`` (which imports every command module) so that a command module
imports only this, not the package that imports it.
"""

from __future__ import annotations

import typer
from rich.console import Console

app = typer.Typer(
    name="polymodal",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="polymodal: multimodal clinical prediction, robust to missing modalities.",
)
console = Console()
err_console = Console(stderr=True)
