"""``polymodal inspect MODEL``: what a model folder holds, for a review before it is shared."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape

from polymodal.cli._app import app, console


@app.command()
def inspect(
    model: Path = typer.Argument(..., help="Model folder (OUT/model of `polymodal fit`)."),
    as_json: bool = typer.Option(False, "--json", help="Print the description as JSON."),
    words: bool = typer.Option(
        False, "--words", help="Also list every word of the fitted word vocabularies."
    ),
) -> None:
    """List a model folder's modalities, targets, fitted preprocessing state and vocabulary
    sizes, training cohort summary, core and checksums (weights are not loaded)."""
    from polymodal.model_inventory import model_inventory

    inventory = model_inventory(model, words=words)
    if as_json:
        typer.echo(json.dumps(inventory, indent=2))
        return
    for line in _lines(inventory):
        console.print(escape(line), highlight=False, soft_wrap=True)


def _lines(inv: dict[str, Any]) -> list[str]:
    """The inventory as indented text lines."""
    core = inv["core"]
    lines = [
        f"model folder: {inv['folder']} (polymodal {inv['polymodal_version']})",
        f"checksums: {inv['checksums']}",
        "files: " + ", ".join(f"{name} ({size:,} B)" for name, size in inv["files"].items()),
        f"cohort: {inv['cohort']}",
        f"core: {core['core']}, dim {core['dim']}, options {core['core_options']}, "
        f"modality dropout {core['modality_dropout']}",
        "modalities:",
    ]
    for name, m in inv["modalities"].items():
        lines.append(
            f"  {name}: {m['kind']} from {', '.join(m['columns'])}; encoder {m['encoder']}"
        )
        for key, value in m["state"].items():
            lines.append(f"    {key}: {value}")
        if "words" in m:
            lines.append(f"    words: {' '.join(m['words'])}")
    lines.append("targets:")
    for name, t in inv["targets"].items():
        classes = "" if not t["classes"] else f"; classes {', '.join(map(str, t['classes']))}"
        lines.append(f"  {name}: {t['kind']} from {t['column']}{classes}")
    lines.extend(_cohort_lines(inv["training_cohort"]))
    training = inv["training"]
    lines.append("training: " + ", ".join(f"{k} {v}" for k, v in training.items() if v is not None))
    return lines


def _cohort_lines(summary: dict[str, Any] | None) -> list[str]:
    if not summary:
        return ["training cohort: not recorded in this folder"]
    lines = ["training cohort:"]
    for split, rows in summary["rows"].items():
        patients = summary["patients"].get(split)
        lines.append(f"  {split}: {rows} rows, {patients} patients")
    for target, per_split in summary.get("labels", {}).items():
        for split, counts in per_split.items():
            total = sum(counts.values()) or 1
            shares = ", ".join(f"{k} {v} ({v / total:.1%})" for k, v in counts.items())
            lines.append(f"  {target} in {split}: {shares}")
    return lines
