"""Free text from a column or from a file the column names, or clinical values serialized to
sentences (``from_columns``, M3FM; see :mod:`polymodal.data.serialize`).

Fields ``input_ids`` ``(L,)`` and ``attention_mask`` ``(L,)``, padded by collate (see
:mod:`polymodal.data.batch`). Fitted: a word-level tokenizer on the training texts (words of at
least ``min_count`` patients only), or a local Hugging Face tokenizer folder. Elements are the
text's sentences.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor

from polymodal.data import readers
from polymodal.data.cells import DEFAULT_MISSING_VALUES
from polymodal.data.issues import DataIssue, read_or_record
from polymodal.data.serialize import TabularToText, check_sentences
from polymodal.errors import ReadError, SpecError
from polymodal.modalities.base import (
    MODALITIES,
    CellCheck,
    Example,
    Fitted,
    FittedInputs,
    ModalityKind,
    ModalitySpec,
    PathResolver,
    RowReader,
    TrainingRows,
)
from polymodal.modalities.elements import (
    Element,
    Fields,
    Occlusion,
    split_sentences,
    text_without,
)

# Cells of a text modality's `from_columns` that mean "no value" unless the spec says otherwise.
TEXT_MISSING_VALUES = DEFAULT_MISSING_VALUES
DEFAULT_MAX_CHARS = 1_000_000
# Special tokens of the word-level tokenizer, in id order: [PAD] must be 0.
WORD_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]")


class TextModality(ModalitySpec):
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
    # A fitted word tokenizer keeps only words that occur in the texts of at least this many
    # patients (distinct group ids): a name or record number seen in one patient's notes never
    # reaches the model folder. A Hugging Face `tokenizer` folder is used as it is.
    min_count: int = Field(5, ge=1)
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


def word_tokenizer(cfg: TextModality, texts: Sequence[tuple[str, str]]) -> str:
    """A word-level tokenizer (lowercase, punctuation split) fitted on ``(patient, text)`` pairs,
    as JSON.

    The vocabulary keeps the words that occur in the texts of at least ``cfg.min_count``
    distinct patients, the most frequent first, up to ``cfg.vocab_size`` entries with the
    special tokens; every other word reads as ``[UNK]``.
    """
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    normalizer = normalizers.Sequence(
        [normalizers.NFD(), normalizers.Lowercase(), normalizers.StripAccents()]
    )
    pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Whitespace(), pre_tokenizers.Punctuation()]
    )
    vocab = {token: i for i, token in enumerate(WORD_SPECIAL_TOKENS)}
    for word in _shared_words(texts, normalizer, pre_tokenizer, cfg.min_count):
        if len(vocab) >= cfg.vocab_size:
            break
        vocab.setdefault(word, len(vocab))
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    # [CLS] first gives text encoders a summary position even for a one-word note.
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A", special_tokens=[("[CLS]", vocab["[CLS]"])]
    )
    tokenizer.enable_truncation(max_length=cfg.max_tokens)
    return tokenizer.to_str()


def _shared_words(
    texts: Sequence[tuple[str, str]], normalizer: Any, pre_tokenizer: Any, min_count: int
) -> list[str]:
    """The words of ``(patient, text)`` pairs found in at least ``min_count`` patients' texts,
    most frequent first (ties in alphabetical order, so that the vocabulary is reproducible)."""
    occurrences: Counter[str] = Counter()
    patients: dict[str, set[str]] = {}
    for patient, text in texts:
        words = [w for w, _ in pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(text))]
        occurrences.update(words)
        for word in set(words):
            patients.setdefault(word, set()).add(patient)
    shared = [w for w, who in patients.items() if len(who) >= min_count]
    return sorted(shared, key=lambda w: (-occurrences[w], w))


def hf_tokenizer(folder: str, where: str) -> Any:
    """The tokenizer of a local Hugging Face model folder (nothing is downloaded)."""
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


def clinical_text(
    cfg: TextModality, cells: Mapping[str, str], read: Any, strict: bool
) -> tuple[str | None, list[tuple[str, str]]]:
    """One row's ``from_columns`` cells as sentences, read through ``read`` (which records or
    raises a ReadError), and the ``(column, reason)`` of each value that did not fit its
    template and was left out (under ``strict``, such a value raises instead)."""
    bad: list[tuple[str, str]] | None = None if strict else []
    serialized = read(TabularToText.from_modality(cfg), cells, bad)
    return (None if serialized is None else serialized.text), bad or []


@MODALITIES.register("text")
class Text(ModalityKind):
    name = "text"
    spec = TextModality
    fields = ("input_ids", "attention_mask")
    default_encoder = "text_transformer"
    info_keys = ("vocab_size", "pad_id", "max_tokens", "tokenizer")
    padded_fields = frozenset({"input_ids", "attention_mask"})
    pad_id_field = "input_ids"
    token_layout = "words"

    def columns(self, cfg: TextModality) -> list[str]:
        return list(cfg.from_columns) if cfg.from_columns is not None else [cfg.column]

    def file_columns(self, cfg: TextModality) -> list[str]:
        return [cfg.column] if cfg.source == "file" and cfg.column is not None else []

    def read_file(self, cfg: TextModality, cell: str, resolve: PathResolver) -> str:
        """The text by :func:`~polymodal.data.readers.read_text` (from the file the cell names)."""
        return readers.read_text(cell, cfg, resolve)

    def check_cells(self, cfg: TextModality, frame: pd.DataFrame) -> CellCheck | None:
        """A text in its column: present where the cell is not blank. Clinical text: every row
        serialized; present where some sentence is, and each value that does not fit its
        template is a problem (its sentence is left out). A text in files: None."""
        if cfg.from_columns is not None:
            serializer = TabularToText.from_modality(cfg)
            present = np.zeros(len(frame), dtype=bool)
            problems = []
            for pos, cells in enumerate(frame[cfg.from_columns].to_dict("records")):
                bad: list[tuple[str, str]] = []
                present[pos] = bool(serializer(cells, bad).text)
                problems.extend((pos, column, reason) for column, reason in bad)
            return CellCheck(present, problems)
        if cfg.source == "column":
            return CellCheck((frame[cfg.column].str.strip() != "").to_numpy())
        return None

    # ------------------------------------------------------------------------------------------
    # Fitting
    # ------------------------------------------------------------------------------------------

    def fit(self, name: str, cfg: TextModality, train: TrainingRows) -> dict[str, Any]:
        if cfg.tokenizer is not None:
            folder = Path(cfg.tokenizer).expanduser()
            folder = folder if folder.is_absolute() else train.base_dir / folder
            tokenizer = hf_tokenizer(str(folder.resolve()), f"modalities.{name}.tokenizer")
            pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
            return {
                "tokenizer_folder": str(folder.resolve()),
                "vocab_size": len(tokenizer),
                "pad_id": int(pad_id),
            }
        tokenizer_json = word_tokenizer(cfg, self._training_texts(name, cfg, train))
        vocab_size = len(json.loads(tokenizer_json)["model"]["vocab"])
        return {"tokenizer_json": tokenizer_json, "vocab_size": vocab_size, "pad_id": 0}

    def _training_texts(
        self, name: str, cfg: TextModality, train: TrainingRows
    ) -> list[tuple[str, str]]:
        """``(patient, text)`` of every training row that has a text, from its cells, column or
        file; the patient is the row's group id (its own id without a group column)."""
        texts = []
        columns = self.columns(cfg)
        patients = train.ids if train.groups is None else train.groups
        records = train.rows[columns].to_dict("records")
        for row_id, patient, cells in zip(train.ids, patients, records, strict=True):

            def read(fn: Any, *args: Any, column: str | None, row_id: str = row_id) -> Any:
                return read_or_record(
                    fn,
                    *args,
                    row_id=row_id,
                    modality=name,
                    column=column,
                    on_error=train.on_error,
                    issues=train.issues,
                )

            if cfg.from_columns is not None:
                text, bad = clinical_text(
                    cfg, cells, lambda *a: read(*a, column=None), train.on_error == "fail"
                )
                train.issues.extend(DataIssue(row_id, name, why, column) for column, why in bad)
            else:
                cell = cells[cfg.column]
                text = read(readers.read_text, cell, cfg, train.resolve, column=cfg.column)
            if text:
                texts.append((str(patient), text))
        return texts

    def input_info(self, cfg: TextModality, state: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "kind": self.name,
            "vocab_size": state["vocab_size"],
            "pad_id": state["pad_id"],
            "max_tokens": cfg.max_tokens,
            "tokenizer": state.get("tokenizer_folder"),
        }

    def pad_id(self, cfg: TextModality, state: Mapping[str, Any]) -> int | None:
        return int(state["pad_id"])

    # ------------------------------------------------------------------------------------------
    # Transform
    # ------------------------------------------------------------------------------------------

    def empty_inputs(self, fitted: Fitted) -> dict[str, Tensor]:
        return {
            "input_ids": torch.full((1,), fitted.state["pad_id"], dtype=torch.int64),
            "attention_mask": torch.zeros(1, dtype=torch.bool),
        }

    def tokenizer(self, fitted: Fitted) -> Any:
        """The fitted word tokenizer, or the folder's Hugging Face one; built once per process."""
        if "tokenizer" not in fitted.scratch:
            if "tokenizer_json" in fitted.state:
                from tokenizers import Tokenizer

                fitted.scratch["tokenizer"] = Tokenizer.from_str(fitted.state["tokenizer_json"])
            else:
                where = f"modalities.{fitted.name}.tokenizer"
                fitted.scratch["tokenizer"] = hf_tokenizer(fitted.state["tokenizer_folder"], where)
        return fitted.scratch["tokenizer"]

    def transform(self, fitted: Fitted, text: str) -> dict[str, Tensor]:
        """A non-empty text -> ``input_ids`` ``(L,)`` (L <= max_tokens) and ``attention_mask``."""
        tokenizer = self.tokenizer(fitted)
        if hasattr(tokenizer, "encode_batch"):  # a fitted `tokenizers.Tokenizer`
            ids = tokenizer.encode(text).ids
        else:  # a transformers tokenizer from a local folder
            ids = tokenizer(text, truncation=True, max_length=fitted.cfg.max_tokens)["input_ids"]
        if not ids:
            raise ReadError("the text gives no tokens")
        input_ids = torch.tensor(ids, dtype=torch.int64)
        return {"input_ids": input_ids, "attention_mask": torch.ones(len(ids), dtype=torch.bool)}

    def encode(
        self, prep: FittedInputs, name: str, cells: Mapping[str, str], row: RowReader
    ) -> dict[str, Tensor] | None:
        fitted = prep.fitted(name)
        cfg = fitted.cfg
        if cfg.from_columns is not None:

            def read(fn: Any, *args: Any) -> Any:
                return row.read(fn, *args, modality=name, column=None)

            text, bad = clinical_text(cfg, cells, read, row.on_error == "fail")
            row.issues.extend(
                DataIssue(row.row_id, name, f"{why}; the sentence is left out", column)
                for column, why in bad
            )
        else:
            cell = cells.get(cfg.column, "")
            text = row.read(
                readers.read_text, cell, cfg, row.resolve, modality=name, column=cfg.column
            )
        if not text:
            return None
        return row.read(self.transform, fitted, text, modality=name, column=cfg.column)

    # ------------------------------------------------------------------------------------------
    # Explanation
    # ------------------------------------------------------------------------------------------

    def sentences(
        self, cfg: TextModality, cells: Mapping[str, str], resolve: PathResolver
    ) -> list[tuple[str, str]]:
        """``(label, sentence)`` of a row's text, in order; empty when the row has no text.

        A ``from_columns`` text has one sentence per column with a value (label: the column),
        joined by one space as :class:`~polymodal.data.serialize.TabularToText` joins them; a
        free text is split on sentence punctuation (labels ``s1``, ``s2``, ...) and keeps its
        own white space.
        """
        if cfg.from_columns is not None:
            pairs = TabularToText.from_modality(cfg)(cells, []).elements
            return [
                (column, s + (" " if i < len(pairs) - 1 else ""))
                for i, (column, s) in enumerate(pairs)
            ]
        try:
            text = readers.read_text(cells.get(cfg.column or "", ""), cfg, resolve)
        except ReadError:
            return []
        return [(f"s{i + 1}", s) for i, s in enumerate(split_sentences(text))]

    def occlusions(
        self, fitted: Fitted, fields: Fields, sentences: Sequence[tuple[str, str]] | None
    ) -> list[Occlusion]:
        """Each sentence, left out of the text, which is tokenized again."""
        modality = fitted.name
        sentences = list(sentences or [])
        out = []
        for index, (label, sentence) in enumerate(sentences):
            remaining = text_without(sentences, index)
            occluded = self.transform(fitted, remaining) if remaining else None
            element = Element(f"{modality}.{label}", "sentence", modality, sentence.strip())
            out.append(Occlusion(element, occluded))
        return out

    def example(self, folder: Path) -> Example:
        """Free-text notes of a few sentences; the last row has none."""
        notes = [
            "Cough for two weeks. No fever.",
            "Smoker; shortness of breath.",
            "Follow-up visit. Lungs clear. No cough.",
            "",
        ]
        spec = {"kind": self.name, "column": "note", "max_tokens": 16}
        return Example(spec, [{"note": n} for n in notes], {"depth": 1, "heads": 2})
