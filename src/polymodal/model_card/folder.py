"""``model_card.md`` and ``model_card.json`` in a model folder, under its checksums.

Both are written together, after the files the folder's ``checksums.json`` lists are verified
(a damaged or altered folder is never blessed with fresh checksums); the checksums are then
written again to cover them (see :mod:`polymodal.calibration.folder_files`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from polymodal.calibration.folder_files import read_folder_json
from polymodal.checksums import CHECKSUMS, verify_checksums, write_checksums
from polymodal.data.manifest import Cohort
from polymodal.errors import ModelError
from polymodal.model_card.build import FORMAT, fit_card, limitations
from polymodal.model_card.config import CardConfig
from polymodal.model_card.render import card_markdown
from polymodal.model_card.tripod import checklist

CARD_JSON = "model_card.json"
CARD_MD = "model_card.md"


def write_fit_card(
    folder: Path,
    cohort: Cohort,
    card: CardConfig | None,
    recipe: dict[str, Any],
    *,
    device: Any = "cpu",
    cache_dir: Path | None = None,
    feature_store: bool = True,
) -> Path:
    """Write the card of a freshly fitted folder (``card`` None: every field a placeholder)."""
    payload = fit_card(
        folder,
        cohort,
        card or CardConfig(),
        recipe,
        device=device,
        cache_dir=cache_dir,
        feature_store=feature_store,
    )
    return write_card(folder, payload)


def write_card(folder: Path, payload: dict[str, Any]) -> Path:
    """Complete ``payload`` (limitations, TRIPOD+AI checklist), write both files; returns the
    Markdown's path.

    Raises:
        ModelError: a file the folder's checksums list is missing or changed.
    """
    folder = Path(folder)
    if (folder / CHECKSUMS).is_file():
        verify_checksums(folder)
    payload = {
        **payload,
        "limitations": limitations(payload),
        "tripod": checklist(
            payload["unfilled"],
            has_test="test" in payload.get("evaluations", {}),
            has_subgroups=bool(payload["card"]["subgroups"]),
        ),
    }
    (folder / CARD_JSON).write_text(
        json.dumps(payload, indent=1, allow_nan=False, ensure_ascii=False), encoding="utf-8"
    )
    markdown = folder / CARD_MD
    markdown.write_text(card_markdown(payload), encoding="utf-8")
    write_checksums(folder)
    return markdown


def read_card(folder: Path) -> dict[str, Any] | None:
    """The folder's card (checked against its checksums), or None when it has none.

    Raises:
        ModelError: the file is not covered by the checksums, or is not a model card.
    """
    payload = read_folder_json(Path(folder), CARD_JSON)
    if payload is None:
        return None
    if payload.get("format") != FORMAT:
        raise ModelError(f"{Path(folder) / CARD_JSON}: not a polymodal model card")
    return payload
