"""Learning the preprocessing state from the training rows of a cohort (used by
:meth:`polymodal.data.preprocessing.Preprocessor.fit`).

Every ``_fit_*`` function reads only the rows it is given (the training split) and returns
JSON-ready values: nothing here ever sees a validation or test row.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import pandas as pd

from polymodal.data import readers
from polymodal.data.manifest import MISSING_LABEL_VALUES, Cohort, is_missing, parse_number
from polymodal.data.serialize import TabularToText
from polymodal.data.spec import (
    BinaryTarget,
    CumulativeRiskTarget,
    DigitsTarget,
    Modality,
    MulticlassTarget,
    MultilabelTarget,
    RegressionTarget,
    SeriesModality,
    TabularModality,
    Target,
    TextModality,
)
from polymodal.errors import ReadError, SpecError

OnError = Literal["fail", "skip-modality"]
# Special tokens of the word-level tokenizer, in id order: [PAD] must be 0.
WORD_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]")
# Number of discrete time-to-event bins when the spec gives none.
DEFAULT_TIME_BINS = 10
LABEL_MISSING = tuple(MISSING_LABEL_VALUES)
_T = TypeVar("_T")


@dataclass(frozen=True)
class DataIssue:
    """One value or file that could not be used; the sample went on without it.

    ``modality`` names the modality, or the target for a label that could not be encoded.
    """

    row_id: str
    modality: str
    reason: str
    column: str | None = None

    def __str__(self) -> str:
        where = f"row {self.row_id!r}, {self.modality!r}"
        if self.column:
            where += f" (column {self.column!r})"
        return f"{where}: {self.reason}"


def read_or_record(
    read: Callable[..., _T],
    *args: Any,
    row_id: str,
    modality: str,
    column: str | None,
    on_error: OnError,
    issues: list[DataIssue],
) -> _T | None:
    """``read(*args)``; on :class:`ReadError` raise (``"fail"``) or record it and return None."""
    try:
        return read(*args)
    except ReadError as err:
        issue = DataIssue(row_id, modality, str(err), column)
        if on_error == "fail":
            raise ReadError(
                f"{issue}; fix the file or value, or use on_error='skip-modality'"
            ) from None
        issues.append(issue)
        return None


def is_blank(cell: Any) -> bool:
    """True when a file/text/label cell holds no value (blank or a missing marker)."""
    return cell is None or str(cell).strip() in MISSING_LABEL_VALUES


def _mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and std of the finite values; an empty or constant column gets std 1."""
    values = values[np.isfinite(values)]
    if values.size == 0:
        return 0.0, 1.0
    # An overflow gives inf, which Preprocessor.fit refuses, naming the modality and statistic.
    with np.errstate(over="ignore", invalid="ignore"):
        mean, std = float(values.mean()), float(values.std())
    return mean, (std if std > 1e-12 else 1.0)


def _numbers(rows: pd.DataFrame, ids: pd.Series, column: str, missing: Sequence[str]) -> np.ndarray:
    """A training column as float64 ``(N,)``, NaN where missing; one error lists bad rows."""
    values, bad = [], []
    for row_id, cell in zip(ids, rows[column], strict=True):
        try:
            values.append(parse_number(cell, missing))
        except ReadError:
            bad.append(f"{row_id!r} ({cell!r})")
    if bad:
        raise ReadError(
            f"column {column!r}: {len(bad)} training row(s) hold a value that is not a finite "
            f"number: {', '.join(bad[:5])}; fix the values (or list a missing marker in "
            "missing_values)"
        )
    return np.asarray(values, dtype=np.float64)


def parse_flag(cell: str, column: str) -> float:
    """A 0/1 cell (event indicator, multilabel column) as float; NaN when missing."""
    try:
        value = parse_number(cell, LABEL_MISSING)
    except ReadError:
        raise ReadError(f"column {column!r}: {cell!r} is not 0 or 1") from None
    if not (np.isnan(value) or value in (0.0, 1.0)):
        raise ReadError(f"column {column!r}: {cell!r} is not 0 or 1")
    return value


