"""A cohort: the spec plus its manifest table, read losslessly, with the split of every row.

The manifest is read with every column as a string (nothing is coerced or dropped on the way
in); numbers are parsed per cell by :func:`parse_number` so that one bad value becomes one
problem naming its row and column, never a silent NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from polymodal.data.spec import (
    SPLITS,
    BinaryTarget,
    CohortSpec,
    ImageModality,
    TabularModality,
    target_columns,
)
from polymodal.errors import ManifestError, ReadError, SpecError

# Cells that mean "no value" for numeric tabular columns (overridable per modality) and labels.
DEFAULT_MISSING_VALUES: tuple[str, ...] = ("", "NA", "NaN", "nan", "unknown")
MISSING_LABEL_VALUES: frozenset[str] = frozenset({"", "NA", "NaN", "nan", "None", "null"})


def is_missing(cell: str, missing_values: Iterable[str] = DEFAULT_MISSING_VALUES) -> bool:
    """True when a manifest cell means "no value" (blank, or one of ``missing_values``)."""
    stripped = cell.strip()
    return stripped == "" or stripped in set(missing_values)


def parse_number(cell: str, missing_values: Iterable[str] = DEFAULT_MISSING_VALUES) -> float:
    """Parse one numeric cell: NaN for a missing marker, the number otherwise.

    Raises:
        ReadError: the cell is neither a missing marker nor a finite number; the reason names
            the value (the caller adds the row and column).
    """
    if is_missing(cell, missing_values):
        return math.nan
    try:
        value = float(cell.strip())
    except ValueError:
        raise ReadError(f"{cell!r} is not a number") from None
    if not math.isfinite(value):
        raise ReadError(f"{cell!r} is not a finite number")
    return value


def _read_table(path: Path) -> pd.DataFrame:
    """Every column as str; empty cells stay "" (not NaN) so nothing is coerced."""
    if not path.is_file():
        raise ManifestError(
            f"{path}: manifest not found; fix 'manifest' in the spec or pass --manifest"
        )
    suffix = "".join(path.suffixes[-2:]).lower()
    try:
        if suffix.endswith(".parquet") or suffix.endswith(".pq"):
            frame = pd.read_parquet(path)
            # Parquet keeps types; turn them into the same strings a CSV would hold.
            frame = frame.astype(object).where(frame.notna(), "").astype(str)
        elif suffix.endswith((".csv", ".csv.gz", ".tsv", ".txt")):
            sep = "\t" if ".tsv" in suffix else ","
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, sep=sep)
        else:
            raise ManifestError(
                f"{path}: unsupported manifest format {path.suffix!r}; use .csv, .tsv or .parquet"
            )
    except pd.errors.EmptyDataError:
        raise ManifestError(f"{path}: the manifest is empty (no header, no rows)") from None
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError) as err:
        raise ManifestError(f"{path}: cannot read the manifest: {err}") from None
    if len(frame) == 0:
        raise ManifestError(f"{path}: the manifest has a header but no rows")
    frame.columns = [str(c) for c in frame.columns]
    return frame.reset_index(drop=True)


@dataclass
class Cohort:
    """A validated spec plus its manifest.

    Attributes:
        spec: the cohort spec.
        frame: the manifest, every column a ``str`` (blank cells are ``""``), index ``0..N-1``.
        split: per row ``"train"``, ``"val"``, ``"test"``, or ``None`` when the split column holds
            a value that is not a split (see :attr:`unknown_split_values`).
        manifest_path: where the manifest was read from.
    """

    spec: CohortSpec
    frame: pd.DataFrame
    split: pd.Series
    manifest_path: Path
    # Raw split cells that are neither a split name nor an alias, by row position.
    unknown_split_values: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def ids(self) -> pd.Series:
        """The id column (str per row)."""
        return self.frame[self.spec.id_column]

    @property
    def groups(self) -> pd.Series:
        """The group (patient/lesion) of every row; the row's id where there is no group."""
        if self.spec.group_column is None:
            return self.ids.rename("group")
        group = self.frame[self.spec.group_column]
        return group.where(group.str.strip() != "", self.ids).rename("group")

    @property
    def data_root(self) -> Path:
        """Folder that relative file paths resolve against: the spec's ``root``, else the folder
        of the spec's manifest (also when ``--manifest`` swaps in another table, so a subset
        written elsewhere still points at the same files)."""
        return self.spec.data_root

    def indices(self, split: str | None = None) -> np.ndarray:
        """Row positions ``(N_split,)`` of one split (all rows with a known split when None)."""
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        mask = self.split.isin(SPLITS) if split is None else self.split == split
        return np.flatnonzero(mask.to_numpy())

    def rows(self, split: str | None = None) -> pd.DataFrame:
        """The manifest rows of one split (every known split when None)."""
        return self.frame.iloc[self.indices(split)]

    def resolve_path(self, value: str, template: str | None = None) -> Path:
        """The file a cell points at: ``template.format(value)`` relative to :attr:`data_root`.

        ``..`` and absolute paths are honoured as written (polymodal only reads them; its
        caches and outputs never go next to them).
        """
        text = value.strip()
        if template is not None:
            try:
                text = template.format(text)
            except (IndexError, KeyError, ValueError) as err:
                raise SpecError(
                    f"path_template {template!r}: cannot fill it with {value!r} ({err}); "
                    "use a single '{}' where the cell value goes"
                ) from None
        path = Path(text).expanduser()
        return path if path.is_absolute() else self.data_root / path

    def cell(self, row: int, column: str) -> str:
        """The raw string in one cell (row position, column name)."""
        return self.frame.iat[row, self.frame.columns.get_loc(column)]

    def file_paths(self, row: int, modality: str) -> list[Path | None]:
        """Files of a file-based modality for one row, one per view column; None when blank."""
        cfg = self.spec.modalities[modality]
        if isinstance(cfg, TabularModality):
            raise ValueError(f"modality {modality!r} is tabular and has no files")
        if getattr(cfg, "source", "file") == "column":
            raise ValueError(f"modality {modality!r} holds its text in the column, not a file")
        columns = cfg.columns if isinstance(cfg, ImageModality) else [cfg.column]
        template = cfg.path_template
        paths: list[Path | None] = []
        for column in columns:
            cell = self.cell(row, column)
            paths.append(None if cell.strip() == "" else self.resolve_path(cell, template))
        return paths

    def label(self, row: int, target: str) -> str | None:
        """The raw label of one row for a single-column target; None when missing."""
        t = self.spec.targets[target]
        column = getattr(t, "column", None)
        if column is None:
            raise ValueError(f"target {target!r} ({t.kind}) spans several columns; use cell()")
        value = self.cell(row, column).strip()
        return None if value in MISSING_LABEL_VALUES else value

    def labels(self, target: str) -> pd.Series:
        """The raw labels of a single-column target for every row (None where missing)."""
        t = self.spec.targets[target]
        column = getattr(t, "column", None)
        if column is None:
            raise ValueError(f"target {target!r} ({t.kind}) spans several columns")
        values = self.frame[column].str.strip()
        return values.where(~values.isin(MISSING_LABEL_VALUES), None)

    def binary_negative(self, target: str) -> str | None:
        """The value that means "negative" for a binary target: the spec's ``negative``, else
        the one value besides the positive in the training split (None when there are zero or
        several, which validation reports)."""
        t = self.spec.targets[target]
        if not isinstance(t, BinaryTarget):
            raise ValueError(f"target {target!r} is not binary")
        if t.negative is not None:
            return t.negative
        train = self.labels(target).iloc[self.indices("train")].dropna()
        others = set(train[train != t.positive])
        return others.pop() if len(others) == 1 else None


