"""The cohort spec: a YAML file that says where a cohort's manifest is and what its columns mean.

A spec names the id and group columns, how to split, what to predict (targets) and which inputs
exist (modalities). It is validated by pydantic; every error names the field it is about, e.g.
``modalities.ct.spacing: expected three positive numbers``.

Example::

    name: demo
    manifest: manifest.csv            # relative to this file
    id_column: sample_id
    group_column: patient_id          # every split keeps a group in one split
    split:
      column: split                   # or: recipe: {train: 0.7, val: 0.15, test: 0.15, seed: 0}
    targets:
      label: {kind: binary, column: label, positive: "1"}
      cancer: {kind: cumulative_risk, time_column: years, event_column: cancer,
               horizons: [1, 2, 3, 4, 5, 6],
               prompts: ["Predict the lung cancer risk over six years."]}
      pack_years: {kind: digits, column: pack_years, num_digits: 3}
    modalities:
      xray:  {kind: image, columns: [xray_path], size: [64, 64], channels: 1}
      ct:    {kind: volume, column: ct_path, spacing: [2, 2, 2], size: [32, 32, 32]}
      labs:  {kind: tabular, numeric: [age, crp], categorical: [sex]}
      note:  {kind: text, column: note}
      clinical: {kind: text, from_columns: [age, smoking], sentences: {age: "Aged {value}."}}
      vitals: {kind: series, column: vitals_path, time_column: t, channels: [hr, sbp]}
    exclude_columns: [dx_type]        # never an input (e.g. leaks the label)
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from polymodal import modalities, targets
from polymodal.errors import SpecError

# The modality spec classes and limits moved to their kinds; importable from here as before.
from polymodal.modalities.image import DEFAULT_MAX_PIXELS, ImageModality  # noqa: F401
from polymodal.modalities.series import DEFAULT_MAX_ROWS, SeriesModality  # noqa: F401
from polymodal.modalities.tabular import TabularModality  # noqa: F401
from polymodal.modalities.text import (  # noqa: F401
    DEFAULT_MAX_CHARS,
    TEXT_MISSING_VALUES,
    TextModality,
)
from polymodal.modalities.volume import DEFAULT_MAX_VOXELS, VolumeModality  # noqa: F401

SPLITS = ("train", "val", "test")


class _Strict(BaseModel):
    """Base for spec sections: unknown keys are errors (a typo must not be silently ignored)."""

    # NaN and infinity are never a meaningful setting (a window of [-inf, inf], a spacing of
    # nan); YAML's `.nan`/`.inf` are refused here rather than met as NaN voxels later.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# --------------------------------------------------------------------------------------------
# Splits
# --------------------------------------------------------------------------------------------


class SplitRecipe(_Strict):
    """Grouped, seeded split fractions; stratified on the first target when it is categorical."""

    train: float = Field(0.7, gt=0, lt=1)
    val: float = Field(0.15, ge=0, lt=1)
    test: float = Field(0.15, ge=0, lt=1)
    seed: int = 0
    stratify: bool = True

    @model_validator(mode="after")
    def _fractions_sum_to_one(self) -> SplitRecipe:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test must be 1, got {total:g}")
        return self


class SplitSpec(_Strict):
    """Either a manifest column holding train/val/test, or a recipe that makes the split."""

    column: str | None = None
    recipe: SplitRecipe | None = None
    # Values of the split column that mean train / val / test (e.g. {"valid": "val"}).
    aliases: dict[str, Literal["train", "val", "test"]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _exactly_one(self) -> SplitSpec:
        if (self.column is None) == (self.recipe is None):
            raise ValueError("give exactly one of 'column' or 'recipe'")
        return self


# --------------------------------------------------------------------------------------------
# Targets
# --------------------------------------------------------------------------------------------


# Each kind's section is its own class in polymodal.targets (BinaryTarget in targets/binary.py,
# …); the union of the registered ones, told apart by ``kind``, is a spec's target.
Target = targets.spec_union()
TARGET_KINDS = tuple(targets.TARGETS.names())


def __getattr__(name: str) -> type:
    """The spec class of a target kind by its class name (``BinaryTarget``), for code that
    imported it from here before the kinds moved to :mod:`polymodal.targets`."""
    for kind in targets.kinds():
        if kind.spec.__name__ == name:
            return kind.spec
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------------------------
# Modalities
# --------------------------------------------------------------------------------------------


# Each kind's section is its own class in polymodal.modalities (ImageModality in
# modalities/image.py, …; imported here for code that imported them from this module); the union
# of the registered ones, told apart by ``kind``, is a spec's modality.
Modality = modalities.spec_union()
MODALITY_KINDS = tuple(modalities.MODALITIES.names())


# --------------------------------------------------------------------------------------------
# The cohort spec
# --------------------------------------------------------------------------------------------


class CohortSpec(_Strict):
    """A whole cohort: manifest location, ids, groups, split, targets and modalities."""

    name: str = "cohort"
    manifest: str
    id_column: str
    group_column: str | None = None
    split: SplitSpec
    targets: dict[str, Target] = Field(min_length=1)
    modalities: dict[str, Modality] = Field(min_length=1)
    # Columns that must never become model inputs (e.g. they leak the label).
    exclude_columns: list[str] = Field(default_factory=list)
    # Folder that relative file paths in the manifest are resolved against (default: the
    # manifest's folder).
    root: str | None = None
    # Files named by the manifest must lie inside the data root (no ``..`` or absolute path
    # leaving it) unless the cohort owner says otherwise: a cell must not make polymodal read
    # (and store words of) an arbitrary file on the machine.
    allow_outside_root: bool = False
    # Cells (after path_template) may name URLs on object storage (s3://, gs://, https://, ...)
    # only when the owner allows them: every URL (allow_urls), or those under url_prefixes
    # (e.g. ["s3://bucket/cohort/"]); see polymodal.data.remote.
    allow_urls: bool = False
    url_prefixes: list[str] = Field(default_factory=list)

    # Where the spec was loaded from; paths in the spec are relative to it.
    base_dir: Path = Field(default=Path("."), exclude=True)

    @model_validator(mode="after")
    def _no_excluded_inputs(self) -> CohortSpec:
        used = {c: name for name, m in self.modalities.items() for c in modality_columns(m)}
        for col in self.exclude_columns:
            if col in used:
                raise ValueError(
                    f"column {col!r} is in exclude_columns but modality {used[col]!r} uses it"
                )
        return self

    @model_validator(mode="after")
    def _prefixes_are_urls(self) -> CohortSpec:
        for prefix in self.url_prefixes:
            if "://" not in prefix or prefix.endswith("://"):
                raise ValueError(
                    f"url_prefixes: {prefix!r} is not a URL prefix; give one such as "
                    "'s3://bucket/cohort/'"
                )
        return self

    @property
    def manifest_path(self) -> Path:
        return (self.base_dir / self.manifest).resolve()

    @property
    def data_root(self) -> Path:
        if self.root is not None:
            return (self.base_dir / self.root).resolve()
        return self.manifest_path.parent

    def required_columns(self) -> dict[str, str]:
        """Every manifest column the spec uses, mapped to the field that declared it."""
        cols: dict[str, str] = {self.id_column: "id_column"}
        if self.group_column:
            cols[self.group_column] = "group_column"
        if self.split.column:
            cols[self.split.column] = "split.column"
        for name, t in self.targets.items():
            for c in target_columns(t):
                cols.setdefault(c, f"targets.{name}")
        for name, m in self.modalities.items():
            for c in modality_columns(m):
                cols.setdefault(c, f"modalities.{name}")
        return cols


def modality_columns(m: Modality) -> list[str]:
    """Manifest columns a modality reads."""
    return modalities.get(m.kind).columns(m)


def target_columns(t: Target) -> list[str]:
    """Manifest columns a target reads."""
    return targets.get(t.kind).columns(t)


def _format_validation_error(err: ValidationError, source: str) -> str:
    lines = [f"{source}: the cohort spec is not valid:"]
    for e in err.errors():
        parts = [str(p) for p in e["loc"] if not str(p).startswith("function-after")]
        # pydantic names the union member (the 'kind') after the key; the user never wrote it.
        if len(parts) > 2 and parts[0] in ("modalities", "targets"):
            del parts[2]
        loc = ".".join(parts)
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "union_tag_invalid":
            msg = f"unknown kind {e['input'].get('kind')!r}; expected one of {MODALITY_KINDS}"
            if loc.startswith("targets"):
                msg = f"unknown kind {e['input'].get('kind')!r}; expected one of {TARGET_KINDS}"
        elif e["type"] == "union_tag_not_found":
            msg = "missing 'kind'"
        lines.append(f"  {loc or '(top level)'}: {msg}")
    return "\n".join(lines)


def parse_spec(data: object, base_dir: Path | str = ".", source: str = "spec") -> CohortSpec:
    """Validate a spec given as a dict; relative paths resolve against ``base_dir``.

    Raises:
        SpecError: for any input that is not a valid spec; nothing else. Validation errors name
            their field; an exception a validator did not foresee (a bug, or a value of a type
            no check expected) is turned into a SpecError naming ``source`` and the exception
            type, so a hostile spec can never end in a traceback.
    """
    if data is None:
        raise SpecError(f"{source}: the cohort spec is empty; see docs for an example spec")
    if not isinstance(data, dict):
        raise SpecError(f"{source}: expected a mapping at the top level, got {type(data).__name__}")
    keys = [k for k in data if not isinstance(k, str)]
    if keys:
        raise SpecError(f"{source}: top-level keys must be names, got {keys[0]!r}")
    try:
        return CohortSpec.model_validate({**data, "base_dir": Path(base_dir)})
    except ValidationError as err:
        raise SpecError(_format_validation_error(err, source)) from None
    except (TypeError, ValueError, AttributeError, KeyError, IndexError, RecursionError) as err:
        # Safety net: pydantic turns a validator's ValueError into a ValidationError, but a
        # validator meeting a type it did not expect raises something else.
        raise SpecError(
            f"{source}: the cohort spec is not valid ({type(err).__name__}: {err})"
        ) from None


def _read_spec_text(path: Path) -> str:
    """The file's text (UTF-8, a BOM allowed); SpecError for an unreadable or non-UTF-8 file."""
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise SpecError(f"{path}: cannot read the cohort spec: {err.strerror or err}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[: err.start].count(b"\n") + 1
        raise SpecError(
            f"{path}: the cohort spec is not UTF-8 text: byte {err.start} (line {line}, "
            f"value 0x{raw[err.start]:02x}) cannot be decoded; save the file as UTF-8"
        ) from None


# What PyYAML's safe constructors raise, besides YAMLError, for a value they cannot build.
_YAML_BUILD_ERRORS = (
    ValueError,
    TypeError,
    AttributeError,
    KeyError,
    IndexError,
    OverflowError,
    RecursionError,
)
_TAG_NAMES = {
    "tag:yaml.org,2002:timestamp": "a date",
    "tag:yaml.org,2002:int": "an integer",
    "tag:yaml.org,2002:float": "a number",
}


def _unbuildable_value(text: str, err: Exception) -> str:
    """Where a well-formed YAML value cannot be built (e.g. the date ``2026-13-45``)."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except (yaml.YAMLError, RecursionError):
        return f"{type(err).__name__}: {err}"
    constructor = yaml.SafeLoader("")
    pending = [] if root is None else [root]
    while pending:
        node = pending.pop()
        if isinstance(node, yaml.ScalarNode):
            try:
                constructor.construct_object(node, deep=True)
            except _YAML_BUILD_ERRORS:
                return (
                    f"line {node.start_mark.line + 1}: {node.value!r} cannot be read as "
                    f"{_TAG_NAMES.get(node.tag, node.tag)} ({err}); quote it if it is meant as text"
                )
        elif isinstance(node, yaml.SequenceNode):
            pending.extend(node.value)
        elif isinstance(node, yaml.MappingNode):
            pending.extend(part for pair in node.value for part in pair)
    return f"{type(err).__name__}: {err}"


def load_spec(path: Path | str) -> CohortSpec:
    """Read and validate a cohort spec YAML file.

    Raises:
        SpecError: the file is missing, unreadable, not UTF-8, not YAML, or not a valid spec
            (and nothing else, whatever the file holds).
    """
    path = Path(path)
    if not path.is_file():
        if path.is_dir():
            raise SpecError(f"{path}: is a folder; give the path to the cohort spec YAML file")
        raise SpecError(f"{path}: cohort spec not found; give the path to a YAML file")
    text = _read_spec_text(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {err}") from None
    except _YAML_BUILD_ERRORS as err:
        # PyYAML's constructors raise these for well-formed but impossible values, e.g. the
        # date 2026-13-45 (ValueError), `!!timestamp x` (AttributeError) or a nesting too deep
        # to build (RecursionError).
        raise SpecError(f"{path}: not valid YAML: {_unbuildable_value(text, err)}") from None
    return parse_spec(data, base_dir=path.parent.resolve(), source=str(path))


def dump_spec(spec: CohortSpec) -> str:
    """The spec as YAML (without the load location), e.g. to save beside a trained model."""
    return yaml.safe_dump(spec.model_dump(mode="json", exclude_none=True), sort_keys=False)
