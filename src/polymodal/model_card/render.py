"""A model card as Markdown (``model_card.md``), from its JSON (:mod:`polymodal.model_card.build`).

Sections follow the card's JSON: model details, intended use, cohort and splits, training
recipe, validation performance and calibration, subgroups, each later evaluation (every
modality subset, subgroups), limitations, ethical considerations and the TRIPOD+AI checklist.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from polymodal.model_card.config import PLACEHOLDER


def card_markdown(card: Mapping[str, Any]) -> str:
    """The whole card as Markdown text (ends with a newline)."""
    parts = [
        f"# Model card: {card['model']['core']} model\n\n"
        f"Written {card['written_at']} by polymodal {card['model']['polymodal_version']}. "
        "Counts and shares only: no row, id or note of the cohort is in this card.",
        _unfilled(card),
        _details(card["model"]),
        _intended(card["intended"]),
        _cohort(card["cohort"]),
        _recipe(card["recipe"]),
        _performance("Performance on the validation split", card["validation"]["targets"]),
        _calibration(card),
        _subgroups("Subgroups on the validation split", card["validation"]["subgroups"]),
        *(_evaluation(split, found) for split, found in card.get("evaluations", {}).items()),
        "## Known limitations\n\n" + _bullets(card.get("limitations", [])),
        "## Ethical considerations\n\n" + card["intended"]["ethical_considerations"],
        _tripod(card.get("tripod", [])),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def _unfilled(card: Mapping[str, Any]) -> str:
    if not card["unfilled"]:
        return ""
    return (
        f"> **This card is not finished:** {', '.join(card['unfilled'])} still read "
        f"'{PLACEHOLDER.strip()}'. Write them in the run config's `card:` section and fit again."
    )


def _table(header: Iterable[str], rows: Iterable[Iterable[Any]]) -> str:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    text = "n/a" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _bullets(items: Iterable[str]) -> str:
    return "\n".join(f"- {item}" for item in items) or "- none recorded"


def ci_text(found: Mapping[str, float | None]) -> str:
    """``0.812 (0.701–0.900)``; ``n/a`` where undefined."""
    if found.get("point") is None:
        return "n/a"
    text = f"{found['point']:.3f}"
    if found.get("low") is not None and found.get("high") is not None:
        text += f" ({found['low']:.3f}–{found['high']:.3f})"
    return text


def _details(model: Mapping[str, Any]) -> str:
    rows = [
        ("fusion core", model["core"]),
        ("dim", model["dim"]),
        ("core options", json.dumps(model["core_options"]) if model["core_options"] else "—"),
        ("modalities", ", ".join(f"{m} ({k})" for m, k in model["modalities"].items())),
        ("encoders", ", ".join(f"{m}: {e}" for m, e in model["encoders"].items())),
        ("modality dropout", model["modality_dropout"]),
        ("targets", ", ".join(f"{t} ({k})" for t, k in model["targets"].items())),
        ("polymodal version", model["polymodal_version"]),
    ]
    return "## Model details\n\n" + _table(("", "value"), rows)


def _intended(intended: Mapping[str, str]) -> str:
    names = {
        "intended_use": "Intended use",
        "intended_users": "Intended users",
        "out_of_scope": "Out-of-scope uses",
    }
    return "## Intended use\n\n" + "\n\n".join(
        f"**{title}.** {intended[field]}" for field, title in names.items()
    )


def _cohort(cohort: Mapping[str, Any]) -> str:
    splits = list(cohort["rows"])
    parts = [
        f"## Cohort and splits\n\nCohort `{cohort['name']}`.",
        _table(
            ("split", "rows", "patients"),
            [(s, cohort["rows"][s], cohort["patients"][s]) for s in splits],
        ),
    ]
    for target, per_split in cohort["label_shares"].items():
        labels = sorted({label for shares in per_split.values() for label in shares})
        rows = [
            (
                label,
                *(
                    f"{cohort['labels'][target][s].get(label, 0)} "
                    f"({per_split.get(s, {}).get(label, 0.0):.1%})"
                    for s in splits
                ),
            )
            for label in labels
        ]
        parts.append(
            f"Labels of `{target}` per split (rows, share):\n\n" + _table(("label", *splits), rows)
        )
    if cohort["missing"]:
        rows = [
            (m, *(f"{p[s]['rows']} ({p[s]['share']:.1%})" for s in splits))
            for m, p in cohort["missing"].items()
        ]
        parts.append(
            "Rows missing each modality (every column it reads blank):\n\n"
            + _table(("modality", *splits), rows)
        )
    return "\n\n".join(parts)


def _recipe(recipe: Mapping[str, Any]) -> str:
    rows = [(key, value) for key, value in recipe.items() if key != "train"]
    rows += [(f"train.{k}", v) for k, v in (recipe.get("train") or {}).items()]
    return "## Training recipe\n\n" + _table(("setting", "value"), rows)


def _performance(title: str, per_target: Mapping[str, Any]) -> str:
    parts = [f"## {title}"]
    for target, found in per_target.items():
        parts.append(_target_lines(target, found))
    return "\n\n".join(parts)


def _target_lines(target: str, found: Mapping[str, Any]) -> str:
    if "error" in found:
        return f"`{target}`: not scored ({found['error']})."
    head = f"`{target}` ({found['kind']}): {found['n']} rows, {found['patients']} patients"
    summary = ", ".join(f"{k} {v:.3f}" for k, v in found["summary"].items() if v is not None)
    rows = [(m, ci_text(v)) for m, v in found["metrics"].items()]
    notes = "".join(f"\n- {m}: {why}" for m, why in found.get("reasons", {}).items())
    return (
        f"{head}{'; ' + summary if summary else ''}.\n\n"
        + _table(("metric", "estimate (95% CI)"), rows)
        + notes
    )


def _calibration(card: Mapping[str, Any]) -> str:
    lines = []
    for target, found in card["validation"]["targets"].items():
        if "ece" in found.get("metrics", {}):
            lines.append(f"ECE of `{target}` on validation: {ci_text(found['metrics']['ece'])}.")
    settings = card.get("calibration") or {}
    if "recalibration" in settings:
        r = settings["recalibration"]
        lines.append(
            f"Recalibrated with {r['method']} on the validation split ({', '.join(r['targets'])}); "
            "the validation ECE above is therefore optimistic."
        )
    if "conformal" in settings:
        c = settings["conformal"]
        lines.append(
            f"Conformal prediction ({c['score']}) at {c['coverage']:.0%} coverage, calibrated "
            f"on the validation split ({', '.join(c['targets'])})."
        )
    if not settings:
        lines.append(
            "No recalibration or conformal prediction (no `calibration:` or `conformal:`)."
        )
    return "## Calibration\n\n" + _bullets(lines)


def _subgroups(title: str, subgroups: Mapping[str, Any]) -> str:
    if not subgroups:
        return f"## {title}\n\nNo subgroup columns (`card.subgroups`) were named."
    parts = [f"## {title}"]
    for column, found in subgroups.items():
        rows = []
        for level, per_target in found["levels"].items():
            if "suppressed" in per_target:
                rows.append((level, "all", per_target["suppressed"], "—", "not shown"))
                continue
            for target, t in per_target.items():
                metric, value = next(iter(t.get("metrics", {}).items()), ("n/a", {}))
                n = f"{t['n']} ({t.get('patients', 'n/a')})"
                rows.append((level, target, n, metric, ci_text(value) if value else "n/a"))
        parts.append(
            f"By `{column}`:\n\n"
            + _table(("level", "target", "rows (patients)", "metric", "estimate (95% CI)"), rows)
        )
    return "\n\n".join(parts)


def _evaluation(split: str, found: Mapping[str, Any]) -> str:
    parts = [
        f"## Performance on the {split} split\n\nCohort `{found['cohort']}`, scored "
        f"{found['evaluated_at']}; {found['n_boot']} patient-grouped bootstrap resamples. "
        "Every modality subset is scored on the same rows, the other modalities masked."
    ]
    targets = list(dict.fromkeys(t for s in found["subsets"] for t in s["targets"]))
    for target in targets:
        entries = [
            (s["modalities"], s["targets"][target])
            for s in found["subsets"]
            if target in s["targets"]
        ]
        metrics = list(dict.fromkeys(m for _, e in entries for m in e.get("metrics", {})))
        rows = [
            (
                " + ".join(mods),
                e.get("n"),
                *(
                    ci_text(e["metrics"][m]) if m in e.get("metrics", {}) else "n/a"
                    for m in metrics
                ),
            )
            for mods, e in entries
        ]
        parts.append(f"`{target}`:\n\n" + _table(("modalities", "rows", *metrics), rows))
    parts.append(_subgroups(f"Subgroups on the {split} split", found["subgroups"]))
    return "\n\n".join(parts)


def _tripod(rows: list[Mapping[str, str]]) -> str:
    covered = sum(r["status"] == "covered" for r in rows)
    return (
        "## TRIPOD+AI checklist\n\n"
        f"{covered} of {len(rows)} items are covered by this card; `partly`: the card reports "
        "the numbers, the authors complete the item; `user`: the authors report it.\n\n"
        + _table(("item", "topic", "status", "where"), [tuple(r.values()) for r in rows])
    )
