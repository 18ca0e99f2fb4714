"""What a modality kind is: the one class each kind of input (image, volume, …) subclasses.

A modality kind owns everything about its inputs, so that the rest of polymodal never names one:

=======================  ======================================================================
spec                     :attr:`ModalityKind.spec`, the pydantic class of its YAML section;
                         :meth:`~ModalityKind.columns` / :meth:`~ModalityKind.file_columns`
reader                   which :mod:`polymodal.data.readers` function its files go through
                         (called from :meth:`~ModalityKind.encode` and :meth:`~ModalityKind.fit`)
fitting                  :meth:`~ModalityKind.fit`: JSON-ready values learnt on training rows
                         (saved in ``preprocessing.json`` as they are)
input info               :meth:`~ModalityKind.input_info` (keys :attr:`~ModalityKind.info_keys`),
                         :attr:`~ModalityKind.default_encoder`
transform                ``transform(fitted, …)`` (reader output → the sample's fields),
                         :meth:`~ModalityKind.empty_inputs`, :meth:`~ModalityKind.encode` (a row)
augmentation             :meth:`~ModalityKind.augmenter`
collate                  :attr:`~ModalityKind.padded_fields`, :attr:`~ModalityKind.pad_id_field`
explanation              :meth:`~ModalityKind.occlusions` (fields, sentences, regions, channels),
                         :meth:`~ModalityKind.sentences`, :meth:`~ModalityKind.heat_maps`,
                         :attr:`~ModalityKind.token_layout`
example                  :meth:`~ModalityKind.example` (for the registry-wide tests)
=======================  ======================================================================

The fields a kind produces, and their shapes, are written once, in :mod:`polymodal.data.batch`.

A kind registers itself on :data:`MODALITIES`; everyone else asks ``modalities.get(kind)``::

    @MODALITIES.register("image")
    class Image(ModalityKind): ...

    modalities.get("image").default_encoder  # 'image_timm'
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Annotated, Any, ClassVar, Protocol, Union

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from torch import Tensor

from polymodal.data.issues import DataIssue, OnError
from polymodal.errors import SpecError
from polymodal.modalities.elements import Fields, Occlusion
from polymodal.registry import Registry

MODALITIES: Registry[type[ModalityKind]] = Registry(
    "modality kind", config_key="modalities.<name>.kind", error=SpecError
)

# (cell value, path_template) -> file; Cohort.resolve_path has this signature.
PathResolver = Callable[[str, "str | None"], Path]


class ModalitySpec(BaseModel):
    """Base of every modality section of a cohort spec.

    Unknown keys are errors (a typo must not be silently ignored). NaN and infinity are never a
    meaningful setting (a window of [-inf, inf], a spacing of nan): YAML's `.nan`/`.inf` are
    refused here rather than met as NaN voxels later.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    kind: str


@dataclass
class Fitted:
    """One modality as the fitted preprocessing state holds it.

    Attributes:
        name: the modality's name in the spec (``modalities.<name>``).
        cfg: its spec section (the kind's :attr:`~ModalityKind.spec` class).
        state: the values :meth:`ModalityKind.fit` learnt (JSON types).
        scratch: built once per process from ``state`` (a tokenizer, a vocabulary lookup); never
            saved, never sent to a DataLoader worker.
    """

    name: str
    cfg: Any
    state: Mapping[str, Any]
    scratch: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TrainingRows:
    """What :meth:`ModalityKind.fit` may read: the training rows and where their files are.

    Attributes:
        rows: the manifest rows of the training split, every cell a str.
        ids: the rows' ids ``(N,)``.
        resolve: ``(cell, path_template) -> Path`` (``Cohort.resolve_path``).
        base_dir: the spec's folder (relative paths in the spec resolve against it).
        on_error: ``"fail"`` raises for an unreadable training file, ``"skip-modality"`` records.
        issues: where recorded issues go.
        groups: the rows' patient ids ``(N,)`` (the spec's group column); None when the spec
            has none, and each row is then its own patient.
    """

    rows: pd.DataFrame
    ids: pd.Series
    resolve: PathResolver
    base_dir: Path
    on_error: OnError
    issues: list[DataIssue]
    groups: pd.Series | None = None


