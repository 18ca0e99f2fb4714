"""Use a trained model on rows with any subset of modalities.

Prediction speaks where the output would otherwise mislead (see
:mod:`polymodal.prediction_checks`): rows with no data get no probability, unseen categories
and repeated ids are warned about, and non-finite model outputs are an error naming the rows.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from polymodal import targets
from polymodal.calibration.conformal import ConformalPrediction
from polymodal.calibration.recalibration import Recalibration
from polymodal.data.batch import to_device
from polymodal.data.cache import SampleCache
from polymodal.data.collate import collate_samples
from polymodal.data.dataset import CohortDataset
from polymodal.data.manifest import Cohort, load_cohort
from polymodal.errors import ModelError
from polymodal.frozen_features import frozen_feature_stores
from polymodal.fusion import list_cores
from polymodal.model_folder import LoadedModel, load_model_folder
from polymodal.prediction_checks import (
    NonFiniteGuard,
    warn_duplicate_ids,
    warn_rows_without_data,
    warn_unseen_categories,
)
from polymodal.targets.predictions import PredictionCollector
from polymodal.tta import average_predictions, tta_views, viewing


class Predictor:
    """Predictions from a model folder.

    Example::

        predictor = Predictor.load("runs/demo/model")
        table = predictor.predict_manifest("new_patients.csv")   # one row per input row

    ``prompts`` (a model whose fusion core takes prompts only: ``list_cores(takes_prompts=True)``)
    asks a task in other words than the ones it was trained with, e.g. ``{"cancer": "How likely is lung cancer within six years?"}``.

    ``tta=True`` (test-time augmentation) predicts every image in each of its dihedral views (8
    for square images, the 4 that keep the shape otherwise) and averages the heads'
    probabilities (not the logits) over the views: see :mod:`polymodal.tta`. It costs one model
    pass per view; meant for images with no preferred orientation.

    ``cache_dir`` keeps decoded images, volumes and series on disk between calls (the sample
    cache ``fit`` uses; pass the run's ``cache`` folder to share it) and, for an image encoder
    whose backbone is frozen for good, the backbone's features per file: a file seen before is
    then neither decoded nor run through the backbone (see :mod:`polymodal.frozen_features`).

    A folder fitted with ``calibration:`` holds a recalibration of the probabilities
    (:mod:`polymodal.calibration.recalibration`), applied to every prediction; with
    ``conformal:`` it holds conformal thresholds, and :meth:`predict_cohort` adds each target's
    prediction set (or interval) columns (:mod:`polymodal.calibration.conformal`).
    ``calibrated=False`` gives the model's own probabilities, without either.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        prompts: Mapping[str, str] | None = None,
        tta: bool = False,
        cache_dir: Path | str | None = None,
        calibrated: bool = True,
        feature_store: bool = True,
    ) -> None:
        self.loaded = loaded
        # Frozen features from the store beside the sample cache (a fit with
        # train.frozen_feature_store: false keeps it off for its own evaluation passes too).
        self.feature_store = feature_store
        self.recalibration = Recalibration.load(loaded.folder) if calibrated else None
        # The thresholds were calibrated on the recalibrated probabilities: both or neither.
        self.conformal = ConformalPrediction.load(loaded.folder) if calibrated else None
        self.cache = None if cache_dir is None else SampleCache(cache_dir)
        self.device = torch.device(device)
        self.batch_size = batch_size
        # The dihedral views each batch is predicted in (None: the images as they are).
        self.views: tuple[int | None, ...] = tta_views(loaded.model) if tta else (None,)
        if prompts:
            core = loaded.model.core
            if not core.takes_prompts:
                raise ModelError(
                    f"{loaded.folder}: the model's fusion core '{loaded.config.core}' takes no "
                    "task prompts; --prompt/prompts= works with models trained with a core that "
                    f"takes them ({', '.join(list_cores(takes_prompts=True))})"
                )
            for task, text in prompts.items():
                core.set_prompt(task, text)

    @classmethod
    def load(
        cls,
        folder: Path | str,
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        prompts: Mapping[str, str] | None = None,
        tta: bool = False,
        cache_dir: Path | str | None = None,
        calibrated: bool = True,
        feature_store: bool = True,
    ) -> Predictor:
        return cls(
            load_model_folder(folder, device=device),
            device=device,
            batch_size=batch_size,
            prompts=prompts,
            tta=tta,
            cache_dir=cache_dir,
            calibrated=calibrated,
            feature_store=feature_store,
        )

    @property
    def tta(self) -> bool:
        """Whether predictions are averaged over the images' dihedral views."""
        return self.views != (None,)

    @property
    def modalities(self) -> list[str]:
        """The modalities the model reads (a ``single`` model or one built with
        ``model.modalities`` reads fewer than the cohort has); the others are never loaded."""
        return list(self.loaded.model.modalities)

    @torch.no_grad()
    def collect(
        self,
        cohort: Cohort,
        *,
        split: str | None = None,
        modalities: Sequence[str] | None = None,
        progress: bool = False,
        logits: bool = False,
    ) -> tuple[PredictionCollector, dict[str, np.ndarray]]:
        """Run the model over a cohort (optionally one split, optionally a modality subset).

        Returns the collected predictions and ``{modality: availability (n,)}`` as used.
        """
        subset = tuple(modalities) if modalities is not None else tuple(self.modalities)
        collectors, available = self.collect_subsets(
            cohort, [subset], split=split, progress=progress, logits=logits
        )
        return collectors[subset], available

    @torch.no_grad()
    def collect_subsets(
        self,
        cohort: Cohort,
        subsets: Sequence[tuple[str, ...]],
        *,
        split: str | None = None,
        progress: bool = False,
        logits: bool = False,
    ) -> tuple[dict[tuple[str, ...], PredictionCollector], dict[str, np.ndarray]]:
        """Predictions with only each subset of modalities available, from one pass over the data.

        Every file is read and every encoder runs once per batch; the fusion core and heads
        then run once per subset with the other modalities masked as unavailable.
        Returns ``{subset: collector}`` and the availability ``{modality: (n,)}`` in the data.
        With ``logits``, each target's predictions also hold the ``logits`` they came from
        (recalibrated, when the predictor applies a recalibration).

        Raises:
            ModelError: the model's outputs are not finite (NaN or inf) for rows that have data
                in a subset; the message names the rows and why.
        """
        unknown = sorted({m for s in subsets for m in s} - set(self.modalities))
        if unknown:
            raise ModelError(f"the model has no modality {unknown}; it knows {self.modalities}")
        dataset = CohortDataset(
            cohort, self.loaded.preprocessor, split, modalities=self.modalities, cache=self.cache
        )
        if self.feature_store and not self.tta:  # stored: the images as they are, one view
            dataset.read_as_features(
                frozen_feature_stores(self.loaded.model, self.cache, self.modalities)
            )
        loader = DataLoader(
            dataset, batch_size=self.batch_size, shuffle=False, collate_fn=collate_samples
        )
        collectors = {tuple(s): PredictionCollector(self.loaded.target_infos) for s in subsets}
        guard = NonFiniteGuard()
        available: dict[str, list[np.ndarray]] = {m: [] for m in self.modalities}
        model = self.loaded.model.eval()
        iterator = loader
        if progress:
            from polymodal.progress import track

            iterator = track(loader, description="predicting", total=len(loader))
        for batch in iterator:
            batch = to_device(batch, self.device)
            passes: dict[tuple[str, ...], list] = {subset: [] for subset in collectors}
            has_data: dict[tuple[str, ...], torch.Tensor] = {}
            for view in self.views:
                with nullcontext() if view is None else viewing(model, view):
                    encoded, availability = model.encode(batch)
                for subset in collectors:
                    masked = {
                        m: a if m in subset else torch.zeros_like(a)
                        for m, a in availability.items()
                    }
                    passes[subset].append(self._predictions(model, encoded, masked, logits))
                    has_data[subset] = torch.stack([a.bool() for a in masked.values()]).any(0)
            for subset, collector in collectors.items():
                # over the views
                predictions = average_predictions(passes[subset], self.loaded.target_infos)
                guard.add(batch["ids"], predictions, has_data[subset])
                collector.add(batch, predictions)
            for m in self.modalities:
                available[m].append(batch["available"][m].cpu().numpy())
        guard.check(self.loaded)
        return collectors, {
            m: np.concatenate(v) if v else np.empty(0, bool) for m, v in available.items()
        }

    def _predictions(self, model, encoded, availability, keep_logits: bool):
        """The heads' predictions of one pass ``{target: {name: (B, ...)}}``, recalibrated."""
        logits = model.fuse(encoded, availability)["logits"]
        if self.recalibration is not None:
            logits = self.recalibration.apply(logits)
        predictions = model.predictions_from_logits(logits)
        if keep_logits:
            predictions = {t: {**p, "logits": logits[t]} for t, p in predictions.items()}
        return predictions

    def predict_cohort(
        self, cohort: Cohort, *, split: str | None = None, progress: bool = False
    ) -> pd.DataFrame:
        """One output row per input row: ids, modalities used, and each target's predictions.

        A row with no data in any modality the model reads gets blank outputs, and a ``note``
        column (present only then) says why. Warns (``UserWarning``) about such rows, about
        repeated ids and about tabular categories the model never learned.
        """
        positions = np.arange(len(cohort)) if split is None else cohort.indices(split)
        rows = cohort.frame.iloc[positions]
        warn_duplicate_ids(rows[cohort.spec.id_column])
        warn_unseen_categories(self.loaded.preprocessor, self.modalities, rows)
        collector, available = self.collect(cohort, split=split, progress=progress)
        no_data = ~np.logical_or.reduce([used.astype(bool) for used in available.values()])
        table: dict[str, object] = {cohort.spec.id_column: collector.ids}
        for m, used in available.items():
            table[f"available_{m}"] = used.astype(bool)
        for target, info in self.loaded.target_infos.items():
            outputs = collector.predictions(target)
            columns = _prediction_columns(target, info, outputs)
            if self.conformal is not None and target in self.conformal.targets:
                columns.update(self.conformal.targets[target].columns(target, info, outputs))
            table.update({name: _blank(values, no_data) for name, values in columns.items()})
        if no_data.any():
            table["note"] = np.where(no_data, NO_DATA_NOTE, "")
            warn_rows_without_data(
                np.asarray(collector.ids, dtype=object), no_data, self.modalities
            )
        return pd.DataFrame(table)

    def predict_manifest(
        self, manifest: Path | str, *, root: Path | str | None = None, progress: bool = False
    ) -> pd.DataFrame:
        """Predict every row of a manifest laid out like the training one (labels optional).

        Relative file paths resolve against ``root``, by default the manifest's own folder
        (never the training cohort's). A modality whose columns are all absent is missing for
        every row; the id column is required.
        """
        cohort = load_cohort(
            self.loaded.spec, manifest_override=Path(manifest), for_inference=True, root=root
        )
        return self.predict_cohort(cohort, progress=progress)


NO_DATA_NOTE = "no data in any modality the model reads: no prediction"


def _blank(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``values`` with ``rows`` (bool mask) blank: NaN for numbers, None for class names."""
    if not rows.any():
        return values
    blanked = values.astype(object if values.dtype.kind in "OUSib" else float)
    blanked[rows] = None if blanked.dtype == object else np.nan
    return blanked


def _prediction_columns(
    target: str, info: dict, outputs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Readable CSV columns for one target's head outputs (its kind names them)."""
    return targets.get(info["kind"]).prediction_columns(target, info, outputs)
