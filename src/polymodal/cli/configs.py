"""``polymodal configs``: list the ready configs, print one, or give its path."""

from __future__ import annotations

import typer
from rich.markup import escape

from polymodal.cli._app import app, console


@app.command()
def configs(
    name: str | None = typer.Argument(
        None, help="A ready config's name, e.g. ham10000_cpu or ablations/pb."
    ),
    path: bool = typer.Option(
        False, "--path", help="Print the config's file path instead of its text."
    ),
) -> None:
    """List the ready configs; with NAME, print one (to copy and edit) or its --path.

    For example: polymodal fit SPEC -o RUN -c "$(polymodal configs ham10000_cpu --path)"
    """
    from polymodal.ready_configs import config_kind, find_config, ready_configs, summary

    if name is None:
        for config_name, config_path in ready_configs().items():
            line = f"{config_name:<28} {config_kind(config_path):<12} {summary(config_path)}"
            console.print(escape(line), highlight=False, soft_wrap=True)
        return
    found = find_config(name)
    typer.echo(str(found) if path else found.read_text(encoding="utf-8"), nl=path)
