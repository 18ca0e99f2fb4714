"""Use a trained model on rows with any subset of modalities."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from polymodal.data.batch import to_device
from polymodal.data.collate import collate_samples
from polymodal.data.dataset import CohortDataset
from polymodal.data.manifest import Cohort, load_cohort
from polymodal.errors import ModelError
from polymodal.model_folder import LoadedModel, load_model_folder
from polymodal.training.predictions import PredictionCollector


class Predictor:
    """Predictions from a model folder.

    Example::

        predictor = Predictor.load("runs/demo/model")
        table = predictor.predict_manifest("new_patients.csv")   # one row per input row

    ``prompts`` (a model with the ``prompted`` core only) asks a task in other words than the
    ones it was trained with, e.g. ``{"cancer": "How likely is lung cancer within six years?"}``.
    """

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        prompts: Mapping[str, str] | None = None,
    ) -> None:
        self.loaded = loaded
        self.device = torch.device(device)
        self.batch_size = batch_size
        if prompts:
            set_prompt = getattr(loaded.model.core, "set_prompt", None)
            if set_prompt is None:
                raise ModelError(
                    f"{loaded.folder}: the model's fusion core '{loaded.config.core}' takes no "
                    "task prompts; --prompt/prompts= works with models trained with the "
                    "'prompted' core"
                )
            for task, text in prompts.items():
                set_prompt(task, text)

    @classmethod
    def load(
        cls,
        folder: Path | str,
        *,
        device: str | torch.device = "cpu",
        batch_size: int = 64,
        prompts: Mapping[str, str] | None = None,
    ) -> Predictor:
        return cls(
            load_model_folder(folder, device=device),
            device=device,
            batch_size=batch_size,
            prompts=prompts,
        )

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
    ) -> tuple[PredictionCollector, dict[str, np.ndarray]]:
        """Run the model over a cohort (optionally one split, optionally a modality subset).

        Returns the collected predictions and ``{modality: availability (n,)}`` as used.
        """
        subset = tuple(modalities) if modalities is not None else tuple(self.modalities)
        collectors, available = self.collect_subsets(
            cohort, [subset], split=split, progress=progress
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
    ) -> tuple[dict[tuple[str, ...], PredictionCollector], dict[str, np.ndarray]]:
        """Predictions with only each subset of modalities available, from one pass over the data.

        Every file is read and every encoder runs once per batch; the fusion core and heads
        then run once per subset with the other modalities masked as unavailable.
        Returns ``{subset: collector}`` and the availability ``{modality: (n,)}`` in the data.
        """
        unknown = sorted({m for s in subsets for m in s} - set(self.modalities))
        if unknown:
            raise ModelError(f"the model has no modality {unknown}; it knows {self.modalities}")
        dataset = CohortDataset(cohort, self.loaded.preprocessor, split, modalities=self.modalities)
        loader = DataLoader(
            dataset, batch_size=self.batch_size, shuffle=False, collate_fn=collate_samples
        )
        collectors = {tuple(s): PredictionCollector(self.loaded.target_infos) for s in subsets}
        available: dict[str, list[np.ndarray]] = {m: [] for m in self.modalities}
        model = self.loaded.model.eval()
        iterator = loader
        if progress:
            from rich.progress import track

            iterator = track(loader, description="predicting", total=len(loader))
        for batch in iterator:
            batch = to_device(batch, self.device)
            encoded, availability = model.encode(batch)
            for subset, collector in collectors.items():
                masked = {
                    m: a if m in subset else torch.zeros_like(a) for m, a in availability.items()
                }
                logits = model.fuse(encoded, masked)["logits"]
                collector.add(batch, model.predictions_from_logits(logits))
            for m in self.modalities:
                available[m].append(batch["available"][m].cpu().numpy())
        return collectors, {
            m: np.concatenate(v) if v else np.empty(0, bool) for m, v in available.items()
        }

    def predict_cohort(
        self, cohort: Cohort, *, split: str | None = None, progress: bool = False
    ) -> pd.DataFrame:
        """One output row per input row: ids, modalities used, and each target's predictions."""
        collector, available = self.collect(cohort, split=split, progress=progress)
        table: dict[str, object] = {cohort.spec.id_column: collector.ids}
        for m, used in available.items():
            table[f"available_{m}"] = used.astype(bool)
        for target, info in self.loaded.target_infos.items():
            table.update(_prediction_columns(target, info, collector.predictions(target)))
        return pd.DataFrame(table)

    def predict_manifest(self, manifest: Path | str, *, progress: bool = False) -> pd.DataFrame:
        """Predict every row of a manifest laid out like the training one (labels optional)."""
        cohort = load_cohort(self.loaded.spec, manifest_override=Path(manifest), for_inference=True)
        return self.predict_cohort(cohort, progress=progress)


def _prediction_columns(
    target: str, info: dict, outputs: dict[str, np.ndarray]
) -> dict[str, np.ndarray]:
    """Readable CSV columns for one target's head outputs."""
    kind = info["kind"]
    if kind == "binary":
        return {f"{target}_probability": outputs["probability"]}
    if kind == "multiclass":
        probs = outputs["probabilities"]
        classes = info.get("classes") or [str(i) for i in range(probs.shape[1])]
        cols = {f"{target}_probability_{c}": probs[:, i] for i, c in enumerate(classes)}
        cols[f"{target}_predicted"] = np.asarray(classes, dtype=object)[probs.argmax(axis=1)]
        return cols
    if kind == "multilabel":
        probs = outputs["probabilities"]
        labels = info.get("classes") or [str(i) for i in range(probs.shape[1])]
        return {f"{target}_probability_{c}": probs[:, i] for i, c in enumerate(labels)}
    if kind == "regression":
        return {f"{target}_predicted": outputs["value"]}
    if kind == "digits":
        return {f"{target}_value": np.rint(outputs["value"]).astype(np.int64)}
    if kind == "cumulative_risk":
        horizons = info.get("horizons") or list(range(1, outputs["risk"].shape[1] + 1))
        return {f"{target}_risk_{h:g}": outputs["risk"][:, i] for i, h in enumerate(horizons)}
    cols = {f"{target}_risk": outputs["risk"]}
    if "survival" in outputs and outputs["survival"].ndim == 2:
        edges = info.get("bins") or list(range(outputs["survival"].shape[1]))
        for i, edge in enumerate(edges[: outputs["survival"].shape[1]]):
            cols[f"{target}_survival_t{edge:g}"] = outputs["survival"][:, i]
    return cols
