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

from itertools import pairwise
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from polymodal.data.serialize import check_sentences
from polymodal.errors import SpecError

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


class _TargetBase(_Strict):
    """What every target kind has besides its columns."""

    # The task prompt and its paraphrases (M3FM), e.g. "Predict the lung cancer risk over six
    # years."; the first is the canonical phrasing.
    prompts: list[str] | None = Field(None, min_length=1)

    @field_validator("prompts")
    @classmethod
    def _prompts_have_words(cls, v: list[str] | None) -> list[str] | None:
        for position, prompt in enumerate(v or (), start=1):
            if not any(ch.isalnum() for ch in prompt):
                raise ValueError(
                    f"prompt {position} ({prompt!r}) has no word; write the task as a sentence, "
                    "e.g. 'Predict the lung cancer risk over six years.'"
                )
        return v


class BinaryTarget(_TargetBase):
    kind: Literal["binary"]
    column: str
    # The value that means "positive"; others must be the single negative value.
    positive: str = "1"
    negative: str | None = None
    class_weights: list[float] | None = None


class MulticlassTarget(_TargetBase):
    kind: Literal["multiclass"]
    column: str
    # Class names in a fixed order; inferred (sorted) from the training split when omitted.
    classes: list[str] | None = None
    class_weights: list[float] | Literal["balanced"] | None = None


class MultilabelTarget(_TargetBase):
    kind: Literal["multilabel"]
    # One 0/1 column per label.
    columns: list[str] = Field(min_length=1)


class RegressionTarget(_TargetBase):
    kind: Literal["regression"]
    column: str
    standardize: bool = True


class TimeToEventTarget(_TargetBase):
    kind: Literal["time_to_event"]
    time_column: str
    event_column: str
    # Discrete-time loss: boundaries of the time bins (same unit as the time column).
    bins: list[float] | None = None
    loss: Literal["discrete", "cox"] = "discrete"


class CumulativeRiskTarget(_TargetBase):
    """Cumulative risk by each horizon from an additive hazard layer (M3FM).

    The label of horizon t_k is "event by t_k"; it is known when the event happened (at any
    time) or the follow-up reached t_k without it, and unknown (censored) otherwise.
    """

    kind: Literal["cumulative_risk"]
    time_column: str
    event_column: str
    # Increasing horizons in the unit of the time column, e.g. [1, 2, 3, 4, 5, 6] years.
    horizons: list[float] = Field(min_length=1)
    # True: non-negative hazards (softplus), so the risk never falls with the horizon. False:
    # raw hazards, as the official M3FM code (whose risks can fall).
    monotone: bool = True

    @field_validator("horizons")
    @classmethod
    def _increasing_positive(cls, v: list[float]) -> list[float]:
        if any(h <= 0 for h in v) or any(a >= b for a, b in pairwise(v)):
            raise ValueError(f"expected positive, strictly increasing horizons, got {v}")
        return v


class DigitsTarget(_TargetBase):
    """A non-negative integer below 10**num_digits, predicted digit by digit (M3FM's
    clinical_number task: one 10-way classification per digit)."""

    kind: Literal["digits"]
    column: str
    num_digits: int = Field(3, ge=1, le=6)


Target = Annotated[
    BinaryTarget
    | MulticlassTarget
    | MultilabelTarget
    | RegressionTarget
    | TimeToEventTarget
    | CumulativeRiskTarget
    | DigitsTarget,
    Field(discriminator="kind"),
]
TARGET_KINDS = (
    "binary",
    "multiclass",
    "multilabel",
    "regression",
    "time_to_event",
    "cumulative_risk",
    "digits",
)


# --------------------------------------------------------------------------------------------
# Modalities
# --------------------------------------------------------------------------------------------


def _positive_triple(value: list[float] | None, what: str) -> list[float] | None:
    if value is not None and (len(value) != 3 or any(v <= 0 for v in value)):
        raise ValueError(f"{what}: expected three positive numbers, got {value}")
    return value


# Resource limits: a file (or a setting) beyond them is refused with a message naming the key,
# instead of exhausting the machine's memory. Each can be raised per modality in the spec.
DEFAULT_MAX_PIXELS = 50_000_000  # a 7000 x 7000 whole radiograph fits
DEFAULT_MAX_VOXELS = 512**3  # a 512 x 512 x 512 CT fits
DEFAULT_MAX_CHARS = 1_000_000
DEFAULT_MAX_ROWS = 100_000


