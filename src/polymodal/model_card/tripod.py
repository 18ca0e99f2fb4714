"""Which TRIPOD+AI items (Collins et al., BMJ 2024;385:e078378) a model card covers, and which it
leaves to the authors of the paper or the deployment file.

A card is generated from the folder, the cohort and the predictions: it can report what these
hold (the sample, missing data, the model and its performance with CIs) and nothing about how
the data were collected, who consented or what the model means clinically. Items the user's
``card:`` text answers count as covered only once that text is written (no ``TO FILL``).
"""

from __future__ import annotations

from typing import Any

# (item, topic, how the card covers it) — "card" items are covered; "config" items are covered
# once the named card: field is written; "user" items are the authors' to report.
ITEMS: tuple[tuple[str, str, str, str], ...] = (
    ("1-2", "title and abstract", "user", "the paper's title and abstract"),
    ("3c", "healthcare context and intended use", "config", "intended_use"),
    ("4", "objectives", "config", "intended_users"),
    ("5", "data sources and dates", "user", "where and when the data were collected"),
    ("6", "participants: setting, eligibility, treatments", "user", "eligibility and setting"),
    ("7", "data preparation", "user", "cleaning and quality checks before the manifest"),
    ("8", "outcome definition", "card", "targets and their kinds; definitions are the authors'"),
    ("9", "predictors", "card", "modalities and their encoders; measurement is the authors'"),
    ("10", "sample size", "card", "rows, patients and labelled rows per split"),
    ("11", "missing data", "card", "missing share per modality; missing modalities are masked"),
    ("12a", "how the data were used (splits)", "card", "rows and patients per split"),
    ("12c", "model type, building, hyperparameters", "card", "core, encoders, training recipe"),
    ("12e", "performance measures", "card", "the target kinds' metrics, grouped bootstrap CIs"),
    ("12f", "model updating, recalibration", "card", "calibration and conformal settings"),
    ("13", "class imbalance", "card", "label shares per split; the sampling setting"),
    ("14", "fairness", "card", "performance per subgroup column (card.subgroups)"),
    ("15", "model output", "card", "the prediction of every target"),
    ("17", "ethical approval and consent", "config", "ethical_considerations"),
    ("18-19", "funding, conflicts of interest", "user", "funding and interests"),
    ("20", "protocol and registration", "user", "protocol, registration, data availability"),
    ("21", "patient and public involvement", "user", "how patients were involved"),
    ("22b", "participant characteristics", "card", "label shares and missing modalities"),
    ("23a", "participants and outcome events per analysis", "card", "counts per split"),
    ("24", "model specification", "card", "the model folder (weights, config, spec)"),
    ("25", "performance with CIs, subgroups", "card", "validation; test after `polymodal card`"),
    ("27b", "limitations", "config", "limitations"),
    ("27c", "usability and out-of-scope uses", "config", "out_of_scope"),
)


def checklist(unfilled: list[str], has_test: bool, has_subgroups: bool) -> list[dict[str, Any]]:
    """The checklist rows: ``{"item", "topic", "status", "where"}``; status is ``covered``,
    ``partly`` (the card reports it, the authors must complete it) or ``user``."""
    rows = []
    for item, topic, source, where in ITEMS:
        if source == "config":
            status = "user" if where in unfilled else "covered"
            where = f"card.{where}" + (" (TO FILL)" if where in unfilled else "")
        elif source == "user":
            status = "user"
        else:
            status = _card_status(item, has_test, has_subgroups)
        rows.append({"item": item, "topic": topic, "status": status, "where": where})
    return rows


def _card_status(item: str, has_test: bool, has_subgroups: bool) -> str:
    if item in ("8", "9", "22b"):
        return "partly"  # definitions and measurement are the authors'
    if item == "25" and not has_test:
        return "partly"  # validation only until `polymodal card` adds the test split
    if item == "14" and not has_subgroups:
        return "user"
    return "covered"
