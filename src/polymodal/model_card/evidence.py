"""Evidence added to a model card after fitting: one split (the test split) scored on every
modality subset, and per subgroup, with patient-grouped bootstrap CIs (``polymodal card``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from polymodal.data.manifest import Cohort
from polymodal.data.spec import SPLITS
from polymodal.errors import ModelError, PolymodalError
from polymodal.evaluation.provenance import evaluated_at
from polymodal.evaluation.tables import modality_subsets
from polymodal.model_card.config import CardConfig
from polymodal.model_card.folder import read_card, write_card
from polymodal.model_card.performance import scored_targets
from polymodal.model_card.subgroups import subgroup_performance


def split_evidence(
    predictor: Any,
    cohort: Cohort,
    card: CardConfig,
    *,
    split: str = "test",
    n_boot: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> dict[str, Any]:
    """``predictor`` (a :class:`polymodal.predictor.Predictor`) scored on ``split``.

    Returns:
        ``{"split", "cohort", "evaluated_at", "n_boot", "subsets": [{"modalities": [...],
        "targets": {...}}], "subgroups": {...}}``, every subset scored on the same rows with
        the modalities outside it masked; subgroups on the full modality set.

    Raises:
        PolymodalError: the split has no rows.
    """
    if split not in SPLITS:
        raise PolymodalError(f"split must be one of {', '.join(SPLITS)}; got {split!r}")
    if len(cohort.indices(split)) == 0:
        raise PolymodalError(
            f"{cohort.manifest_path}: the {split!r} split has no rows; choose another --split"
        )
    n_boot = n_boot or card.n_boot
    plan = modality_subsets(predictor.modalities)
    collectors, _ = predictor.collect_subsets(cohort, plan, split=split, progress=progress)
    return {
        "split": split,
        "cohort": cohort.spec.name,
        "evaluated_at": evaluated_at(),
        "n_boot": n_boot,
        "subsets": [
            {
                "modalities": list(subset),
                "targets": scored_targets(collectors[subset], n_boot=n_boot, seed=seed),
            }
            for subset in plan
        ],
        "subgroups": subgroup_performance(
            cohort,
            card.subgroups,
            collectors[plan[0]],
            split=split,
            n_boot=n_boot,
            min_patients=card.min_patients,
            seed=seed,
        ),
    }


def add_split_evidence(
    predictor: Any,
    cohort: Cohort,
    *,
    split: str = "test",
    n_boot: int | None = None,
    seed: int = 0,
    progress: bool = False,
) -> Path:
    """Score ``predictor``'s model folder on ``split`` and add it to the folder's card (a
    split scored before is replaced); returns the Markdown card's path.

    Raises:
        ModelError: the folder has no model card (written by an earlier polymodal).
    """
    folder = Path(predictor.loaded.folder)
    card = read_card(folder)
    if card is None:
        raise ModelError(
            f"{folder}: no model_card.json (saved by an earlier polymodal); fit the model again "
            "to get its card"
        )
    config = CardConfig.model_validate(card["card"])
    found = split_evidence(
        predictor, cohort, config, split=split, n_boot=n_boot, seed=seed, progress=progress
    )
    card["evaluations"] = {**card.get("evaluations", {}), split: found}
    return write_card(folder, card)