class FittedInputs(Protocol):
    """The fitted preprocessing state as a kind sees it (:class:`~polymodal.data.preprocessing.
    Preprocessor`)."""

    def fitted(self, modality: str) -> Fitted: ...

    def fingerprint(self, modality: str | None = None) -> str: ...


class RowReader(Protocol):
    """One manifest row being encoded (the dataset's row): how to read a cell's file through the
    cache, and what to do when a file or value cannot be used."""

    row_id: str
    on_error: OnError
    issues: list[DataIssue]

    def resolve(self, cell: str, template: str | None) -> Path: ...

    def read(self, fn: Callable[..., Any], *args: Any, modality: str, column: str | None) -> Any:
        """``fn(*args)``, or None with the ReadError recorded (raised under ``"fail"``)."""

    def load(
        self,
        prep: FittedInputs,
        name: str,
        cell: str,
        template: str | None,
        decode: Callable[[Path], dict[str, Tensor]],
        column: str,
    ) -> dict[str, Tensor] | None:
        """``decode(file)`` of the file ``cell`` names, through the sample cache; None if it
        cannot be used."""

    def load_pixels(self, prep: FittedInputs, name: str, cell: str, column: str) -> Tensor | None:
        """One decoded 2D image ``(C, H, W)`` through the cache's 8-bit pixel store; None if it
        cannot be used."""


class Augmenter(Protocol):
    """Random augmentation of one sample's fields of a modality, in place, fixed by ``seed``."""

    def __call__(self, fields: Fields, seed: int) -> None: ...


@dataclass(frozen=True)
class Example:
    """A tiny cohort column set of a kind, for the registry-wide tests.

    Attributes:
        spec: the modality's section as written in YAML.
        cells: one dict of manifest cells per row; files they name are relative to the folder
            :meth:`ModalityKind.example` wrote them into. The last row has the modality missing.
        encoder_options: small options for :attr:`ModalityKind.default_encoder` so that it runs
            in well under a second on one CPU thread.
    """

    spec: dict[str, Any]
    cells: list[dict[str, str]]
    encoder_options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CellCheck:
    """What a kind finds in the manifest cells of one modality, every row, before any file is read
    (for ``polymodal validate``).

    Attributes:
        available: ``(N,)`` True where the row has the modality.
        problems: ``(row position, column, reason)`` of each value the dataset could not use.
        missing_rates: per column, the share of rows whose value is missing (value columns).
    """

    available: np.ndarray
    problems: list[tuple[int, str, str]] = field(default_factory=list)
    missing_rates: dict[str, float] = field(default_factory=dict)


