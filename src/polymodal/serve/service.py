"""The model side of the service: a request's rows as a manifest, read by the Predictor.

Rows are written as a CSV laid out like the training manifest (file cells relative to the
work folder, see :mod:`polymodal.serve.files`) and predicted with
:meth:`Predictor.predict_manifest`, the leave-one-out matrix with
:meth:`Predictor.collect_subsets` and explanations with :func:`explain_model`: the same
preprocessing, availability rules and checks as ``polymodal predict`` and ``explain``.
Not thread-safe: the app runs every call on one worker thread.
"""

from __future__ import annotations

import base64
import dataclasses
import math
import tempfile
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polymodal import targets
from polymodal.data.manifest import load_cohort
from polymodal.prediction_checks import warn_unseen_categories
from polymodal.predictor import Predictor
from polymodal.serve.inputs import ModelInputs


@dataclass
class PatientRow:
    """One patient as a manifest row: ``key`` is its id in the manifest (unique in the
    service), ``cells`` its other columns (blank = missing)."""

    key: str
    cells: dict[str, str]


class PredictionService:
    """Predictions, leave-one-out predictions and explanations of :class:`PatientRow` lists."""

    def __init__(self, predictor: Predictor, inputs: ModelInputs, work_root: Path) -> None:
        self.predictor = predictor
        self.inputs = inputs
        self.work_root = work_root
        self.target_infos = predictor.loaded.target_infos
        self.calls = 0  # Predictor passes made (batching is visible here)

    def predict(self, rows: list[PatientRow]) -> list[dict[str, Any]]:
        """Per row: ``{"modalities_used", "modalities_missing", "predictions", "note",
        "warnings"}``; the warnings concern the row or its request, naming rows by key."""
        self.calls += 1
        manifest = self._manifest(rows)
        with manifest as path, warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UserWarning)
            table = self.predictor.predict_manifest(path, root=self.work_root)
        messages = [str(w.message) for w in caught]
        request_warnings = self._request_warnings(manifest.frame, rows)
        results = []
        for i, row in enumerate(rows):
            used = [m for m in self.predictor.modalities if bool(table[f"available_{m}"].iat[i])]
            note = str(table["note"].iat[i]) if "note" in table else ""
            results.append(
                {
                    "modalities_used": used,
                    "modalities_missing": [m for m in self.predictor.modalities if m not in used],
                    "predictions": self._by_target(table.iloc[i]),
                    "note": note or None,
                    "warnings": [m for m in messages if row.key in m] + request_warnings[i],
                }
            )
        return results

    def _request_warnings(self, frame: pd.DataFrame, rows: list[PatientRow]) -> list[list[str]]:
        """Per row, the warnings about values of its own request's rows.

        The batch's warnings that name no row (unseen categories) would show one client the
        values of another's patients: they are found again on each request's rows alone.
        """
        requests = pd.Series([r.key.rpartition("-")[0] for r in rows])
        found: dict[str, list[str]] = {}
        for request, positions in requests.groupby(requests).groups.items():
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", UserWarning)
                warn_unseen_categories(
                    self.predictor.loaded.preprocessor,
                    self.predictor.modalities,
                    frame.iloc[list(positions)],
                )
            found[request] = [str(w.message) for w in caught]
        return [found[request] for request in requests]

    def leave_one_out(self, rows: list[PatientRow]) -> list[dict[str, dict | None]]:
        """Per row: present modality -> the predictions without it (None: nothing left)."""
        every = tuple(self.predictor.modalities)
        if len(every) < 2:
            return [{} for _ in rows]
        subsets = {m: tuple(o for o in every if o != m) for m in every}
        with self._manifest(rows) as manifest, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # predict() already reported them
            cohort = load_cohort(
                self.predictor.loaded.spec,
                manifest_override=manifest,
                for_inference=True,
                root=self.work_root,
            )
            collectors, available = self.predictor.collect_subsets(cohort, list(subsets.values()))
        columns = {
            m: self._columns(collectors[subset].predictions, len(rows))
            for m, subset in subsets.items()
        }
        out = []
        for i in range(len(rows)):
            present = [m for m in every if available[m][i]]
            out.append(
                {
                    m: (columns[m][i] if any(available[o][i] for o in subsets[m]) else None)
                    for m in present
                }
            )
        return out

    def explain(
        self, row: PatientRow, task: str | None, top: int, patient_id: str
    ) -> dict[str, Any]:
        """The ``top`` elements of one patient by |occlusion effect| on ``task``, and the
        region overlays of its images and volumes (PNG data URIs, titled ``patient_id``)."""
        from polymodal.explain import explain_model
        from polymodal.explain.overlay import save_overlay

        with self._manifest([row]) as manifest, warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            result = explain_model(
                self.predictor.loaded,
                manifest,
                task,
                method="occlusion",
                max_samples=1,
                overlays=1,
                device=self.predictor.device,
                root=self.work_root,
            )
        table = result.per_sample.assign(size=result.per_sample["occlusion_effect"].abs())
        table = table.sort_values("size", ascending=False, na_position="last").head(top)
        overlays = []
        with tempfile.TemporaryDirectory(dir=self.work_root) as folder:
            for i, region_map in enumerate(result.region_maps):
                titled = dataclasses.replace(region_map, sample_id=patient_id)
                png = save_overlay(titled, Path(folder) / f"{i}.png").read_bytes()
                overlays.append(
                    {
                        "modality": region_map.modality,
                        "label": region_map.label or region_map.modality,
                        "png": "data:image/png;base64," + base64.b64encode(png).decode(),
                    }
                )
        return {
            "task": result.task,
            "score": result.score,
            "prediction": _json_value(table["prediction"].iat[0]) if len(table) else None,
            "elements": [
                {
                    "element": r.element,
                    "kind": r.kind,
                    "modality": r.modality,
                    "detail": None if pd.isna(r.detail) or r.detail == "" else str(r.detail),
                    "effect": _json_value(r.occlusion_effect),
                }
                for r in table.itertuples()
            ],
            "overlays": overlays,
        }

    def _manifest(self, rows: list[PatientRow]) -> _Manifest:
        columns = [*self.inputs.value_columns, *self.inputs.file_columns]
        frame = pd.DataFrame(
            [
                {self.inputs.id_column: r.key, **{c: r.cells.get(c, "") for c in columns}}
                for r in rows
            ],
            columns=[self.inputs.id_column, *columns],
        )
        return _Manifest(self.work_root / "manifests" / f"{uuid.uuid4().hex}.csv", frame)

    def _by_target(self, row: pd.Series) -> dict[str, dict[str, Any]]:
        """A predict_manifest row's output columns grouped by target (longest name first, so
        that target ``risk`` does not take the columns of ``risk_5y``)."""
        names = sorted(self.target_infos, key=len, reverse=True)
        grouped: dict[str, dict[str, Any]] = {t: {} for t in self.target_infos}
        for column, value in row.items():
            owner = next((t for t in names if str(column).startswith(f"{t}_")), None)
            if owner is not None and not str(column).startswith("available_"):
                grouped[owner][str(column)] = _json_value(value)
        return grouped

    def _columns(self, predictions: Any, n: int) -> list[dict[str, dict[str, Any]]]:
        """Per row, ``{target: {column: value}}`` from a collector's head outputs."""
        rows: list[dict[str, dict[str, Any]]] = [{} for _ in range(n)]
        for target, info in self.target_infos.items():
            columns = targets.get(info["kind"]).prediction_columns(
                target, info, predictions(target)
            )
            for i in range(n):
                rows[i][target] = {c: _json_value(v[i]) for c, v in columns.items()}
        return rows


class _Manifest:
    """A rows' CSV that exists for the length of a ``with`` block."""

    def __init__(self, path: Path, frame: pd.DataFrame) -> None:
        self.path, self.frame = path, frame

    def __enter__(self) -> Path:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.frame.to_csv(self.path, index=False)
        return self.path

    def __exit__(self, *exc: object) -> None:
        self.path.unlink(missing_ok=True)


def _json_value(value: Any) -> Any:
    """A prediction cell as JSON: numbers as float/int, NaN and None as null, arrays as lists."""
    if isinstance(value, np.ndarray):
        return [_json_value(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if value is None or value is pd.NA or (isinstance(value, float) and not math.isfinite(value)):
        return None
    if isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