class ImageModality(_Strict):
    """2D images: PNG/JPEG (8 or 16 bit) or single-file DICOM; one column per view."""

    kind: Literal["image"]
    columns: list[str] = Field(min_length=1)
    # Build the file path from the cell value, e.g. "images/{}.jpg" (relative to the data root).
    path_template: str | None = None
    # (height, width) in pixels after resizing.
    size: tuple[int, int] = (224, 224)
    channels: Literal[1, 3] = 3
    # imagenet: scale to [0,1] then ImageNet mean/std; minmax: per image to [0,1];
    # zscore: per image zero mean, unit variance; none: raw intensities as float.
    normalize: Literal["imagenet", "minmax", "zscore", "none"] = "imagenet"
    augment: bool = False
    # Largest image (height x width x frames) decoded; a larger file is refused, not read.
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, ge=1)

    @field_validator("size")
    @classmethod
    def _size_pair(cls, v: tuple[int, int]) -> tuple[int, int]:
        if any(s <= 0 for s in v):
            raise ValueError(f"expected two positive integers (height, width), got {list(v)}")
        return v

    @model_validator(mode="after")
    def _size_within_limit(self) -> ImageModality:
        if self.size[0] * self.size[1] > self.max_pixels:
            raise ValueError(
                f"size {list(self.size)} has more pixels than max_pixels ({self.max_pixels})"
            )
        return self


class VolumeModality(_Strict):
    """3D volumes: NIfTI, a DICOM series folder, or .npy/.npz (with optional spacing)."""

    kind: Literal["volume"]
    column: str
    # Build the file path from the cell value, e.g. "images/{}.jpg" (relative to the data root).
    path_template: str | None = None
    # Key inside .npz files (first array when omitted).
    npz_key: str | None = None
    orientation: str | None = "RAS"
    # Resample to this voxel spacing in mm (None keeps the file's spacing).
    spacing: list[float] | None = None
    # Intensity window [low, high] (e.g. HU), then scaled to [0, 1].
    window: tuple[float, float] | None = None
    # Crop or pad (centred) to this size in voxels.
    size: list[int] | None = None
    # Spacing assumed for .npy/.npz files, which carry none.
    default_spacing: list[float] = Field(default_factory=lambda: [1.0, 1.0, 1.0])
    # Largest voxel count read from a file or made by resampling to `spacing`; checked before
    # the memory is allocated.
    max_voxels: int = Field(DEFAULT_MAX_VOXELS, ge=1)

    _check_spacing = field_validator("spacing")(
        lambda v: _positive_triple(v, "spacing")  # type: ignore[misc]
    )
    _check_default_spacing = field_validator("default_spacing")(
        lambda v: _positive_triple(v, "default_spacing")  # type: ignore[misc]
    )

    @field_validator("size")
    @classmethod
    def _size_triple(cls, v: list[int] | None) -> list[int] | None:
        if v is not None and (len(v) != 3 or any(s <= 0 for s in v)):
            raise ValueError(f"expected three positive integers, got {v}")
        return v

    @field_validator("window")
    @classmethod
    def _window_increasing(cls, v: tuple[float, float] | None) -> tuple[float, float] | None:
        if v is not None and v[0] >= v[1]:
            raise ValueError(f"expected [low, high] with low < high, got {list(v)}")
        return v

    @model_validator(mode="after")
    def _size_within_limit(self) -> VolumeModality:
        if self.size is not None and self.size[0] * self.size[1] * self.size[2] > self.max_voxels:
            raise ValueError(
                f"size {self.size} has more voxels than max_voxels ({self.max_voxels})"
            )
        return self


class TabularModality(_Strict):
    """Named numeric and categorical columns; a missing value stays missing, per value."""

    kind: Literal["tabular"]
    numeric: list[str] = Field(default_factory=list)
    categorical: list[str] = Field(default_factory=list)
    # Values that mean "missing" besides an empty cell (e.g. "unknown").
    missing_values: list[str] = Field(default_factory=lambda: list(TEXT_MISSING_VALUES))
    # Categories seen fewer times in training go to the unknown bucket.
    min_category_count: int = Field(1, ge=1)

    @model_validator(mode="after")
    def _some_columns(self) -> TabularModality:
        if not self.numeric and not self.categorical:
            raise ValueError("declare at least one 'numeric' or 'categorical' column")
        return self


