"""The JSON shapes of the service: what ``POST /predict`` takes and what it answers.

A patient is the row a manifest would hold: ``fields`` are the manifest cells of tabular and
text columns (by column name, as ``GET /model`` lists them) and ``files`` name the files of
image, volume and series columns by a path inside the allowed folder (``--allow-dir``); an
upload (multipart) fills a file column instead. A modality left out is missing for that
patient, as in a manifest with blank cells.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

# Patients in one request, and patients one request may ask to explain (each costs one model
# pass per data element).
MAX_PATIENTS = 256
MAX_EXPLAINED = 8

CellValue = str | int | float | None


class PatientIn(BaseModel):
    """One patient's data; every part may be absent."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(
        None, max_length=200, description="Echoed back; default: the patient's position."
    )
    fields: dict[str, CellValue] = Field(
        default_factory=dict,
        description="Manifest column -> value for tabular and text columns (null/'' = missing).",
    )
    files: dict[str, str] = Field(
        default_factory=dict,
        description="File column -> path inside the allowed folder (images, volumes, series).",
    )


class PredictRequest(BaseModel):
    """One patient (``patient``) or a batch (``patients``), and what to compute beside."""

    model_config = ConfigDict(extra="forbid")

    patient: PatientIn | None = None
    patients: list[PatientIn] | None = Field(None, min_length=1, max_length=MAX_PATIENTS)
    explain: bool = Field(False, description="Add each patient's most informative elements.")
    leave_one_out: bool = Field(
        False, description="Add the predictions with each present modality left out."
    )
    task: str | None = Field(None, description="Target to explain (default: the only one).")
    top: int = Field(8, ge=1, le=100, description="Elements listed per explained patient.")

    @model_validator(mode="after")
    def _one_or_a_batch(self) -> PredictRequest:
        if (self.patient is None) == (self.patients is None):
            raise ValueError("give either 'patient' (one) or 'patients' (a list), not both/none")
        if self.explain and len(self.all_patients()) > MAX_EXPLAINED:
            raise ValueError(
                f"explain=true takes at most {MAX_EXPLAINED} patients per request "
                f"(got {len(self.all_patients())}); split the batch"
            )
        return self

    def all_patients(self) -> list[PatientIn]:
        """The patients in request order."""
        return [self.patient] if self.patient is not None else list(self.patients or [])


# Target -> output column (as `polymodal predict` writes them) -> value.
Predictions = dict[str, dict[str, Any]]


class Element(BaseModel):
    """One data element and how much the prediction moved without it."""

    element: str
    kind: str
    modality: str
    detail: str | None = None
    effect: float | None = Field(None, description="prediction - prediction without it")


class Overlay(BaseModel):
    """Region relevance over an image or volume slice, as a PNG data URI."""

    modality: str
    label: str
    png: str


class Explanation(BaseModel):
    task: str
    score: str = Field(description="What the explained number is, e.g. probability of '1'.")
    prediction: float | None
    elements: list[Element]
    overlays: list[Overlay]


class PatientPrediction(BaseModel):
    id: str
    modalities_used: list[str]
    modalities_missing: list[str]
    predictions: Predictions
    note: str | None = None
    without: dict[str, Predictions | None] | None = Field(
        None,
        description="Modality left out -> predictions (leave_one_out=true); null: no data left.",
    )
    explanation: Explanation | None = None


class PredictResponse(BaseModel):
    predictions: list[PatientPrediction]
    warnings: list[str] = Field(default_factory=list)
