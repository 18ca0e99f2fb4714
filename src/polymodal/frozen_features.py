"""Which image modalities of a model are read as frozen backbone features, and their stores.

An image encoder whose backbone is frozen for good (``image_timm`` with ``freeze: all`` and
``feature_cache: true``, no dihedral views: see
:attr:`~polymodal.encoders.image.ImageTimmEncoder.takes_frozen_features`) gives every image the
same tokens in every epoch. With a sample cache, ``fit``, ``evaluate`` and ``predict`` then read
those tokens from a :class:`~polymodal.data.feature_store.FeatureStore` keyed by the image
file's content key, so an epoch after the first loads, decodes and normalises no pixels and
runs no backbone. :func:`fill_feature_stores` computes every missing entry once up front with
a progress line (counts and ETA), so the first epoch is not a long silent backbone pass.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

import torch
from torch import Tensor, nn

from polymodal.data.cache import SampleCache
from polymodal.data.dataset import CohortDataset
from polymodal.data.feature_store import FeatureStore
from polymodal.encoders.image import ImageTimmEncoder, feature_space

logger = logging.getLogger(__name__)

STORE_FOLDER = "frozen_features"


def frozen_feature_stores(
    model: nn.Module, cache: SampleCache | None, modalities: list[str] | None = None
) -> dict[str, FeatureStore]:
    """A store per image modality of ``model`` (restricted to ``modalities``) whose encoder takes
    frozen features; none without a sample cache (its file index gives the content keys)."""
    if cache is None:
        return {}
    stores = {}
    encoders: Mapping[str, nn.Module] = getattr(model, "encoders", {})
    for name, encoder in encoders.items():
        if modalities is not None and name not in modalities:
            continue
        if isinstance(encoder, ImageTimmEncoder) and encoder.takes_frozen_features:
            stores[name] = FeatureStore(
                cache.folder / STORE_FOLDER / feature_space(encoder.backbone),
                encoder.feature_shape,
                encoder.frozen_features,
                max_bytes=encoder.stage_cache_bytes,
            )
    return stores


def fill_feature_stores(
    datasets: list[CohortDataset], *, batch_size: int = 32, progress: bool = True
) -> None:
    """Compute every stored modality's missing features of ``datasets`` now, in batches of
    ``batch_size`` images (with counts and an ETA), and hold every entry in memory.

    Only rows with a file whose features are not stored yet have their pixels read. Runs in the
    main process: the entries stay in this process's memory, where the epochs that follow
    (``num_workers=0``) find them.
    """
    datasets = [d for d in datasets if d.feature_stores and len(d) > 0]
    for dataset in datasets:
        rows: range | object = range(len(dataset))
        if progress:
            from polymodal.progress import track

            label = f"frozen backbone features ({dataset.split or 'all'} rows)"
            rows = track(rows, description=label, total=len(dataset))
        _fill(dataset, rows, batch_size)
    for name, store in datasets[0].feature_stores.items() if datasets else ():
        logger.info(
            "frozen features of %s: %d computed, %d read from disk, %d damaged entries rebuilt",
            name,
            store.computed,
            store.disk_hits,
            store.rebuilt,
        )


def _fill(dataset: CohortDataset, rows: Iterable[int], batch_size: int) -> None:
    """Batches of the images of ``rows`` whose features are missing, through each store."""
    pixels = dataset.with_pixels()
    pending: dict[str, list[tuple[str, Tensor]]] = {name: [] for name in dataset.feature_stores}
    for index in rows:
        sample = None
        for name, store in dataset.feature_stores.items():
            for view, key in enumerate(dataset.feature_keys(index, name)):
                if key is None or store.lookup(key) is not None:
                    continue
                sample = sample or pixels[index]
                fields = sample["inputs"][name]
                if sample["available"][name] and bool(fields["view_mask"][view]):
                    pending[name].append((key, fields["pixels"][view]))
                if len(pending[name]) >= batch_size:
                    _add(store, pending[name])
    for name, store in dataset.feature_stores.items():
        _add(store, pending[name])


def _add(store: FeatureStore, pending: list[tuple[str, Tensor]]) -> None:
    """Compute and store the pending images' features; empties ``pending``."""
    unique = dict(pending)  # a file named by two rows is computed once
    if unique:
        store.add(list(unique), torch.stack(list(unique.values())))
    pending.clear()
