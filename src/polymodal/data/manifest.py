"""A cohort: the spec plus its manifest table, read losslessly, with the split of every row.

The manifest is read with every column as a string (nothing is coerced or dropped on the way
in), held in Arrow memory (:mod:`polymodal.data.text_columns`); numbers are parsed per cell by :func:`parse_number` so that one bad value becomes one
problem naming its row and column, never a silent NaN.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from polymodal.data.cells import (  # noqa: F401  (also imported from here)
    DEFAULT_MISSING_VALUES,
    MISSING_LABEL_VALUES,
    is_missing,
    parse_number,
)
from polymodal.data.parquet_manifest import IN_FILE, read_parquet_text
from polymodal.data.remote import RemoteFile, is_url, remote_file
from polymodal.data.spec import (
    SPLITS,
    CohortSpec,
    modality_columns,
    target_columns,
)
from polymodal.data.text_columns import TEXT, as_arrow_text
from polymodal.errors import ManifestError, ReadError, SpecError
from polymodal.modalities import get as modality_kind


def _read_table(path: Path, columns: Collection[str] | None = None) -> pd.DataFrame:
    """Every column as text (:data:`TEXT`); empty cells stay "" (not NaN) so nothing is coerced.

    ``columns``: of a Parquet manifest read only these, a row group at a time
    (:mod:`polymodal.data.parquet_manifest`); a CSV is read whole.
    """
    if not path.is_file():
        raise ManifestError(
            f"{path}: manifest not found; fix 'manifest' in the spec or pass --manifest"
        )
    suffix = "".join(path.suffixes[-2:]).lower()
    try:
        if suffix.endswith(".parquet") or suffix.endswith(".pq"):
            frame = read_parquet_text(path, columns)
        elif suffix.endswith((".csv", ".csv.gz", ".tsv", ".txt")):
            sep = "\t" if ".tsv" in suffix else ","
            # Read as TEXT, not str: the parser turns each chunk of rows into Arrow memory, so
            # the whole table never sits in Python strings.
            frame = pd.read_csv(path, dtype=TEXT, keep_default_na=False, sep=sep)
        else:
            raise ManifestError(
                f"{path}: unsupported manifest format {path.suffix!r}; use .csv, .tsv or .parquet"
            )
    except pd.errors.EmptyDataError:
        raise ManifestError(f"{path}: the manifest is empty (no header, no rows)") from None
    except pd.errors.ParserError as err:
        # e.g. a ';'-separated table whose decimals use ',': the rows split unevenly.
        hint = _separator_hint(_header(path, sep))
        reason = str(err).strip()
        raise ManifestError(f"{path}: cannot read the manifest: {reason}{hint}") from None
    except UnicodeDecodeError as err:
        raise ManifestError(
            f"{path}: the manifest is not UTF-8 text (byte {err.object[err.start]:#04x} at "
            f"position {err.start}); save it as UTF-8 (in Excel: 'CSV UTF-8')"
        ) from None
    except (OSError, ValueError) as err:
        raise ManifestError(f"{path}: cannot read the manifest: {err}") from None
    if len(frame) == 0:
        raise ManifestError(f"{path}: the manifest has a header but no rows")
    if not suffix.endswith((".parquet", ".pq")):
        # pandas renames a repeated header 'age' to 'age.1' and would read the first silently.
        frame.columns = _unique_header(path, sep, len(frame.columns))
    frame.columns = [str(c) for c in frame.columns]
    return frame.reset_index(drop=True)


def _unique_header(path: Path, sep: str, n_columns: int) -> list[str]:
    """The CSV header as written (surrounding spaces removed); a name on several columns is a
    :class:`ManifestError`, since which of them a spec means cannot be told."""
    raw = pd.read_csv(path, header=None, nrows=1, dtype=str, keep_default_na=False, sep=sep)
    names = [str(c).strip() for c in raw.iloc[0].tolist()][:n_columns]
    repeated = sorted({n for n in names if n and names.count(n) > 1})
    if repeated:
        where = {n: [i + 1 for i, m in enumerate(names) if m == n] for n in repeated}
        listed = "; ".join(f"{n!r} (columns {', '.join(map(str, at))})" for n, at in where.items())
        raise ManifestError(
            f"{path}: the header names a column more than once: {listed}; rename or remove "
            "the copies so that each name is one column"
        )
    # A blank header cell (e.g. a trailing separator) keeps pandas' 'Unnamed: N' name.
    return [name or f"Unnamed: {i}" for i, name in enumerate(names)]


def _header(path: Path, sep: str) -> list[str]:
    """The column names of a CSV table ([] when even the header cannot be read)."""
    try:
        return [str(c) for c in pd.read_csv(path, dtype=str, sep=sep, nrows=0).columns]
    except (pd.errors.ParserError, UnicodeDecodeError, OSError, ValueError):
        return []


# At most this many resolved paths are remembered per cohort (~200 bytes each).
_RESOLVED_MAX = 1 << 17


@dataclass
class Cohort:
    """A validated spec plus its manifest.

    Attributes:
        spec: the cohort spec.
        frame: the manifest, every column text in Arrow memory (:data:`TEXT`; a cell, an
            iterated value or ``.tolist()`` is a ``str``; blank cells are ``""``, never
            missing), index ``0..N-1``. A frame of ``str`` objects given here is converted.
        split: per row ``"train"``, ``"val"``, ``"test"``, or ``None`` when the split column holds
            a value that is not a split (see :attr:`unknown_split_values`).
        manifest_path: where the manifest was read from.
        root: folder that relative file paths resolve against when it is not the spec's (new
            rows to predict: the new table's own folder, or an explicit ``--root``).
    """

    spec: CohortSpec
    frame: pd.DataFrame
    split: pd.Series
    manifest_path: Path
    # Raw split cells that are neither a split name nor an alias, by row position.
    unknown_split_values: dict[int, str] = field(default_factory=dict)
    root: Path | None = None
    # resolve_path's answers, by (cell, template), for the spec and root they were found with:
    # resolving a path and its root (two realpath walks) was a fifth of reading a cached sample.
    _resolved: dict[tuple[str, str | None], Path | RemoteFile] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    _resolved_for: tuple[CohortSpec, Path | None] | None = field(
        default=None, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        # One representation whatever built the cohort (a test, dataclasses.replace).
        self.frame = as_arrow_text(self.frame)

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
        """Folder that relative file paths resolve against, and that every file must lie in.

        :attr:`root` when set (new rows to predict resolve against their own table's folder, see
        :func:`load_cohort`), else the spec's ``root``, else the folder of the spec's manifest
        (also when ``--manifest`` swaps in another table for ``validate`` or ``fit``, so a subset
        written elsewhere still points at the same files)."""
        return self.root if self.root is not None else self.spec.data_root

    def indices(self, split: str | None = None) -> np.ndarray:
        """Row positions ``(N_split,)`` of one split (all rows with a known split when None)."""
        if split is not None and split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        mask = self.split.isin(SPLITS) if split is None else self.split == split
        return np.flatnonzero(mask.to_numpy())

    def rows(self, split: str | None = None) -> pd.DataFrame:
        """The manifest rows of one split (every known split when None)."""
        return self.frame.iloc[self.indices(split)]

    def resolve_path(self, value: str, template: str | None = None) -> Path | RemoteFile:
        """The file a cell points at: ``template.format(value)`` relative to :attr:`data_root`;
        a :class:`~polymodal.data.remote.RemoteFile` for a URL (``s3://…``), which the spec must
        allow (``allow_urls`` or ``url_prefixes``, see :mod:`polymodal.data.remote`).

        The file must lie inside :attr:`data_root` once ``..``, ``~`` and symbolic links are
        resolved, unless the spec sets ``allow_outside_root: true``: a manifest cell must not
        make polymodal read (and store words of) an arbitrary file on the machine. Every
        file-based modality (image, volume, series, text ``source: file``) comes through here.

        Raises:
            ReadError: the file lies outside the data root (or the path cannot be resolved),
                or it is a URL the spec does not allow;
                like an unreadable file, the caller reports it for the row and column (validate)
                or skips the modality (dataset).
            SpecError: ``template`` cannot be filled with the cell.
        """
        memo_for = self._resolved_for
        if memo_for is None or memo_for[0] is not self.spec or memo_for[1] != self.root:
            self._resolved.clear()  # another spec or root: the answers no longer hold
            self._resolved_for = (self.spec, self.root)
        found = self._resolved.get((value, template))
        if found is None:
            if len(self._resolved) >= _RESOLVED_MAX:
                self._resolved.clear()
            found = self._resolved[(value, template)] = self._resolve_path(value, template)
        return found

    def _resolve_path(self, value: str, template: str | None) -> Path | RemoteFile:
        """:meth:`resolve_path` without the memo (raises the same errors, never remembered)."""
        text = value.strip()
        if template is not None:
            try:
                text = template.format(text)
            except (IndexError, KeyError, ValueError) as err:
                raise SpecError(
                    f"path_template {template!r}: cannot fill it with {value!r} ({err}); "
                    "use a single '{}' where the cell value goes"
                ) from None
        if is_url(text):
            return remote_file(text, self.spec.allow_urls, self.spec.url_prefixes)
        try:
            path = Path(text).expanduser()
        except RuntimeError:  # "~someone" without such a user
            raise ReadError(f"{text!r}: no home folder for '~' in this path") from None
        root = self.data_root
        path = path if path.is_absolute() else root / path
        if not self.spec.allow_outside_root:
            # New rows (a root of their own) can also be given a wider root.
            _check_inside(
                path, root, "" if self.root is None else ", give --root a folder that holds it"
            )
        return path

    def cell(self, row: int, column: str) -> str:
        """The raw string in one cell (row position, column name)."""
        return str(self.frame.iat[row, self.frame.columns.get_loc(column)])

    def file_paths(self, row: int, modality: str) -> list[Path | RemoteFile | None]:
        """Files of a file-based modality for one row, one per view column; None when blank."""
        cfg = self.spec.modalities[modality]
        columns = modality_kind(cfg.kind).file_columns(cfg)
        if not columns:
            raise ValueError(
                f"modality {modality!r} ({cfg.kind}) reads its values from the "
                "manifest's cells, not from files"
            )
        template = cfg.path_template
        paths: list[Path | RemoteFile | None] = []
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
        """The raw labels of a single-column target for every row (None where missing), as an
        ``object`` Series of ``str`` and ``None`` (a text dtype would hold NaN instead)."""
        t = self.spec.targets[target]
        column = getattr(t, "column", None)
        if column is None:
            raise ValueError(f"target {target!r} ({t.kind}) spans several columns")
        values = self.frame[column].str.strip().astype(object)
        return values.where(~values.isin(MISSING_LABEL_VALUES), None)


def _check_inside(path: Path, root: Path, other_fix: str = "") -> None:
    """Raise :class:`ReadError` unless ``path`` (symbolic links followed) lies in ``root``."""
    try:
        real, real_root = path.resolve(), root.resolve()
    except (OSError, RuntimeError, ValueError) as err:  # a loop of links, a NUL byte
        raise ReadError(f"cannot resolve the path ({err})", path) from None
    if real.is_relative_to(real_root):
        return
    leads = "" if Path(os.path.normpath(path)) == real else f" (it leads to {real})"
    raise ReadError(
        f"lies outside the cohort root {root}{leads}; move it inside{other_fix} or set "
        "allow_outside_root: true in the spec",
        path,
    )


def _split_from_column(spec: CohortSpec, frame: pd.DataFrame) -> tuple[pd.Series, dict[int, str]]:
    raw = frame[spec.split.column].str.strip()
    # Aliases are looked up per distinct value, not per row (no Python string per row).
    of_row, distinct = pd.factorize(raw)  # (N,) positions into the few distinct values
    mapped = [spec.split.aliases.get(v, v) for v in distinct]
    of_value = np.array([SPLITS.index(v) if v in SPLITS else -1 for v in mapped], dtype=np.int64)
    codes = of_value[of_row]  # (N,), -1 where not a split
    unknown = {int(i): raw.iat[i] for i in np.flatnonzero(codes < 0)}
    # One str object per split name shared by every row (8 bytes a row, not a string each);
    # object dtype, so that an unknown split is None (a text dtype would hold NaN).
    names = np.array([*SPLITS, None], dtype=object)
    return pd.Series(names[codes], name="split"), unknown


def load_cohort(
    spec: CohortSpec,
    manifest_override: Path | str | None = None,
    *,
    for_inference: bool = False,
    root: Path | str | None = None,
) -> Cohort:
    """Read the manifest a spec points at (or ``manifest_override``) and assign every row a split.

    With ``for_inference=True`` (new patients to predict) label, split and group columns may be
    absent: absent label columns count as missing labels, and no split is assigned. So may every
    column of a modality: that modality is missing for every row (one warning says so), since
    any subset of a patient's data can be predicted. The id column is always required. New
    rows given as ``manifest_override`` (another table than the spec's) resolve their files
    against that table's own folder, never against the training cohort's, where a same-named
    file would be read silently.

    Args:
        root: folder that relative file paths resolve against (and that files must lie in),
            instead of the default above.

    Raises:
        ManifestError: the manifest is missing, unreadable or empty, ``root`` is not a folder,
            or a column the spec declares is absent (the message names the column, the spec
            field and the columns present).
    """
    path = Path(manifest_override).expanduser().resolve() if manifest_override else None
    path = path or spec.manifest_path
    if for_inference and root is None and path != spec.manifest_path:
        root = path.parent
    # Of a Parquet manifest only the columns the spec uses are read (a wide table stays on disk).
    frame = _read_table(path, columns=spec.required_columns())
    return cohort_from_frame(spec, frame, path, for_inference=for_inference, root=root)


def cohort_from_frame(
    spec: CohortSpec,
    frame: pd.DataFrame,
    source: Path,
    *,
    for_inference: bool = False,
    root: Path | str | None = None,
) -> Cohort:
    """A cohort over a table already in memory, every column text as :func:`_read_table`
    gives it (see :func:`polymodal.frames.text_table.as_text_table` for a typed frame); a frame
    of ``str`` objects is converted to :data:`TEXT`, so every cohort holds one representation.

    ``source`` names the table in messages (a manifest file, or the frame's stand-in path).
    The rest is :func:`load_cohort`'s, whose checks it makes.
    """
    from polymodal.data.splits import make_split

    path = source
    # A Parquet manifest read in part names the file's columns for messages.
    in_file = frame.attrs.get(IN_FILE) or list(frame.columns)
    frame = frame.reset_index(drop=True)
    columns = list(frame.columns)
    optional = set()
    if for_inference:
        optional = _label_and_split_columns(spec) | _absent_modality_columns(spec, columns, path)
    for column, declared_by in spec.required_columns().items():
        if column not in columns and column not in optional:
            raise ManifestError(
                f"{path}: column {column!r} (declared by {declared_by}) is not in the manifest; "
                f"columns present: {', '.join(in_file)}{_separator_hint(in_file)}"
            )
    for column in optional - set(columns):
        frame[column] = ""
    frame = as_arrow_text(frame)
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
        root=None if root is None else _folder(root),
    )


def _folder(root: Path | str) -> Path:
    folder = Path(root).expanduser().resolve()
    if not folder.is_dir():
        raise ManifestError(f"{root}: the data root is not a folder; give the folder of the files")
    return folder


def _absent_modality_columns(spec: CohortSpec, columns: list[str], path: Path) -> set[str]:
    """Every column of the modalities that have none in the table (warned once), plus the
    group column: new rows may lack them."""
    absent = {
        name: modality_columns(cfg)
        for name, cfg in spec.modalities.items()
        if not set(modality_columns(cfg)) & set(columns)
    }
    if absent:
        named = ", ".join(f"{name!r} ({', '.join(cols)})" for name, cols in absent.items())
        what = "modality" if len(absent) == 1 else "modalities"
        warnings.warn(
            f"{path}: no column of {what} {named} in the table: missing for every row",
            stacklevel=3,
        )
    optional = {c for cols in absent.values() for c in cols}
    return optional | ({spec.group_column} if spec.group_column else set())


def _separator_hint(columns: list[str]) -> str:
    """A hint when the whole header was read as one column: another separator was used."""
    if len(columns) != 1:
        return ""
    for sep, name in ((";", "';'"), ("\t", "tab")):
        if sep in columns[0]:
            return (
                f"; the manifest looks {name}-separated: polymodal reads comma-separated CSV "
                "(or .tsv, or Parquet); save it with commas"
            )
    return ""


def _label_and_split_columns(spec: CohortSpec) -> set[str]:
    """Columns that new patients to predict need not have: labels and the split."""
    columns = {c for t in spec.targets.values() for c in target_columns(t)}
    if spec.split.column is not None:
        columns.add(spec.split.column)
    return columns
