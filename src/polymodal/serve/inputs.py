"""What a served model reads from a patient: its value columns and its file columns.

Derived from the model folder's cohort spec and the modalities the model reads, so that the
request checks, ``GET /model`` and the page's form all follow the same columns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polymodal import modalities
from polymodal.data.cells import parse_number
from polymodal.data.spec import CohortSpec, modality_columns
from polymodal.errors import ReadError
from polymodal.serve.errors import RequestError
from polymodal.serve.schemas import PatientIn


@dataclass(frozen=True)
class ModalityInputs:
    """The columns of one modality: cells typed in (``values``) or files (``files``)."""

    name: str
    kind: str
    values: tuple[str, ...]
    files: tuple[str, ...]
    numeric: tuple[str, ...]
    path_template: str | None
    missing_values: tuple[str, ...]
    spec: Any  # the modality's section of the cohort spec


@dataclass(frozen=True)
class ModelInputs:
    """Every column a patient may carry, by modality (only the modalities the model reads)."""

    id_column: str
    modalities: dict[str, ModalityInputs]

    @classmethod
    def from_spec(cls, spec: CohortSpec, read: list[str]) -> ModelInputs:
        """The inputs of ``spec``'s modalities named in ``read`` (``Predictor.modalities``)."""
        found = {}
        for name in read:
            cfg = spec.modalities[name]
            kind = modalities.get(cfg.kind)
            files = tuple(kind.file_columns(cfg))
            found[name] = ModalityInputs(
                name=name,
                kind=cfg.kind,
                values=tuple(c for c in modality_columns(cfg) if c not in files),
                files=files,
                numeric=tuple(getattr(cfg, "numeric", ())),
                path_template=getattr(cfg, "path_template", None),
                missing_values=tuple(getattr(cfg, "missing_values", ())),
                spec=cfg,
            )
        return cls(id_column=spec.id_column, modalities=found)

    @property
    def value_columns(self) -> dict[str, ModalityInputs]:
        return {c: m for m in self.modalities.values() for c in m.values}

    @property
    def file_columns(self) -> dict[str, ModalityInputs]:
        return {c: m for m in self.modalities.values() for c in m.files}

    def describe(self) -> dict:
        """JSON for ``GET /model`` and the page's form."""
        return {
            "id_column": self.id_column,
            "modalities": {
                m.name: {
                    "kind": m.kind,
                    "fields": list(m.values),
                    "numeric": list(m.numeric),
                    "files": list(m.files),
                }
                for m in self.modalities.values()
            },
        }

    def check_patient(self, patient: PatientIn, where: tuple[str | int, ...]) -> None:
        """Refuse a column the model does not read, a file in ``fields`` (or a value in
        ``files``) and a numeric value that is no number, naming the field.

        Raises:
            RequestError: 422, ``loc`` = ``where`` + ``("fields" | "files", column)``.
        """
        values, files = self.value_columns, self.file_columns
        for column, value in patient.fields.items():
            loc = (*where, "fields", column)
            if column in files:
                raise RequestError(loc, f"{column!r} names a file: give it under 'files'")
            if column not in values:
                raise RequestError(loc, f"the model reads no column {column!r}; {self._known()}")
            owner = values[column]
            if column in owner.numeric and isinstance(value, str):
                try:
                    parse_number(value, owner.missing_values)
                except ReadError:
                    raise RequestError(loc, f"{value!r} is not a number") from None
        for column in patient.files:
            self.check_file_column(column, (*where, "files", column))

    def check_file_column(self, column: str, loc: tuple[str | int, ...]) -> None:
        """Refuse a file column the model does not read (422 naming ``loc``)."""
        if column in self.value_columns:
            raise RequestError(loc, f"{column!r} is a value column: give it under 'fields'")
        if column not in self.file_columns:
            raise RequestError(loc, f"the model reads no file column {column!r}; {self._known()}")

    def check_readable(
        self,
        column: str,
        cell: str,
        resolve: Callable[[str, str | None], Path],
        loc: tuple[str | int, ...],
        shown: str,
    ) -> None:
        """Read a placed file with its kind's reader, so that a file that cannot be read is
        refused naming it rather than becoming a missing modality unnoticed.

        Raises:
            RequestError: 422, ``shown`` (the name the client gave) and the reader's reason.
        """
        owner = self.file_columns[column]
        try:
            modalities.get(owner.kind).read_file(owner.spec, cell, resolve)
        except ReadError as err:
            raise RequestError(loc, f"{shown!r}: {err.reason}") from None

    def _known(self) -> str:
        return (
            f"value columns: {', '.join(self.value_columns) or 'none'}; "
            f"file columns: {', '.join(self.file_columns) or 'none'}"
        )


def cell_text(value: str | float | None) -> str:
    """A JSON value as the manifest cell a CSV would hold ("" for null)."""
    return "" if value is None else str(value)
