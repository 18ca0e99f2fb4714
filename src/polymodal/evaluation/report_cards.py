"""The report's model-card section: each evaluated model's ``model_card.md``, as HTML.

The card is read from the model folder the evaluation names (``settings["model"]``), checked
against the folder's checksums (:func:`polymodal.model_card.folder.read_card`), and its Markdown
rendered by markdown-it-py with raw HTML switched off: a card's text is shown, never run.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from polymodal.errors import ModelError
from polymodal.evaluation.tables import EvaluationResult
from polymodal.model_card.folder import read_card
from polymodal.model_card.render import card_markdown


def card_sections(results: Mapping[str, EvaluationResult]) -> list[dict[str, Any]]:
    """Per model ``{"name", "html"}`` (the card as HTML) or ``{"name", "note"}`` (why none)."""
    return [_section(model, result.settings.get("model")) for model, result in results.items()]


def _section(model: str, folder: str | None) -> dict[str, Any]:
    if not folder:
        return {"name": model, "note": "the evaluation result names no model folder"}
    try:
        card = read_card(Path(folder))
    except (ModelError, OSError) as err:
        return {"name": model, "note": f"its model card could not be read ({err})"}
    if card is None:
        return {
            "name": model,
            "note": f"{folder} has no model card (saved by an earlier polymodal: fit it again)",
        }
    return {"name": model, "html": card_html(card_markdown(card)), "unfilled": card["unfilled"]}


def card_html(markdown: str) -> str:
    """A card's Markdown as an HTML fragment, its headings moved two levels down (under the
    report's own)."""
    from markdown_it import MarkdownIt

    shifted = re.sub(
        r"^(#{1,4}) ", lambda m: "#" * (len(m.group(1)) + 2) + " ", markdown, flags=re.M
    )
    # "js-default": tables on, raw HTML off (escaped), links checked.
    return MarkdownIt("js-default").render(shifted)