def parse_digits(cell: str, column: str, num_digits: int) -> list[int] | None:
    """A digits-target cell as its ``num_digits`` digits, most significant first; None if blank.

    Raises:
        ReadError: the value is not a non-negative integer below ``10**num_digits``.
    """
    if is_blank(cell):
        return None
    limit = 10**num_digits
    try:
        value = float(str(cell).strip())
    except ValueError:
        value = float("nan")
    if not (np.isfinite(value) and value == int(value) and 0 <= value < limit):
        raise ReadError(
            f"column {column!r}: {str(cell).strip()!r} is not a whole number from 0 to "
            f"{limit - 1} ({num_digits} digits); fix the value, blank it, or raise num_digits"
        )
    return [int(d) for d in str(int(value)).zfill(num_digits)]


def _check_time_event(
    time_column: str, event_column: str, rows: pd.DataFrame, ids: pd.Series
) -> tuple[np.ndarray, np.ndarray]:
    """Training times and events ``(N,)`` (NaN where missing); bad values name their rows."""
    times = _numbers(rows, ids, time_column, LABEL_MISSING)
    events = _numbers(rows, ids, event_column, LABEL_MISSING)
    bad_events = ~np.isnan(events) & ~np.isin(events, (0.0, 1.0))
    if bad_events.any():
        rows_bad = ", ".join(repr(i) for i in ids[bad_events].head(5))
        raise ReadError(
            f"column {event_column!r}: training row(s) {rows_bad} hold an event that is not 0 or 1"
        )
    return times, events


# ----------------------------------------------------------------------------------------------
# Fitting one modality / target on the training rows
# ----------------------------------------------------------------------------------------------


def _fit_tabular(cfg: TabularModality, rows: pd.DataFrame, ids: pd.Series) -> dict[str, Any]:
    stats = [_mean_std(_numbers(rows, ids, c, cfg.missing_values)) for c in cfg.numeric]
    vocabularies = {}
    for column in cfg.categorical:
        counts = Counter(c.strip() for c in rows[column] if not is_missing(c, cfg.missing_values))
        vocabularies[column] = sorted(v for v, n in counts.items() if n >= cfg.min_category_count)
    return {
        "mean": [m for m, _ in stats],
        "std": [s for _, s in stats],
        "vocabularies": vocabularies,
    }


