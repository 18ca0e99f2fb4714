"""The cohort as a torch Dataset of samples laid out as in :mod:`polymodal.data.batch`.

A modality is unavailable for a row when its cells are blank or missing markers, when it is
left out with ``modalities=``, or (``on_error="skip-modality"``) when its file cannot be used:
unreadable, outside the cohort root, too large for the modality's limits, or holding NaN or
infinite values (the readers refuse those, so no non-finite value reaches a model input).
Every unreadable file or unusable value becomes a :class:`DataIssue` in ``dataset.issues`` and
a logged warning, so a caller can report it: nothing is dropped silently.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from polymodal.data import readers
from polymodal.data.batch import Sample
from polymodal.data.cache import SampleCache
from polymodal.data.cells import is_blank
from polymodal.data.collate import collate_samples
from polymodal.data.feature_store import FeatureStore
from polymodal.data.manifest import Cohort
from polymodal.data.pixel_store import pack_pixels, unpack_pixels
from polymodal.data.preprocessing import (
    DataIssue,
    OnError,
    Preprocessor,
    read_or_record,
)
from polymodal.data.row_cells import RowCells
from polymodal.data.spec import (
    SPLITS,
    ImageModality,
    modality_columns,
    target_columns,
)
from polymodal.errors import PolymodalError
from polymodal.modalities import get as modality_kind

logger = logging.getLogger(__name__)

# (cell value, path_template) -> file; Cohort.resolve_path has this signature.
PathResolver = Callable[[str, "str | None"], Path]
ON_ERROR_CHOICES = ("fail", "skip-modality")


@dataclass
class _Row:
    """One row being encoded: where its files are, what to do when one fails, what failed."""

    row_id: str
    resolve: PathResolver
    cache: SampleCache | None
    on_error: OnError
    issues: list[DataIssue] = field(default_factory=list)
    # Modalities whose frozen backbone features stand in for their pixels.
    feature_stores: Mapping[str, FeatureStore] = field(default_factory=dict)

    def read(self, fn: Callable[..., Any], *args: Any, modality: str, column: str | None) -> Any:
        """``fn(*args)``, or None with the ReadError recorded (raised under ``"fail"``)."""
        return read_or_record(
            fn,
            *args,
            row_id=self.row_id,
            modality=modality,
            column=column,
            on_error=self.on_error,
            issues=self.issues,
        )

    def load(
        self,
        prep: Preprocessor,
        name: str,
        cell: str,
        template: str | None,
        decode: Callable[[Path], dict],
        column: str,
    ) -> dict[str, torch.Tensor] | None:
        """Decoded + preprocessed tensors of the file a cell names (through the cache), None
        if it cannot be used: resolving the path (e.g. outside the cohort root) and decoding
        it (e.g. NaN voxels, a damaged file) fail the same way, as one recorded issue."""

        def resolve_and_decode() -> dict[str, torch.Tensor]:
            path = self.resolve(cell, template)
            if self.cache is None:
                return decode(path)
            return self.cache.load_or_compute(path, prep.fingerprint(name), partial(decode, path))

        return self.read(resolve_and_decode, modality=name, column=column)

    def load_pixels(
        self, prep: Preprocessor, name: str, cell: str, column: str
    ) -> torch.Tensor | None:
        """One 2D image ``(C, H, W)`` of an image modality, cached as 8-bit pixels where that is
        exact (:mod:`polymodal.data.pixel_store`); None if it cannot be used."""
        cfg = prep.modality_configs[name]
        decode = partial(_decode_image, cfg=cfg, pack=self.cache is not None)
        view = self.load(prep, name, cell, cfg.path_template, decode, column)
        return None if view is None else unpack_pixels(view, cfg)


def _encode_modality(
    prep: Preprocessor, name: str, cells: Mapping[str, str], row: _Row
) -> dict[str, torch.Tensor] | None:
    """One modality's tensors for a row, or None when it is unavailable there."""
    if name in row.feature_stores:
        return _frozen_features(prep, name, cells, row)
    return modality_kind(prep.modality_configs[name].kind).encode(prep, name, cells, row)