def _split_from_column(spec: CohortSpec, frame: pd.DataFrame) -> tuple[pd.Series, dict[int, str]]:
    raw = frame[spec.split.column].str.strip()
    mapped = raw.map(lambda v: spec.split.aliases.get(v, v))
    known = mapped.isin(SPLITS)
    unknown = {int(i): raw.iat[i] for i in np.flatnonzero(~known.to_numpy())}
    split = mapped.where(known, None).astype(object).rename("split")
    return split, unknown


def load_cohort(
    spec: CohortSpec, manifest_override: Path | str | None = None, *, for_inference: bool = False
) -> Cohort:
    """Read the manifest a spec points at (or ``manifest_override``) and assign every row a split.

    With ``for_inference=True`` (new patients to predict) label and split columns may be absent:
    absent label columns count as missing labels and no split is assigned.

    Raises:
        ManifestError: the manifest is missing, unreadable or empty, or a column the spec declares
            is absent (the message names the column, the spec field and the columns present).
    """
    from polymodal.data.splits import make_split

    path = Path(manifest_override).expanduser().resolve() if manifest_override else None
    path = path or spec.manifest_path
    frame = _read_table(path)
    present = set(frame.columns)
    optional = _label_and_split_columns(spec) if for_inference else set()
    for column in optional - present:
        frame[column] = ""
    for column, declared_by in spec.required_columns().items():
        if column not in present and column not in optional:
            raise ManifestError(
                f"{path}: column {column!r} (declared by {declared_by}) is not in the manifest; "
                f"columns present: {', '.join(frame.columns)}"
            )
    unknown: dict[int, str] = {}
    if for_inference:
        split = pd.Series([None] * len(frame), dtype=object, name="split")
    elif spec.split.column is not None:
        split, unknown = _split_from_column(spec, frame)
    else:
        split = make_split(frame, spec)
    return Cohort(
        spec=spec,
        frame=frame,
        split=split,
        manifest_path=path,
        unknown_split_values=unknown,
    )


def _label_and_split_columns(spec: CohortSpec) -> set[str]:
    """Columns that new patients to predict need not have: labels and the split."""
    columns = {c for t in spec.targets.values() for c in target_columns(t)}
    if spec.split.column is not None:
        columns.add(spec.split.column)
    return columns