def _word_tokenizer(cfg: TextModality, texts: list[str]) -> str:
    """A word-level tokenizer (lowercase, punctuation split) fitted on ``texts``, as JSON."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors, trainers

    tokenizer = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.NFD(), normalizers.Lowercase(), normalizers.StripAccents()]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()]
    )
    trainer = trainers.WordLevelTrainer(
        vocab_size=cfg.vocab_size, special_tokens=list(WORD_SPECIAL_TOKENS), show_progress=False
    )
    tokenizer.train_from_iterator(texts, trainer=trainer)
    # [CLS] first gives text encoders a summary position even for a one-word note.
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A", special_tokens=[("[CLS]", tokenizer.token_to_id("[CLS]"))]
    )
    tokenizer.enable_truncation(max_length=cfg.max_tokens)
    return tokenizer.to_str()


def hf_tokenizer(folder: str, where: str) -> Any:
    from transformers import AutoTokenizer

    if not Path(folder).is_dir():
        raise SpecError(
            f"{where}: tokenizer folder {folder} not found; give a local Hugging Face model "
            "folder (nothing is downloaded) or leave 'tokenizer' out for a fitted word tokenizer"
        )
    try:
        return AutoTokenizer.from_pretrained(folder, local_files_only=True)
    except (OSError, ValueError) as err:
        raise SpecError(f"{where}: cannot load a tokenizer from {folder}: {err}") from None


def _fit_text(
    name: str,
    cfg: TextModality,
    cohort: Cohort,
    rows: pd.DataFrame,
    on_error: OnError,
    issues: list,
) -> dict[str, Any]:
    if cfg.tokenizer is not None:
        folder = Path(cfg.tokenizer).expanduser()
        folder = str((folder if folder.is_absolute() else cohort.spec.base_dir / folder).resolve())
        tokenizer = hf_tokenizer(folder, f"modalities.{name}.tokenizer")
        pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        return {"tokenizer_folder": folder, "vocab_size": len(tokenizer), "pad_id": int(pad_id)}
    if cfg.from_columns is not None:
        texts = _clinical_texts(name, cfg, rows[cohort.spec.id_column], rows, on_error, issues)
    else:
        texts = _column_texts(name, cfg, cohort, rows, on_error, issues)
    tokenizer_json = _word_tokenizer(cfg, texts)
    vocab_size = len(json.loads(tokenizer_json)["model"]["vocab"])
    return {"tokenizer_json": tokenizer_json, "vocab_size": vocab_size, "pad_id": 0}


def _clinical_texts(
    name: str,
    cfg: TextModality,
    ids: pd.Series,
    rows: pd.DataFrame,
    on_error: OnError,
    issues: list,
) -> list[str]:
    """The serialized clinical text of every training row that has one."""
    serializer = TabularToText.from_modality(cfg)
    texts = []
    for row_id, cells in zip(ids, rows[cfg.from_columns].to_dict("records"), strict=True):
        bad: list[tuple[str, str]] = []
        text = read_or_record(
            serializer,
            cells,
            None if on_error == "fail" else bad,
            row_id=row_id,
            modality=name,
            column=None,
            on_error=on_error,
            issues=issues,
        )
        issues.extend(DataIssue(row_id, name, reason, column) for column, reason in bad)
        if text is not None and text.text:
            texts.append(text.text)
    return texts


def _column_texts(
    name: str,
    cfg: TextModality,
    cohort: Cohort,
    rows: pd.DataFrame,
    on_error: OnError,
    issues: list,
) -> list[str]:
    """The text of every training row that has one, from its column or file."""
    texts = []
    for row_id, cell in zip(rows[cohort.spec.id_column], rows[cfg.column], strict=True):
        text = read_or_record(
            readers.read_text,
            cell,
            cfg,
            cohort.resolve_path,
            row_id=row_id,
            modality=name,
            column=cfg.column,
            on_error=on_error,
            issues=issues,
        )
        if text:
            texts.append(text)
    return texts


def _fit_series(
    name: str,
    cfg: SeriesModality,
    cohort: Cohort,
    rows: pd.DataFrame,
    on_error: OnError,
    issues: list,
) -> dict[str, Any]:
    n_channels = len(cfg.channels)
    # Sums of values shifted by a per-channel reference keep the variance numerically stable.
    reference = np.full(n_channels, np.nan)
    total, total_sq, count = np.zeros(n_channels), np.zeros(n_channels), np.zeros(n_channels)
    spans = []
    for row_id, cell in zip(rows[cohort.spec.id_column], rows[cfg.column], strict=True):
        if is_blank(cell):
            continue
        read = read_or_record(
            readers.read_series,
            cohort.resolve_path(cell, cfg.path_template),
            cfg,
            row_id=row_id,
            modality=name,
            column=cfg.column,
            on_error=on_error,
            issues=issues,
        )
        if read is None:
            continue
        times, values = read  # (T,), (T, C)
        observed = np.isfinite(values)
        first = np.where(observed.any(0), values[observed.argmax(0), np.arange(n_channels)], np.nan)
        reference = np.where(np.isnan(reference), first, reference)
        shifted = np.where(observed, values - np.nan_to_num(reference), 0.0)
        total, total_sq, count = (
            total + shifted.sum(0),
            total_sq + (shifted**2).sum(0),
            count + observed.sum(0),
        )
        spans.append(float(times[-1] - times[0]))
    safe = np.maximum(count, 1)
    mean = np.where(count > 0, np.nan_to_num(reference) + total / safe, 0.0)
    std = np.sqrt(np.maximum(total_sq / safe - (total / safe) ** 2, 0.0))
    std = np.where((count > 0) & (std > 1e-12), std, 1.0)
    # Times become (t - first time) / time_scale: most training series then span about [0, 1].
    time_scale = float(np.percentile(spans, 95)) if spans else 0.0
    return {
        "mean": mean.tolist(),
        "std": std.tolist(),
        "time_scale": time_scale if time_scale > 0 else 1.0,
    }


def fit_target(name: str, cfg: Target, rows: pd.DataFrame, ids: pd.Series) -> dict[str, Any]:
    where = f"targets.{name}"
    if isinstance(cfg, BinaryTarget):
        seen = {c.strip() for c in rows[cfg.column] if not is_blank(c)}
        others = sorted(seen - {cfg.positive} - ({cfg.negative} if cfg.negative else set()))
        if cfg.negative is None and len(others) == 1:
            return {"negative": others[0]}
        if cfg.negative is not None and not others:
            return {"negative": cfg.negative}
        raise SpecError(
            f"{where}: column {cfg.column!r} holds {others or 'no value'} in the training split "
            f"besides the positive value {cfg.positive!r}"
            + (f" and the negative value {cfg.negative!r}" if cfg.negative else "")
            + "; a binary target needs exactly one negative value (set 'negative' or fix the labels)"
        )
    if isinstance(cfg, MulticlassTarget):
        labels = [c.strip() for c in rows[cfg.column] if not is_blank(c)]
        classes = list(cfg.classes) if cfg.classes else sorted(set(labels))
        unknown = sorted(set(labels) - set(classes))
        if unknown:
            raise SpecError(
                f"{where}: column {cfg.column!r} holds {unknown} in the training split, which are "
                f"not in 'classes' {classes}; add them to 'classes' or fix the labels"
            )
        if len(classes) < 2:
            raise SpecError(
                f"{where}: column {cfg.column!r} holds only {classes} in the training split; "
                "a multiclass target needs at least two classes"
            )
        counts = Counter(labels)
        weights: list[float] | None = None
        if cfg.class_weights == "balanced":
            empty = [c for c in classes if counts[c] == 0]
            if empty:
                raise SpecError(
                    f"{where}: class_weights 'balanced' needs training rows of every class; "
                    f"none for {empty} (give explicit class_weights or drop the class)"
                )
            weights = [len(labels) / (len(classes) * counts[c]) for c in classes]
        elif cfg.class_weights is not None:
            if len(cfg.class_weights) != len(classes):
                raise SpecError(
                    f"{where}: class_weights has {len(cfg.class_weights)} values for "
                    f"{len(classes)} classes {classes}"
                )
            weights = [float(w) for w in cfg.class_weights]
        return {"classes": classes, "class_weights": weights}
    if isinstance(cfg, MultilabelTarget):
        for column in cfg.columns:
            for row_id, cell in zip(ids, rows[column], strict=True):
                try:
                    parse_flag(cell, column)
                except ReadError as err:
                    raise ReadError(f"training row {row_id!r}: {err}") from None
        return {}
    if isinstance(cfg, RegressionTarget):
        mean, std = _mean_std(_numbers(rows, ids, cfg.column, LABEL_MISSING))
        return {"mean": mean, "std": std}
    if isinstance(cfg, DigitsTarget):
        for row_id, cell in zip(ids, rows[cfg.column], strict=True):
            try:
                parse_digits(cell, cfg.column, cfg.num_digits)
            except ReadError as err:
                raise ReadError(f"{where}: training row {row_id!r}: {err}") from None
        return {}
    times, events = _check_time_event(cfg.time_column, cfg.event_column, rows, ids)
    if isinstance(cfg, CumulativeRiskTarget):
        negative = times < 0
        if negative.any():
            rows_bad = ", ".join(repr(i) for i in ids[negative].head(5))
            raise ReadError(
                f"{where}: column {cfg.time_column!r}: training row(s) {rows_bad} hold a "
                "negative time; follow-up times start at 0"
            )
        # The horizons come from the spec; nothing else to learn.
        return {}
    if cfg.bins is not None:
        if not cfg.bins or any(a >= b for a, b in zip(cfg.bins, cfg.bins[1:], strict=False)):
            raise SpecError(f"{where}.bins: expected increasing upper bin edges, got {cfg.bins}")
        return {"bins": [float(b) for b in cfg.bins]}
    known = np.isfinite(times) & np.isfinite(events)
    event_times = times[known & (events == 1)]
    event_times = event_times if event_times.size else times[known]
    if event_times.size == 0:
        raise SpecError(
            f"{where}: no training row has a time in {cfg.time_column!r}; cannot choose time "
            "bins (give 'bins' in the spec or fix the split)"
        )
    quantiles = np.linspace(1.0 / DEFAULT_TIME_BINS, 1.0, DEFAULT_TIME_BINS)
    return {"bins": np.unique(np.quantile(event_times, quantiles)).tolist()}


def fit_modality(
    name: str, cfg: Modality, cohort: Cohort, rows: pd.DataFrame, on_error: OnError, issues: list
) -> dict[str, Any]:
    if isinstance(cfg, TabularModality):
        return _fit_tabular(cfg, rows, rows[cohort.spec.id_column])
    if isinstance(cfg, TextModality):
        return _fit_text(name, cfg, cohort, rows, on_error, issues)
    if isinstance(cfg, SeriesModality):
        return _fit_series(name, cfg, cohort, rows, on_error, issues)
    # Images and volumes are normalised per file by their reader: nothing to learn.
    return {}
