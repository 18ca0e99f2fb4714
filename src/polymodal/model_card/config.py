"""The ``card:`` section of a run config: what the model card says that only its authors know.

Example::

    card:
      intended_use: Triage support for suspected melanoma in dermatology clinics.
      intended_users: Dermatologists reviewing referrals; not patients.
      out_of_scope: Children; images from phones; any decision without a clinician.
      limitations: Trained at two sites in one country.
      ethical_considerations: Darker skin types are under-represented (see subgroups).
      subgroups:                       # manifest columns to report performance by
        - sex
        - site
        - {column: age, bins: [40, 65]}   # numeric: <40, 40–65, ≥65

Every free-text field left out stays a ``TO FILL: …`` placeholder, printed as such in the card,
so that a card nobody wrote is visibly unwritten.
"""

from __future__ import annotations

from itertools import pairwise

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

PLACEHOLDER = "TO FILL: "

# Field → the placeholder the card shows until the user writes it (TRIPOD+AI's wording).
PLACEHOLDERS: dict[str, str] = {
    "intended_use": PLACEHOLDER + "the clinical decision or task the model supports, the care "
    "setting and the point in the care pathway where it is used",
    "intended_users": PLACEHOLDER + "who uses its output (e.g. radiologists, triage nurses) and "
    "who is the patient population it is meant for",
    "out_of_scope": PLACEHOLDER + "uses, settings and populations it must not be used for",
    "limitations": PLACEHOLDER + "known limitations beyond those the card lists (data "
    "collection, label quality, sites, time period)",
    "ethical_considerations": PLACEHOLDER + "risks of harm, groups that may be served worse, "
    "consent and data governance",
}

# A categorical subgroup column with more distinct values than this is refused (likely an id or
# free text; a card reports groups, not people).
MAX_LEVELS = 20


class Subgroup(BaseModel):
    """One manifest column to report performance by; a numeric one cut at ``bins``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    column: str = Field(min_length=1)
    bins: list[float] | None = Field(
        None,
        min_length=1,
        description="Cut points of a numeric column, increasing: [40, 65] makes <40, 40–65, ≥65.",
    )

    @field_validator("bins")
    @classmethod
    def _increasing(cls, bins: list[float] | None) -> list[float] | None:
        if bins is not None and any(b <= a for a, b in pairwise(bins)):
            raise ValueError(f"bins must increase strictly, got {bins}")
        return bins


class CardConfig(BaseModel):
    """``card:``: the model card's intended use, limitations and subgroup columns."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    intended_use: str | None = None
    intended_users: str | None = None
    out_of_scope: str | None = None
    limitations: str | None = None
    ethical_considerations: str | None = None
    subgroups: list[Subgroup] = Field(
        default_factory=list,
        description="Manifest columns to report performance by (a name, or {column, bins}).",
    )
    min_patients: int = Field(
        5,
        ge=1,
        description="A subgroup level with fewer patients is listed without numbers (small "
        "cells can identify a person).",
    )
    n_boot: int = Field(
        500, ge=10, description="Patient-grouped bootstrap resamples of the card's intervals."
    )

    @model_validator(mode="before")
    @classmethod
    def _names_as_columns(cls, data: object) -> object:
        """``subgroups: [sex, site]`` is short for ``[{column: sex}, {column: site}]``."""
        if isinstance(data, dict) and isinstance(data.get("subgroups"), list):
            data = {
                **data,
                "subgroups": [
                    {"column": s} if isinstance(s, str) else s for s in data["subgroups"]
                ],
            }
        return data

    @field_validator("subgroups")
    @classmethod
    def _distinct(cls, subgroups: list[Subgroup]) -> list[Subgroup]:
        columns = [s.column for s in subgroups]
        twice = sorted({c for c in columns if columns.count(c) > 1})
        if twice:
            raise ValueError(f"subgroup column(s) {twice} listed twice; keep one of each")
        return subgroups

    def text(self, field: str) -> str:
        """The user's text of a free-text field, or its ``TO FILL`` placeholder."""
        value = getattr(self, field)
        return value.strip() if value and value.strip() else PLACEHOLDERS[field]

    def unfilled(self) -> list[str]:
        """The free-text fields still holding their placeholder."""
        return [f for f in PLACEHOLDERS if self.text(f).startswith(PLACEHOLDER)]
