"""Clinical data as text (M3FM, methods.md §2.3): one sentence per tabular value, from templates.

A cohort declares the sentences in its spec, on a text modality that reads tabular columns::

    clinical:
      kind: text
      from_columns: [age, smoking, pack_years]
      sentences:
        age: "The patient is {value:.0f} years old."        # a template with {value}
        smoking: {current: "Current smoker.", former: "Former smoker.", never: "Never smoked."}
      # pack_years has no template: "The pack years is 37.5."

A template may use ``{value}`` (the cell as written; with a format spec such as ``:.0f`` the cell
is read as a number) and ``{column}`` (the column name, underscores as spaces). A mapping turns a
category into its sentence; a category the mapping lacks gets the default sentence
:data:`DEFAULT_SENTENCE`, and an empty sentence says nothing. A missing value leaves its sentence
out (M3FM's missing-value handling). The serializer also returns the ``(column, sentence)`` pairs,
so that an explanation can leave out one sentence at a time (informative data elements).

This module imports nothing from the rest of :mod:`polymodal.data`: the spec checks its
templates with :func:`check_sentences`.
"""

from __future__ import annotations

import string
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from polymodal.errors import ReadError

DEFAULT_SENTENCE = "The {column} is {value}."
TEMPLATE_FIELDS = ("value", "column")
# Template for one column: a format string, or category -> sentence.
Template = str | Mapping[str, str]


class _CellValue:
    """A cell as ``{value}`` sees it: the text as written, or a number under a format spec."""

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text

    def __format__(self, format_spec: str) -> str:
        if not format_spec:
            return self.text
        try:
            number = float(self.text)
        except ValueError:
            raise ValueError(
                f"{self.text!r} is not a number, but the template formats it with ':{format_spec}'"
            ) from None
        return format(number, format_spec)


def _column_words(column: str) -> str:
    return column.replace("_", " ")


def render(template: str, column: str, value: str) -> str:
    """Fill one template; ValueError (with a user-facing reason) when the value does not fit."""
    try:
        return template.format(value=_CellValue(value), column=_column_words(column))
    except (KeyError, IndexError, AttributeError) as err:
        raise ValueError(f"template {template!r} cannot be filled ({err})") from None


def check_template(template: str, column: str, example: str = "1") -> None:
    """Raise ValueError when ``template`` is not a format string over {value} and {column}.

    ``example`` is a value the template must accept (a number for a plain template, the category
    for a sentence of a mapping), so a bad format spec is found when the spec is read.
    """
    try:
        fields = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as err:
        raise ValueError(f"column {column!r}: template {template!r} is malformed ({err})") from None
    unknown = sorted({f for f in fields if f not in TEMPLATE_FIELDS})
    if unknown:
        shown = ", ".join("{" + f + "}" for f in unknown)
        raise ValueError(
            f"column {column!r}: template {template!r} uses {shown}; a template may only use "
            "{value} and {column} (write literal braces as {{ and }})"
        )
    try:
        render(template, column, example)
    except ValueError as err:
        raise ValueError(f"column {column!r}: {err}") from None


def check_sentences(sentences: Mapping[str, Any]) -> dict[str, Template]:
    """Validate the ``sentences`` of a spec; category keys become strings (YAML ``1:`` -> "1")."""
    checked: dict[str, Template] = {}
    for column, template in sentences.items():
        if isinstance(template, str):
            check_template(template, column)
            checked[column] = template
        elif isinstance(template, Mapping):
            mapping = {str(category): sentence for category, sentence in template.items()}
            for category, sentence in mapping.items():
                if not isinstance(sentence, str):
                    raise ValueError(
                        f"column {column!r}: the sentence for category {category!r} must be text, "
                        f"got {sentence!r}"
                    )
                check_template(sentence, column, example=category)
            checked[column] = mapping
        else:
            raise ValueError(
                f"column {column!r}: expected a template string or a mapping from category to "
                f"sentence, got {template!r}"
            )
    return checked


@dataclass(frozen=True)
class SerializedText:
    """One row's clinical text and the sentence each column contributed (missing ones absent)."""

    text: str
    elements: list[tuple[str, str]]


class TabularToText:
    """Turn a row's tabular cells into sentences.

    Args:
        columns: the columns to serialize, in sentence order.
        sentences: column -> template (see module); the others get :data:`DEFAULT_SENTENCE`.
        missing_values: cells that mean "no value" besides a blank cell.

    Example::

        serializer = TabularToText(["age", "smoking"], {"age": "The patient is {value:.0f} years old."})
        serializer({"age": "68", "smoking": ""}).text  # 'The patient is 68 years old.'
    """

    def __init__(
        self,
        columns: Sequence[str],
        sentences: Mapping[str, Template] | None = None,
        missing_values: Collection[str] = (),
    ) -> None:
        self.columns = list(columns)
        sentences = dict(sentences or {})
        unknown = sorted(set(sentences) - set(self.columns))
        if unknown:
            raise ValueError(f"sentences for {unknown}, which are not among the columns")
        self.sentences = check_sentences(sentences)
        self.missing_values = {"", *(m.strip() for m in missing_values)}

    @classmethod
    def from_modality(cls, cfg: Any) -> TabularToText:
        """The serializer of a text modality with ``from_columns`` (see the spec)."""
        return cls(cfg.from_columns, cfg.sentences, cfg.missing_values)

    def sentence(self, column: str, cell: str | None) -> str | None:
        """The sentence for one cell; None when the value is missing or maps to no sentence.

        Raises:
            ReadError: the value does not fit the template (names the column).
        """
        try:
            return self._sentence(column, cell)
        except ValueError as err:
            raise ReadError(f"column {column!r}: {err}") from None

    def _sentence(self, column: str, cell: str | None) -> str | None:
        value = "" if cell is None else str(cell).strip()
        if value in self.missing_values:
            return None
        template = self.sentences.get(column, DEFAULT_SENTENCE)
        if not isinstance(template, str):
            template = template.get(value, DEFAULT_SENTENCE)
        return render(template, column, value).strip() or None

    def __call__(
        self, cells: Mapping[str, str], bad_values: list[tuple[str, str]] | None = None
    ) -> SerializedText:
        """Serialize one row (``{column: cell}``; an absent column counts as missing).

        A value that does not fit its template raises :class:`ReadError`, or, when
        ``bad_values`` is a list, is left out and ``(column, reason)`` is appended there.
        """
        elements = []
        for column in self.columns:
            try:
                sentence = self._sentence(column, cells.get(column))
            except ValueError as err:
                if bad_values is None:
                    raise ReadError(f"column {column!r}: {err}") from None
                bad_values.append((column, str(err)))
                continue
            if sentence is not None:
                elements.append((column, sentence))
        return SerializedText(" ".join(s for _, s in elements), elements)