def _frozen_features(
    prep: Preprocessor, name: str, cells: Mapping[str, str], row: _Row
) -> dict[str, torch.Tensor] | None:
    """An image modality as its frozen backbone's tokens: ``features`` (V, N, C') and
    ``view_mask`` (V,); a view's pixels are loaded only when its features are not stored yet."""
    cfg, store, cache = prep.modality_configs[name], row.feature_stores[name], row.cache
    assert cache is not None  # CohortDataset refuses feature stores without a sample cache
    fingerprint = prep.fingerprint(name)
    decode = partial(_decode_image, cfg=cfg, pack=True)

    def view_features(cell: str) -> torch.Tensor:
        path = row.resolve(cell, cfg.path_template)
        if not path.exists():  # the reader says which file is missing
            decode(path)

        def load_pixels() -> torch.Tensor:
            entry = cache.load_or_compute(path, fingerprint, partial(decode, path))
            return prep.transform_image(name, [unpack_pixels(entry, cfg)])["pixels"][0]

        return store.get(cache.key(path, fingerprint), load_pixels)

    views = [
        None
        if is_blank(cell := cells.get(column, ""))
        else row.read(view_features, cell, modality=name, column=column)
        for column in cfg.columns
    ]
    if all(v is None for v in views):
        return None
    # One view (the usual case) is passed on as a view of the stored entry: no copy per sample.
    features = (
        views[0][None]
        if len(views) == 1
        else torch.stack([store.empty() if v is None else v for v in views])
    )
    return {"features": features, "view_mask": torch.tensor([v is not None for v in views])}


def _empty_features(prep: Preprocessor, name: str, store: FeatureStore) -> dict[str, torch.Tensor]:
    """What an unavailable image modality in feature form holds: zeros, every view masked."""
    views = len(prep.modality_configs[name].columns)
    return {
        "features": store.empty().expand(views, *store.feature_shape),
        "view_mask": torch.zeros(views, dtype=torch.bool),
    }


def _decode_image(path: Path, cfg: ImageModality, pack: bool = False) -> dict[str, torch.Tensor]:
    pixels = torch.from_numpy(readers.read_image(path, cfg))  # (C, H, W) float32
    return pack_pixels(pixels, cfg) if pack else {"pixels": pixels}


def encode_row(
    preprocessor: Preprocessor,
    cells: Mapping[str, str],
    *,
    row_id: str,
    resolve: PathResolver,
    group: str | None = None,
    modalities: Collection[str] | None = None,
    on_error: OnError = "skip-modality",
    cache: SampleCache | None = None,
    issues: list[DataIssue] | None = None,
    feature_stores: Mapping[str, FeatureStore] | None = None,
) -> Sample:
    """One manifest row (``{column: cell}``) as a sample of the batch contract.

    Args:
        preprocessor: the fitted state.
        cells: the row's cells as strings; an absent column counts as blank.
        row_id: the row's id (names the row in errors and issues).
        resolve: ``(cell, path_template) -> Path`` for file cells (``Cohort.resolve_path``).
        group: patient/lesion id (the row id when None).
        modalities: use only these; the others are unavailable (None: all).
        on_error: ``"fail"`` raises :class:`ReadError` for an unreadable file or value;
            ``"skip-modality"`` makes that modality (or label) unavailable and records it.
        cache: decoded files of image, volume and series modalities.
        issues: list that recorded problems are appended to.
        feature_stores: image modalities given as their frozen backbone's ``features`` instead
            of ``pixels`` (needs ``cache``; see :mod:`polymodal.data.feature_store`).
    """
    row = _Row(row_id, resolve, cache, on_error, feature_stores=feature_stores or {})
    inputs, available = {}, {}
    for name in preprocessor.modalities:
        fields = None
        if modalities is None or name in modalities:
            fields = _encode_modality(preprocessor, name, cells, row)
        available[name] = fields is not None
        if fields is None:
            store = row.feature_stores.get(name)
            fields = (
                preprocessor.empty_inputs(name)
                if store is None
                else _empty_features(preprocessor, name, store)
            )
        inputs[name] = fields
    targets, target_mask = {}, {}
    for name in preprocessor.targets:
        value = row.read(preprocessor.encode_target, name, cells, modality=name, column=None)
        target_mask[name] = value is not None
        targets[name] = value if value is not None else preprocessor.empty_target(name)
    if issues is not None:
        issues.extend(row.issues)
    return {
        "id": row_id,
        "group": row_id if group is None else group,
        "inputs": inputs,
        "available": available,
        "targets": targets,
        "target_mask": target_mask,
    }


def augment_seed(seed: int, epoch: int, index: int) -> int:
    """The augmentation seed of row ``index`` of a split in ``epoch`` of a run seeded ``seed``
    (the same for a row read from the files or from shards)."""
    entropy = [seed % 2**64, epoch, index]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint32)[0] >> 1)