class ModalityKind(ABC):
    """One kind of input. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    spec: ClassVar[type[ModalitySpec]]
    # The batch fields of the kind, as documented in polymodal.data.batch.
    fields: ClassVar[tuple[str, ...]]
    # The encoder a modality of this kind gets when the run config names none.
    default_encoder: ClassVar[str]
    # Keys every input_info of the kind carries besides "kind" (what encoders may rely on).
    info_keys: ClassVar[tuple[str, ...]]
    # Fields whose first axis is a length that differs per sample: collate pads them.
    padded_fields: ClassVar[frozenset[str]] = frozenset()
    # The padded field whose padding holds the kind's pad id (see pad_id), if any.
    pad_id_field: ClassVar[str | None] = None
    # How the kind's data elements lie in an encoder's tokens (explain.token_map), if known.
    token_layout: ClassVar[str | None] = None
    # True: its inputs are 2D pixel views (``pixels``, ``view_mask``): mixup/cutmix may blend
    # them between samples, and a ViT-based core may take them raw.
    pixels_2d: ClassVar[bool] = False
    # True: its inputs lie on a spatial grid (pixels, voxels), e.g. what a core attends directly.
    spatial: ClassVar[bool] = False

    @abstractmethod
    def columns(self, cfg: Any) -> list[str]:
        """Manifest columns the modality reads."""

    def file_columns(self, cfg: Any) -> list[str]:
        """Manifest columns whose cells name a file (one per view); none by default."""
        return []

    def read_file(self, cfg: Any, cell: str, resolve: PathResolver) -> object:
        """Read the file one cell of :meth:`file_columns` names with the kind's reader (raises
        :class:`~polymodal.errors.ReadError`); for checking a cohort's files."""
        raise TypeError(f"a {self.name} modality reads no files")

    def check_cells(self, cfg: Any, frame: pd.DataFrame) -> CellCheck | None:
        """Availability and unusable values of every row, from the manifest's cells alone; None
        for a kind whose values are in files (:meth:`file_columns`, checked by reading them)."""
        return None

    def fit(self, name: str, cfg: Any, train: TrainingRows) -> dict[str, Any]:
        """JSON-ready values learnt from the training rows only; nothing to learn by default."""
        return {}

    @abstractmethod
    def input_info(self, cfg: Any, state: Mapping[str, Any]) -> dict[str, Any]:
        """What an encoder needs to know about the modality's tensors: ``kind`` and
        :attr:`info_keys`."""

    @abstractmethod
    def empty_inputs(self, fitted: Fitted) -> dict[str, Tensor]:
        """Stand-ins of the right shape for an unavailable modality; every mask False."""

    def pad_id(self, cfg: Any, state: Mapping[str, Any]) -> int | None:
        """The value collate writes into :attr:`pad_id_field`'s padding (None: no such field)."""
        return None

    @abstractmethod
    def encode(
        self, prep: FittedInputs, name: str, cells: Mapping[str, str], row: RowReader
    ) -> dict[str, Tensor] | None:
        """One row's fields of the modality (read, preprocessed); None when unavailable there."""

    def augmenter(self, cfg: Any) -> Augmenter | None:
        """The training-time augmentation the spec asks for; None for none."""
        return None

    def unseen_values(
        self, cfg: Any, state: Mapping[str, Any], rows: pd.DataFrame
    ) -> dict[str, list[str]]:
        """Per column, values of ``rows`` the fitted state does not know (e.g. new categories)."""
        return {}

    def sentences(
        self, cfg: Any, cells: Mapping[str, str], resolve: PathResolver
    ) -> list[tuple[str, str]] | None:
        """``(label, sentence)`` of a row's text, for explanations; None: the kind has no text."""
        return None

    def occlusions(
        self, fitted: Fitted, fields: Fields, sentences: Sequence[tuple[str, str]] | None
    ) -> list[Occlusion]:
        """Every data element below the whole modality (a field, a sentence, a region, a
        channel) of one sample's unbatched ``fields``, each with the fields without it."""
        return []

    def heat_maps(
        self, modality: str, cfg: Any, fields: Fields, relevance: Mapping[str, float]
    ) -> list[tuple[str, np.ndarray, np.ndarray]]:
        """``(label, background, heat)`` per picture of a sample's input that region relevance
        can be painted on (an image view; a volume); none by default."""
        return []

    @abstractmethod
    def example(self, folder: Path) -> Example:
        """A tiny cohort of this kind; its files are written into ``folder``."""


@cache
def get(kind: str) -> ModalityKind:
    """The modality kind registered as ``kind``; SpecError naming the known kinds otherwise."""
    return MODALITIES.get(kind)()


def kinds() -> list[ModalityKind]:
    """Every registered kind, sorted by name."""
    return [get(name) for name in MODALITIES.names()]


def spec_union() -> Any:
    """The ``Modality`` type of a cohort spec: the registered spec classes, told apart by
    ``kind``."""
    specs = tuple(k.spec for k in kinds())
    return Annotated[Union[specs], Field(discriminator="kind")]  # noqa: UP007 (a runtime tuple)
