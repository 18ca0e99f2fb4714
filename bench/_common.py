"""What every benchmark script shares: the machine it ran on, and its results as Markdown.

Each script writes a report under ``bench/results/`` with a ``Machine:`` line from
:func:`machine` and tables from :func:`table` whose cells with a confidence interval come from
:func:`cell`; :func:`write_report` writes it. Run the scripts from the repository root
(``python bench/<script>.py``), which puts this folder on ``sys.path``.
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch


def device_name() -> str:
    """The GPU's name when one is in use, else "cpu"."""
    return torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu"


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo``), or the architecture where unknown."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(threads: int | None = None) -> str:
    """``"<GPU>, <CPU>, N CPUs, torch X[, T thread(s)]"``: what a result was measured on (the
    GPU only when one is in use; ``threads``: the torch threads the script ran with)."""
    gpu = f"{device_name()}, " if torch.cuda.is_available() else ""
    line = f"{gpu}{cpu_name()}, {os.cpu_count()} CPUs, torch {torch.__version__}"
    return line if threads is None else f"{line}, {threads} thread(s)"


def load_average() -> float:
    """The one-minute load average: on a shared machine, other processes only ever add time."""
    return os.getloadavg()[0]


def cell(ci: Any) -> str:
    """``"0.812 (0.790–0.834)"`` for a confidence interval: an object with ``point``, ``low``
    and ``high``, a dict with those keys, or a ``(point, low, high)`` sequence; ``"n/a"`` when it
    or its point is missing or NaN."""
    if hasattr(ci, "point"):  # polymodal's MetricCI
        ci = (ci.point, ci.low, ci.high)
    elif isinstance(ci, dict):
        ci = (ci.get("point"), ci.get("low"), ci.get("high"))
    if ci is None or ci[0] is None or math.isnan(ci[0]):
        return "n/a"
    point, low, high = ci[:3]
    return f"{point:.3f} ({low:.3f}–{high:.3f})"


def table(header: Sequence[str], rows: Iterable[Sequence[Any]] = (), align: str = "") -> list[str]:
    """A Markdown table's lines: header, rule and ``rows`` (more may follow from :func:`table_row`).
    ``align`` holds one letter per column, ``l`` or ``r`` (default: all left)."""
    rule = "|" + "|".join("---:" if a == "r" else "---" for a in align or "l" * len(header)) + "|"
    return [table_row(header), rule, *(table_row(cells) for cells in rows)]


def table_row(cells: Sequence[Any]) -> str:
    """One Markdown table row."""
    return "| " + " | ".join(str(c) for c in cells) + " |"


def write_report(path: Path, lines: Iterable[str]) -> str:
    """Write ``lines`` as one Markdown file (its folder made when missing); returns the text."""
    text = "\n".join(lines).rstrip("\n") + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text


def timed_cli_fit(spec: Path, out: Path, settings: Sequence[str]) -> float:
    """``polymodal fit SPEC -o OUT --set …`` in a fresh process, as a user runs it; its
    wall-clock seconds. A failed fit stops the benchmark with the command and its stderr."""
    command = [sys.executable, "-m", "polymodal", "fit", str(spec), "-o", str(out)]
    for item in settings:
        command += ["--set", item]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-4000:]}")
    return time.perf_counter() - started
