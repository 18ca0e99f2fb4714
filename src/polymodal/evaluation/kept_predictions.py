"""The per-sample predictions ``polymodal evaluate`` keeps beside its metrics, as Parquet.

Every metric, figure and paired test can be recomputed from this file without the model
(:func:`read_predictions`, then :meth:`KeptPredictions.arrays` → ``compute_metrics``).

Schema (format 1): one row per (modality subset, sample) of the evaluated split.

=====================  ==========================  ================================================
column                 type                        meaning
=====================  ==========================  ================================================
``subset``             string                      the modalities the model was given, joined by
                                                   ``" + "`` (``"lesion + labs"``); every subset
                                                   holds the same samples in the same order
``sample_id``          string                      the manifest's id column
``group_id``           string                      the patient (group) id the bootstrap resamples
``available[m]``       bool                        modality ``m`` has data for this sample (in the
                                                   data, whatever the subset); the model saw it
                                                   when also ``m`` is in ``subset``
``label[t]``           float/int, or fixed-size    target ``t``'s label as its metrics score it
                       list of them                (``TargetKind.scored_labels``: 0/1, a class
                                                   index, a value, (time, event), …); null where
                                                   the sample has no label for ``t``
``score[t]``           float, or fixed-size list   what ``t``'s metrics read (``TargetKind.
                                                   prediction``: P(positive), K class
                                                   probabilities, a value, a risk, …)
``<t>_…``              as the predictor writes     the readable prediction columns of ``t``
                                                   (``TargetKind.prediction_columns``), as in
                                                   ``polymodal predict``'s CSV
=====================  ==========================  ================================================

The file's key-value metadata ``polymodal.predictions`` holds JSON: ``format``, ``modalities``
(the model's), ``subsets`` (lists of modality names, in row order), ``targets`` (per target its
``kind``, ``classes``, ``horizons``: the options its metrics need) and ``settings`` (model,
manifest, split, specificity, tta views, as in the evaluation JSON).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from polymodal import targets
from polymodal.evaluation.metrics import EvaluationError
from polymodal.targets.predictions import PredictionCollector

FORMAT = 1
METADATA_KEY = b"polymodal.predictions"
# The target info entries a reader needs to score (compute_metrics' options) and tell targets apart.
TARGET_KEYS = ("kind", "classes", "horizons", "n_outputs")


def subset_name(subset: Sequence[str]) -> str:
    """How a subset is named in the ``subset`` column and in tables: ``"image + tabular"``."""
    return " + ".join(subset)


def _column(values: np.ndarray, valid: np.ndarray | None = None) -> pa.Array:
    """``(n,)`` → a plain column, ``(n, k, …)`` → a fixed-size list of k·… values per row;
    rows where ``valid`` is False are null."""
    mask = None if valid is None else ~np.asarray(valid, dtype=bool)
    if values.ndim == 1:
        return pa.array(values, mask=mask)
    flat = values.reshape(len(values), -1)
    inner = pa.array(flat.ravel())
    return pa.FixedSizeListArray.from_arrays(
        inner, flat.shape[1], mask=pa.array(mask) if mask is not None else None
    )


def predictions_table(
    collectors: Mapping[tuple[str, ...], PredictionCollector],
    available: Mapping[str, np.ndarray],
    target_infos: Mapping[str, Mapping[str, Any]],
    settings: Mapping[str, Any],
) -> pa.Table:
    """The kept predictions of every subset as one Arrow table (schema: module docstring).

    Args:
        collectors: ``{subset: collector}`` from :meth:`Predictor.collect_subsets`.
        available: ``{modality: (n,)}`` availability in the data, in the collectors' row order.
        target_infos: the model's ``{target: info}``.
        settings: the evaluation's settings (model, manifest, split, …), JSON-serialisable.
    """
    blocks = []
    for subset, collector in collectors.items():
        n = len(collector.ids)
        columns: dict[str, pa.Array] = {
            "subset": pa.array([subset_name(subset)] * n, pa.string()),
            "sample_id": pa.array([str(i) for i in collector.ids], pa.string()),
            "group_id": pa.array([str(g) for g in collector.groups], pa.string()),
        }
        for modality, used in available.items():
            columns[f"available[{modality}]"] = pa.array(np.asarray(used, dtype=bool))
        for target, info in target_infos.items():
            kind = targets.get(info["kind"])
            outputs = collector.predictions(target)
            labels, labelled = collector.labels(target)
            columns[f"label[{target}]"] = _column(labels, labelled)
            columns[f"score[{target}]"] = _column(outputs[kind.prediction])
            for name, values in kind.prediction_columns(target, info, outputs).items():
                if name in columns:
                    raise EvaluationError(
                        f"target {target!r}: its prediction column {name!r} clashes with another "
                        "column of the predictions file; rename the target"
                    )
                columns[name] = _column(np.asarray(values))
        blocks.append(pa.table(columns))
    table = pa.concat_tables(blocks)
    metadata = {
        "format": FORMAT,
        "modalities": list(available),
        "subsets": [list(s) for s in collectors],
        "targets": {
            t: {key: info.get(key) for key in TARGET_KEYS} for t, info in target_infos.items()
        },
        "settings": dict(settings),
    }
    return table.replace_schema_metadata({METADATA_KEY: json.dumps(metadata, default=str)})


def write_predictions(path: Path | str, table: pa.Table) -> Path:
    """Write :func:`predictions_table`'s table to ``path`` (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path


