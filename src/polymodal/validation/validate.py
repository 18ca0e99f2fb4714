"""Validate a cohort: open every file, parse every value, list every problem by row and column.

:func:`validate_cohort` returns a :class:`ValidationReport` (counts, availability, label counts,
missing rates, problems, and whether training is possible). Nothing is dropped silently: with
``on_error="skip-modality"`` a bad file or value makes that modality unavailable for that row, and
the problem's ``action`` says so.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

from polymodal import modalities, targets
from polymodal.data.label_checks import check_targets
from polymodal.data.manifest import Cohort
from polymodal.data.spec import SPLITS, modality_columns, target_columns
from polymodal.errors import ReadError, SpecError
from polymodal.validation.leakage import find_leaks

OnError = Literal["fail", "skip-modality"]


@dataclass
class Problem:
    """One thing wrong with the cohort, located by row id and column."""

    row_id: str | None  # None for a problem of the whole cohort or of a column
    column: str | None
    reason: str
    severity: Literal["error", "warning"]
    action: str  # what polymodal does about it, or what the user should do


@dataclass
class ValidationReport:
    """What :func:`validate_cohort` found. Per-split dicts are keyed "train", "val", "test"."""

    name: str
    manifest: str
    on_error: str
    n_rows: int
    split_counts: dict[str, int]
    # modality -> split -> rows where the modality is available (after skip-modality)
    availability: dict[str, dict[str, int]]
    # target -> split -> label (or "(missing)", "(unknown)") -> rows
    label_counts: dict[str, dict[str, dict[str, int]]]
    # tabular column -> share of rows where the value is missing
    missing_rates: dict[str, float]
    problems: list[Problem]
    training_possible: bool
    # Why training is impossible (empty when it is possible).
    blocking: list[str]
    # modality -> ids of rows where skip-modality made it unavailable
    skipped: dict[str, list[str]] = field(default_factory=dict)
    leakage_columns: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def n_errors(self) -> int:
        return sum(p.severity == "error" for p in self.problems)

    @property
    def n_warnings(self) -> int:
        return sum(p.severity == "warning" for p in self.problems)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return asdict(self)


class _Findings:
    """Problems collected while validating, plus the blocking reasons."""

    def __init__(self, cohort: Cohort) -> None:
        # Named when a problem is found: a list of every row's id would hold the whole id
        # column again as Python strings.
        self._ids = cohort.ids
        self.problems: list[Problem] = []
        self.blocking: list[str] = []

    def add(
        self, pos: int | None, column: str | None, reason: str, action: str, *, warn: bool = False
    ) -> None:
        row_id = None if pos is None else self.row_id(pos)
        severity = "warning" if warn else "error"
        self.problems.append(Problem(row_id, column, reason, severity, action))

    def row_id(self, pos: int) -> str:
        """The id of the row at ``pos``; its manifest row number when the id is blank."""
        value = str(self._ids.iat[pos])
        return value if value.strip() else f"(manifest row {pos + 1})"


def _check_ids_and_splits(cohort: Cohort, found: _Findings) -> None:
    spec = cohort.spec
    ids = cohort.ids.str.strip()
    blank = np.flatnonzero((ids == "").to_numpy())
    for pos in blank:
        found.add(pos, spec.id_column, "id is blank", "give every row a unique id")
    if len(blank):
        found.blocking.append(f"{len(blank)} row(s) have a blank id")
    dup_mask = ids.duplicated(keep=False) & (ids != "")
    duplicated = ids[dup_mask]
    for value, positions in duplicated.groupby(duplicated).groups.items():
        rows = ", ".join(str(int(p) + 1) for p in list(positions)[:5])
        found.add(
            int(positions[0]),
            spec.id_column,
            f"duplicate id: {len(positions)} rows share id {value!r} (manifest rows {rows})",
            "make ids unique (one row per sample)",
        )
    if dup_mask.any():
        found.blocking.append(f"{duplicated.nunique()} id(s) occur on more than one row")

    for pos, raw in cohort.unknown_split_values.items():
        shown = "blank" if raw == "" else repr(raw)
        found.add(
            pos,
            spec.split.column,
            f"split value {shown} is not train/val/test",
            "fix the value or map it in split.aliases (e.g. {valid: val})",
        )
    if cohort.unknown_split_values:
        found.blocking.append(
            f"{len(cohort.unknown_split_values)} row(s) have a split value that is not "
            "train/val/test"
        )

    if spec.group_column is not None:
        for pos in np.flatnonzero((cohort.frame[spec.group_column].str.strip() == "").to_numpy()):
            found.add(
                pos,
                spec.group_column,
                "group is blank",
                "the row forms a group of its own",
                warn=True,
            )
    known = cohort.split.notna()
    per_group = pd.DataFrame({"group": cohort.groups[known], "split": cohort.split[known]})
    n_splits = per_group.groupby("group")["split"].nunique()
    leaking = n_splits[n_splits > 1].index
    for group, members in per_group[per_group["group"].isin(leaking)].groupby("group"):
        splits = " and ".join(s for s in SPLITS if s in set(members["split"]))
        ids_shown = ", ".join(found.row_id(p) for p in members.index[:5])
        found.add(
            int(members.index[0]),
            spec.group_column or spec.id_column,
            f"group {group!r} is in {splits} (rows {ids_shown})",
            "put every row of a group in one split",
        )
    if len(leaking):
        found.blocking.append(f"{len(leaking)} group(s) sit in more than one split")


def _check_cells(
    cohort: Cohort, name: str, found: _Findings, bad_rows: set[int], action: str
) -> tuple[np.ndarray | None, dict[str, float]]:
    """Availability per row ``(N,)`` and missing rate per column of one modality, from its
    manifest cells alone (its kind's check); ``(None, {})`` for a kind whose values are in
    files, which :func:`_file_tasks` reads instead."""
    cfg = cohort.spec.modalities[name]
    check = modalities.get(cfg.kind).check_cells(cfg, cohort.frame)
    if check is None:
        return None, {}
    for pos, column, reason in check.problems:
        found.add(pos, column, reason, action)
        bad_rows.add(int(pos))
    return check.available, check.missing_rates


FileTask = tuple[int, str, str, Callable[[], object]]


def _file_tasks(cohort: Cohort, *, open_files: bool = True) -> list[FileTask]:
    """(row, modality, column, check) for every non-blank file cell; check() raises ReadError.

    With ``open_files`` the check resolves the path and reads the file with its kind's reader;
    without, it only resolves the path (no file is opened), so a path the cohort refuses is
    still reported.
    """
    tasks = []
    frame = cohort.frame
    for name, cfg in cohort.spec.modalities.items():
        for column in modalities.get(cfg.kind).file_columns(cfg):
            cells = frame[column].to_numpy()
            for pos in np.flatnonzero((frame[column].str.strip() != "").to_numpy()):
                check = _bind(_read_cell if open_files else _locate_cell, cohort, cfg, cells[pos])
                tasks.append((int(pos), name, column, check))
    return tasks


def _locate_cell(cohort: Cohort, cfg: Any, cell: str) -> Path:
    return cohort.resolve_path(cell, cfg.path_template)


def _read_cell(cohort: Cohort, cfg: Any, cell: str) -> object:
    return modalities.get(cfg.kind).read_file(cfg, cell, cohort.resolve_path)


def _bind(function: Callable, *args: object) -> Callable[[], object]:
    return lambda: function(*args)


def _attempt(read: Callable[[], object]) -> str | None:
    """None when the file reads, else the reason shown to the user."""
    try:
        read()
    except ReadError as err:
        return f"{err.reason} ({err.path})" if err.path else err.reason
    except SpecError:
        raise  # a spec problem (e.g. a path_template) concerns every row: stop on it
    except Exception as err:  # a validator must report a strange file, not stop on it
        return f"cannot be read: {type(err).__name__}: {err}"
    return None


def _read_all_files(cohort: Cohort, workers: int | None, show_progress: bool) -> list:
    """[(row, modality, column, reason or None)] for every file, read in a thread pool."""
    tasks = _file_tasks(cohort)
    if not tasks:
        return []
    # Pillow and the resizing in torch release the GIL, so threads read files in parallel
    # without the start-up cost and pickling of a process pool.
    workers = workers or min(8, 2 * (os.cpu_count() or 1))
    results: list = [None] * len(tasks)
    progress = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
        disable=not show_progress,
    )
    with progress, ThreadPoolExecutor(max_workers=workers) as pool:
        bar = progress.add_task("opening files", total=len(tasks))
        futures = {pool.submit(_attempt, task[3]): i for i, task in enumerate(tasks)}
        for future in as_completed(futures):
            i = futures[future]
            results[i] = (*tasks[i][:3], future.result())
            progress.advance(bar)
    return results


def _check_leakage(cohort: Cohort, usable: dict[str, pd.Series], found: _Findings) -> list[str]:
    spec = cohort.spec
    not_tested = {spec.id_column, spec.group_column, spec.split.column}
    for t in spec.targets.values():
        not_tested.update(target_columns(t))
    columns = [c for c in cohort.frame.columns if c not in not_tested]
    inputs = {c: m for m, cfg in spec.modalities.items() for c in modality_columns(cfg)}
    categorical = {
        name: labels
        for name, labels in usable.items()
        if targets.get(spec.targets[name].kind).class_valued
    }
    flagged = []
    for finding in find_leaks(cohort.frame, categorical, columns):
        column = finding.column
        if column in spec.exclude_columns:
            action = "it is in exclude_columns, so no model uses it as an input; keep it there"
        elif column in inputs:
            action = (
                f"it is an input of modality {inputs[column]!r}: remove it there and add it to "
                "exclude_columns unless it is truly known at prediction time"
            )
        else:
            action = "add it to exclude_columns so that no model ever uses it as an input"
        found.add(None, column, f"possible leakage: {finding.describe()}", action, warn=True)
        flagged.append(column)
    return sorted(set(flagged))


def validate_cohort(
    cohort: Cohort,
    on_error: OnError = "fail",
    workers: int | None = None,
    *,
    show_progress: bool = False,
    read_files: bool = True,
) -> ValidationReport:
    """Open every file and parse every value of a cohort; report what is wrong, row by row.

    Args:
        cohort: from :func:`polymodal.data.manifest.load_cohort`.
        on_error: "fail": a bad file or value makes training impossible; "skip-modality": it
            makes that modality unavailable for that row (reported in ``problems``/``skipped``).
        workers: threads that open files (default: twice the CPU count, at most 8).
        show_progress: draw a rich progress bar on stderr while files are opened.
        read_files: False runs every check that opens no file (ids, splits, targets, tabular
            values, clinical text, leakage, training rows, file paths inside the cohort root)
            and counts a file-based modality as available wherever its cell is non-blank and
            its path allowed; ``fit`` uses it as a fast pre-flight.
    """
    if on_error not in ("fail", "skip-modality"):
        raise ValueError(f"on_error must be 'fail' or 'skip-modality', got {on_error!r}")
    started = time.perf_counter()
    spec, n = cohort.spec, len(cohort)
    found = _Findings(cohort)
    _check_ids_and_splits(cohort, found)
    usable, label_counts, target_blocking = check_targets(cohort, found.add)
    found.blocking.extend(target_blocking)

    available = {name: np.zeros(n, dtype=bool) for name in spec.modalities}
    bad: dict[str, set[int]] = {name: set() for name in spec.modalities}
    missing_rates: dict[str, float] = {}

    def action(name: str) -> str:
        """What happens to a bad file or value of modality ``name``."""
        if on_error == "skip-modality":
            return f"modality {name!r} marked unavailable for this row"
        return (
            "fix or remove it, or rerun with --on-error skip-modality to mark the modality "
            "unavailable for this row"
        )

    for name in spec.modalities:
        present, rates = _check_cells(cohort, name, found, bad[name], action(name))
        if present is not None:
            available[name] = present
        missing_rates.update(rates)
    file_results = (
        _read_all_files(cohort, workers, show_progress)
        if read_files
        else [
            (pos, name, column, _attempt(locate))
            for pos, name, column, locate in _file_tasks(cohort, open_files=False)
        ]
    )
    for pos, name, column, reason in file_results:
        if reason is None:
            available[name][pos] = True
        else:
            found.add(pos, column, reason, action(name))
            bad[name].add(pos)

    skipped: dict[str, list[str]] = {}
    n_bad = sum(len(rows) for rows in bad.values())
    if on_error == "skip-modality":
        for name, rows in bad.items():
            available[name][list(rows)] = False
            if rows:
                skipped[name] = [found.row_id(p) for p in sorted(rows)]
    elif n_bad:
        found.blocking.append(
            f"{n_bad} unreadable file(s) or value(s); fix them or rerun with "
            "--on-error skip-modality"
        )

    leakage_columns = _check_leakage(cohort, usable, found)
    split = cohort.split
    availability = {
        name: {s: int(mask[(split == s).to_numpy()].sum()) for s in SPLITS}
        for name, mask in available.items()
    }
    _check_training_rows(cohort, usable, available, found)
    split_counts = {s: int((split == s).sum()) for s in SPLITS}
    if split.isna().any():
        split_counts["unknown"] = int(split.isna().sum())
    return ValidationReport(
        name=spec.name,
        manifest=str(cohort.manifest_path),
        on_error=on_error,
        n_rows=n,
        split_counts=split_counts,
        availability=availability,
        label_counts=label_counts,
        missing_rates=missing_rates,
        problems=found.problems,
        training_possible=not found.blocking,
        blocking=found.blocking,
        skipped=skipped,
        leakage_columns=leakage_columns,
        seconds=time.perf_counter() - started,
    )


def _check_training_rows(
    cohort: Cohort,
    usable: dict[str, pd.Series],
    available: dict[str, np.ndarray],
    found: _Findings,
) -> None:
    """Training needs train rows with a usable label and at least one available modality."""
    in_train = (cohort.split == "train").to_numpy()
    if not in_train.any():
        found.blocking.append("the training split is empty")
        return
    has_label = np.zeros(len(cohort), dtype=bool)
    for labels in usable.values():
        has_label |= labels.notna().to_numpy()
    has_input = np.zeros(len(cohort), dtype=bool)
    for mask in available.values():
        has_input |= mask
    for name, mask in available.items():
        if not mask[in_train].any():
            found.add(
                None,
                None,
                f"modality {name!r} is not available for any training row",
                "models will never learn it; check the column and the files",
                warn=True,
            )
    if not (in_train & has_label & has_input).any():
        found.blocking.append("no training row has both a usable label and an available modality")