class CohortDataset(Dataset):
    """The rows of one split (every row when ``split`` is None) as samples.

    Args:
        cohort: the loaded cohort (rows, ids, groups, file locations).
        preprocessor: the state fitted on the training split.
        split: ``"train"``, ``"val"``, ``"test"`` or None (every row of the manifest).
        cache: on-disk cache of decoded image, volume and series files.
        on_error: ``"skip-modality"`` (default) makes a modality with an unreadable file
            unavailable for that row and records a :class:`DataIssue`; ``"fail"`` raises.
        modalities: use only these (the others are unavailable everywhere); None: all.
        augment: random flips/rotations of image modalities whose spec sets ``augment``.
        augment_seed: with ``(epoch, index)`` items, a row's augmentation depends on
            (augment_seed, epoch, index) only.
        feature_stores: image modalities whose frozen backbone's tokens replace their pixels
            (``features`` instead of ``pixels``; see :meth:`read_as_features`).

    Attributes:
        issues: problems met so far in this process, once per row, modality and column (each
            also logged as a warning). DataLoader workers record into their own copies, so
            iterate once with ``num_workers=0`` when the complete list is needed.
    """

    def __init__(
        self,
        cohort: Cohort,
        preprocessor: Preprocessor,
        split: str | None,
        cache: SampleCache | None = None,
        on_error: OnError = "skip-modality",
        modalities: Sequence[str] | None = None,
        augment: bool = False,
        augment_seed: int = 0,
        feature_stores: Mapping[str, FeatureStore] | None = None,
    ) -> None:
        if on_error not in ON_ERROR_CHOICES:
            raise PolymodalError(f"on_error must be one of {ON_ERROR_CHOICES}, got {on_error!r}")
        unknown = sorted(set(modalities or ()) - set(preprocessor.modalities))
        if unknown:
            raise PolymodalError(
                f"unknown modalities {unknown}; this model knows {preprocessor.modalities}"
            )
        self.cohort = cohort
        self.preprocessor = preprocessor
        self.split = split
        self.cache = cache
        self.on_error = on_error
        self.modalities = None if modalities is None else list(modalities)
        positions = np.arange(len(cohort)) if split is None else cohort.indices(split)
        columns = [
            *(c for m in preprocessor.modality_configs.values() for c in modality_columns(m)),
            *(c for t in preprocessor.target_configs.values() for c in target_columns(t)),
        ]
        absent = sorted({c for c in columns if c not in cohort.frame.columns})
        if absent:
            logger.warning("manifest has no column(s) %s: those values count as missing", absent)
        present = list(dict.fromkeys(c for c in columns if c in cohort.frame.columns))
        # The rows' cells stay in Arrow memory; a row's dict of str is made when it is read.
        self._cells = RowCells(cohort.frame, present, positions)
        keys = pd.DataFrame({"id": cohort.ids, "group": cohort.groups})
        self._keys = RowCells(keys, ["id", "group"], positions)
        self.augment_seed = augment_seed
        self._augmenters = {}
        if augment:
            augmenters = {
                name: modality_kind(cfg.kind).augmenter(cfg)
                for name, cfg in preprocessor.modality_configs.items()
            }
            self._augmenters = {n: a for n, a in augmenters.items() if a is not None}
        self.feature_stores: dict[str, FeatureStore] = {}
        self.read_as_features(feature_stores or {})
        self.issues: list[DataIssue] = []
        self._issue_keys: set[tuple] = set()

    def __len__(self) -> int:
        return len(self._cells)

    def feature_keys(self, index: int, modality: str) -> list[str | None]:
        """The sample-cache key of each view's file of row ``index`` (what its frozen features
        are stored under), without reading pixels; None for a blank cell or a file that cannot
        be used (reading the row records why)."""
        assert self.cache is not None
        cfg = self.preprocessor.modality_configs[modality]
        fingerprint = self.preprocessor.fingerprint(modality)
        keys: list[str | None] = []
        for column in cfg.columns:
            cell = self._cells[index].get(column, "")
            try:
                path = None if is_blank(cell) else self.cohort.resolve_path(cell, cfg.path_template)
                keys.append(None if path is None else self.cache.key(path, fingerprint))
            except (PolymodalError, OSError):
                keys.append(None)
        return keys

    def with_pixels(self) -> CohortDataset:
        """The same rows of the stored modalities only, as pixels, never augmented."""
        return CohortDataset(
            self.cohort,
            self.preprocessor,
            self.split,
            cache=self.cache,
            on_error=self.on_error,
            modalities=list(self.feature_stores),
        )

    def read_as_features(self, stores: Mapping[str, FeatureStore]) -> None:
        """Give these image modalities as their frozen backbone's ``features`` (from the stores)
        instead of ``pixels`` from now on; a modality augmented in this dataset keeps its pixels
        (they change every epoch, so their features cannot be stored). Needs the sample cache,
        whose file index keys the features."""
        if stores and self.cache is None:
            raise PolymodalError(
                "frozen-feature stores need the sample cache (its file index keys the features)"
            )
        self.feature_stores = {n: s for n, s in stores.items() if n not in self._augmenters}

    def __getitem__(self, index: int | tuple[int, int]) -> Sample:
        """Row ``index``; ``(epoch, index)`` (from :class:`polymodal.training.loaders.EpochRows`)
        also fixes the row's augmentation for that epoch."""
        epoch = None
        if isinstance(index, tuple):
            epoch, index = index
        found: list[DataIssue] = []
        keys = self._keys[index]
        sample = encode_row(
            self.preprocessor,
            self._cells[index],
            row_id=keys["id"],
            group=keys["group"],
            resolve=self.cohort.resolve_path,
            modalities=self.modalities,
            on_error=self.on_error,
            cache=self.cache,
            issues=found,
            feature_stores=self.feature_stores,
        )
        for issue in found:
            key = (issue.row_id, issue.modality, issue.column)
            if key not in self._issue_keys:  # a bad file fails again every epoch: report once
                self._issue_keys.add(key)
                self.issues.append(issue)
                logger.warning("%s; the sample goes on without it", issue)
        for name, augmenter in self._augmenters.items():
            if sample["available"][name]:
                augmenter(sample["inputs"][name], self._augment_seed(epoch, index))
        return sample

    def __getitems__(self, indices: Sequence[int | tuple[int, int]]) -> list[Sample]:
        """The rows of one batch (what a DataLoader asks for): as ``self[i]`` each, with the
        sample cache's hits recorded in one transaction for the batch instead of one a row."""
        if self.cache is None:
            return [self[i] for i in indices]
        with self.cache.hits_in_one_transaction():
            return [self[i] for i in indices]

    def _augment_seed(self, epoch: int | None, index: int) -> int:
        """The augmentation seed of a row: a pure function of (seed, epoch, row) when the epoch
        is known, so it is the same in any worker, with persistent workers, and after a resume;
        drawn from torch's generator otherwise (a plain index from a bare DataLoader)."""
        if epoch is None:
            return int(torch.randint(0, 2**31 - 1, ()).item())
        return augment_seed(self.augment_seed, epoch, index)

    def encoded_targets(self) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Every row's encoded labels without reading any file (for samplers and statistics).

        Returns ``({target: (n, ...)}, {target: (n,) bool})``, stacked like a batch of the whole
        split: the same values and masks as ``self[i]["targets"]`` / ``["target_mask"]``. A
        label the fitted state cannot read is unlabelled (raises under ``on_error="fail"``).
        """
        prep = self.preprocessor
        targets: dict[str, list[torch.Tensor]] = {name: [] for name in prep.targets}
        masks: dict[str, list[bool]] = {name: [] for name in prep.targets}
        for cells, keys in zip(self._cells, self._keys, strict=True):
            row_id = keys["id"]
            for name in prep.targets:
                value = read_or_record(
                    prep.encode_target,
                    name,
                    cells,
                    row_id=row_id,
                    modality=name,
                    column=None,
                    on_error=self.on_error,
                    issues=[],  # __getitem__ records (and logs) these when the row is read
                )
                masks[name].append(value is not None)
                targets[name].append(value if value is not None else prep.empty_target(name))
        stacked = {
            # An empty split still gets (0, ...) tensors of the right dtype and shape.
            name: torch.stack(values) if values else prep.empty_target(name)[None][:0]
            for name, values in targets.items()
        }
        return stacked, {n: torch.tensor(v, dtype=torch.bool) for n, v in masks.items()}


def build_dataloaders(
    cohort: Cohort,
    preprocessor: Preprocessor,
    *,
    batch_size: int = 32,
    num_workers: int = 0,
    cache: SampleCache | None = None,
    on_error: OnError = "skip-modality",
    modalities: Sequence[str] | None = None,
    seed: int = 0,
    feature_stores: Mapping[str, FeatureStore] | None = None,
) -> dict[str, DataLoader]:
    """One DataLoader per split that has rows; only ``train`` is shuffled and augmented.

    ``feature_stores``: image modalities read as frozen features (see
    :meth:`CohortDataset.read_as_features`).
    """
    pad_ids = preprocessor.pad_ids()
    loaders = {}
    for split in SPLITS:
        dataset = CohortDataset(
            cohort,
            preprocessor,
            split,
            cache=cache,
            on_error=on_error,
            modalities=modalities,
            augment=split == "train",
            feature_stores=feature_stores,
        )
        if len(dataset) == 0:
            continue
        loaders[split] = DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=split == "train",
            num_workers=num_workers,
            collate_fn=partial(collate_samples, pad_ids=pad_ids),
            generator=torch.Generator().manual_seed(seed),
        )
    return loaders