class LabelledRows(NamedTuple):
    """One target's labelled samples of one subset, ready for ``compute_metrics``."""

    ids: np.ndarray  # (n,) str
    groups: np.ndarray  # (n,) str
    y_true: np.ndarray  # (n, …) as scored
    prediction: np.ndarray  # (n, …) what the metrics read


def _numpy(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """An Arrow column without nulls → numpy; fixed-size lists → ``(n, k)``."""
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_fixed_size_list(array.type):
        width = array.type.list_size
        return np.asarray(array.flatten().to_numpy(zero_copy_only=False)).reshape(-1, width)
    return np.asarray(array.to_numpy(zero_copy_only=False))


@dataclass(frozen=True)
class KeptPredictions:
    """A predictions file as read: the Arrow table and its metadata (module docstring)."""

    path: Path
    table: pa.Table
    modalities: list[str]
    subsets: list[tuple[str, ...]]
    targets: dict[str, dict[str, Any]]
    settings: dict[str, Any]

    def frame(self) -> pd.DataFrame:
        """All rows as pandas (list columns as numpy arrays per cell)."""
        return self.table.to_pandas()

    def subset_rows(self, subset: Sequence[str]) -> pa.Table:
        """The rows of one subset, in the evaluated order."""
        return self.table.filter(pc.equal(self.table["subset"], subset_name(subset)))

    def arrays(self, subset: Sequence[str], target: str) -> LabelledRows:
        """The labelled samples of ``target`` with only ``subset`` available.

        ``compute_metrics(info["kind"], rows.y_true, rows.prediction, classes=...)`` on them
        gives the evaluation JSON's point estimates; ``rows.groups`` its bootstrap groups.
        """
        if target not in self.targets:
            raise EvaluationError(
                f"{self.path}: no target {target!r}; it holds {sorted(self.targets)}"
            )
        if tuple(subset) not in self.subsets:
            raise EvaluationError(
                f"{self.path}: the subset {subset_name(subset)!r} was not evaluated"
            )
        rows = self.subset_rows(subset)
        rows = rows.filter(pc.is_valid(rows[f"label[{target}]"]))
        return LabelledRows(
            _numpy(rows["sample_id"]).astype(str),
            _numpy(rows["group_id"]).astype(str),
            _numpy(rows[f"label[{target}]"]),
            _numpy(rows[f"score[{target}]"]),
        )

    def prediction_columns(self, subset: Sequence[str], target: str) -> dict[str, np.ndarray]:
        """The readable prediction columns of ``target`` (``TargetKind.prediction_columns``) for
        the rows :meth:`arrays` gives, ``(n,)`` each, named without the ``"<target>_"`` prefix.
        Columns of another target whose name extends this one (``"a_b"`` for ``"a"``) are not
        included."""
        rows = self.subset_rows(subset)
        rows = rows.filter(pc.is_valid(rows[f"label[{target}]"]))
        longer = [f"{t}_" for t in self.targets if t != target and t.startswith(f"{target}_")]
        return {
            name.removeprefix(f"{target}_"): _numpy(rows[name])
            for name in rows.column_names
            if name.startswith(f"{target}_") and not any(name.startswith(o) for o in longer)
        }


def read_predictions(path: Path | str) -> KeptPredictions:
    """Read a file written by ``polymodal evaluate``; errors name the file and what to do."""
    path = Path(path)
    if not path.is_file():
        raise EvaluationError(
            f"{path}: predictions file not found; `polymodal evaluate MODEL_DIR --json "
            "OUT/eval.json` writes OUT/eval.predictions.parquet"
        )
    try:
        table = pq.read_table(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise EvaluationError(f"{path}: not a readable Parquet file ({err})") from None
    raw = (table.schema.metadata or {}).get(METADATA_KEY)
    if raw is None:
        raise EvaluationError(
            f"{path}: a Parquet file without polymodal's predictions metadata; pass a file "
            "written by `polymodal evaluate`"
        )
    meta = json.loads(raw)
    if meta.get("format") != FORMAT:
        raise EvaluationError(
            f"{path}: predictions format {meta.get('format')!r}; this polymodal reads format "
            f"{FORMAT} (upgrade polymodal or re-run evaluate)"
        )
    return KeptPredictions(
        path=path,
        table=table,
        modalities=list(meta["modalities"]),
        subsets=[tuple(s) for s in meta["subsets"]],
        targets={t: dict(info) for t, info in meta["targets"].items()},
        settings=dict(meta["settings"]),
    )