# Cells of a text modality's `from_columns` that mean "no value" unless the spec says otherwise.
TEXT_MISSING_VALUES = ("", "NA", "NaN", "nan", "unknown")


class TextModality(_Strict):
    """Free text from a column, from a file whose path is in the column, or clinical data
    serialized to sentences from tabular columns (``from_columns``; see
    :mod:`polymodal.data.serialize`)."""

    kind: Literal["text"]
    column: str | None = None
    # Build the file path from the cell value, e.g. "images/{}.jpg" (relative to the data root).
    path_template: str | None = None
    source: Literal["column", "file"] = "column"
    max_tokens: int = Field(128, ge=4)
    # A local Hugging Face model folder whose tokenizer to use; a word-level tokenizer fitted on
    # the training split otherwise.
    tokenizer: str | None = None
    vocab_size: int = Field(5000, ge=16)
    # Clinical text instead of `column`: one sentence per value of these columns (M3FM).
    from_columns: list[str] | None = Field(None, min_length=1)
    # column -> template with {value}/{column}, or category -> sentence; the other columns get
    # "The {column} is {value}.".
    sentences: dict[str, str | dict[str, str]] = Field(default_factory=dict)
    # Cells of `from_columns` that mean "no value" (their sentence is left out).
    missing_values: list[str] = Field(default_factory=lambda: list(TEXT_MISSING_VALUES))
    # Longest text (characters) read from a cell or file; a longer one is refused.
    max_chars: int = Field(DEFAULT_MAX_CHARS, ge=1)

    @field_validator("sentences", mode="before")
    @classmethod
    def _check_sentences(cls, v: object) -> object:
        return check_sentences(v) if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _one_source(self) -> TextModality:
        if (self.column is None) == (self.from_columns is None):
            raise ValueError("give exactly one of 'column' or 'from_columns'")
        if self.from_columns is None:
            # Compared with the defaults, not the fields set: a dumped spec lists every field.
            if self.sentences or self.missing_values != list(TEXT_MISSING_VALUES):
                raise ValueError("'sentences' and 'missing_values' need 'from_columns'")
            return self
        if self.source != "column" or self.path_template is not None:
            raise ValueError("'from_columns' reads manifest cells: drop 'source'/'path_template'")
        unknown = sorted(set(self.sentences) - set(self.from_columns))
        if unknown:
            raise ValueError(f"sentences for {unknown}, which are not in from_columns")
        return self


class SeriesModality(_Strict):
    """A per-sample CSV/Parquet time series: a time column and channels; irregular sampling."""

    kind: Literal["series"]
    column: str
    # Build the file path from the cell value, e.g. "images/{}.jpg" (relative to the data root).
    path_template: str | None = None
    time_column: str = "time"
    channels: list[str] = Field(min_length=1)
    # Bin width for discretisation (same unit as time); None keeps the raw (irregular) steps.
    bin_width: float | None = Field(None, gt=0)
    # The model sees only the last `max_steps` steps (after binning).
    max_steps: int = Field(128, ge=1)
    # Longest file (rows) read; a longer one is refused before it is parsed further.
    max_rows: int = Field(DEFAULT_MAX_ROWS, ge=1)


Modality = Annotated[
    ImageModality | VolumeModality | TabularModality | TextModality | SeriesModality,
    Field(discriminator="kind"),
]
MODALITY_KINDS = ("image", "volume", "tabular", "text", "series")


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
    if isinstance(m, ImageModality):
        return list(m.columns)
    if isinstance(m, TabularModality):
        return [*m.numeric, *m.categorical]
    if isinstance(m, TextModality) and m.from_columns is not None:
        return list(m.from_columns)
    return [m.column]


def target_columns(t: Target) -> list[str]:
    """Manifest columns a target reads."""
    if isinstance(t, MultilabelTarget):
        return list(t.columns)
    if isinstance(t, TimeToEventTarget | CumulativeRiskTarget):
        return [t.time_column, t.event_column]
    return [t.column]


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
