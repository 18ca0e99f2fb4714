"""Preprocessing state fitted on the training split, and the transforms that use it.

:meth:`Preprocessor.fit` learns, from the **training rows only**: tabular means/standard
deviations and category vocabularies, target encodings (class order, binary negative value,
regression mean/std, time-to-event bins), the text tokenizer, and per-channel series statistics.
The state saves to and loads from one JSON file (never pickle), so a prediction on a new row is
encoded exactly as during evaluation; :meth:`Preprocessor.fingerprint` keys the sample cache.

The ``transform_*`` methods turn reader output and manifest cells into the unbatched tensors of
the sample contract in :mod:`polymodal.data.batch`.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from pydantic import TypeAdapter, ValidationError

from polymodal import __version__
from polymodal.data._fitting import (
    LABEL_MISSING,
    WORD_SPECIAL_TOKENS,
    DataIssue,
    OnError,
    fit_modality,
    fit_target,
    hf_tokenizer,
    is_blank,
    parse_digits,
    parse_flag,
    read_or_record,
)
from polymodal.data.manifest import Cohort, is_missing, parse_number
from polymodal.data.spec import (
    BinaryTarget,
    CumulativeRiskTarget,
    DigitsTarget,
    ImageModality,
    Modality,
    MulticlassTarget,
    MultilabelTarget,
    RegressionTarget,
    TabularModality,
    Target,
    TextModality,
    TimeToEventTarget,
    VolumeModality,
)
from polymodal.errors import ModelError, ReadError, SpecError

__all__ = [
    "WORD_SPECIAL_TOKENS",
    "DataIssue",
    "OnError",
    "Preprocessor",
    "event_time_bin",
    "is_blank",
    "read_or_record",
]
STATE_FORMAT = "polymodal-preprocessing"
STATE_VERSION = 1
_MODALITY_ADAPTER: TypeAdapter = TypeAdapter(Modality)
_TARGET_ADAPTER: TypeAdapter = TypeAdapter(Target)


def event_time_bin(times: torch.Tensor, bins: Sequence[float]) -> torch.Tensor:
    """Discrete time-to-event bin of each time; ``bins`` are the increasing upper bin edges.

    Bin ``k`` covers ``(bins[k-1], bins[k]]`` (bin 0: up to ``bins[0]``); a time after the last
    edge gets ``len(bins)``, i.e. the sample outlived every bin.
    """
    edges = torch.as_tensor(list(bins), dtype=times.dtype, device=times.device)
    return torch.bucketize(times, edges, right=False)


def _digest(payload: Any) -> str:
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


_FLOAT32_MAX = float(np.finfo(np.float32).max)


def _fits_float32(values: Any) -> bool:
    """True when every value is finite and stays finite as float32 (the tensors' dtype)."""
    return bool(np.all(np.abs(np.asarray(values, dtype=np.float64)) <= _FLOAT32_MAX))


def _non_finite_entries(value: Any, where: str) -> list[str]:
    """Paths like ``mean[2]`` of the NaN or infinite floats in a JSON-like state value."""
    if isinstance(value, float):
        return [] if np.isfinite(value) else [where]
    if isinstance(value, Mapping):
        return [p for k, v in value.items() for p in _non_finite_entries(v, f"{where}.{k}")]
    if isinstance(value, list | tuple):
        return [p for i, v in enumerate(value) for p in _non_finite_entries(v, f"{where}[{i}]")]
    return []


def _require_finite_state(state: Mapping[str, Mapping[str, Any]]) -> None:
    """A fitted mean, spread or scale that overflowed would turn every value it scales into
    inf or NaN; refuse it here, naming the modality or target and the statistic."""
    for section, values in state.items():
        bad = [p for key, v in values.items() for p in _non_finite_entries(v, key)]
        if bad:
            kind, name = section.split(":", 1)
            raise ReadError(
                f"{kind} {name!r}: the training values are too large to standardise (fitted "
                f"{', '.join(bad[:3])} is not finite); rescale them, e.g. to other units"
            )


# ----------------------------------------------------------------------------------------------
# The fitted state
# ----------------------------------------------------------------------------------------------


class Preprocessor:
    """Fitted preprocessing for every modality and target of a cohort spec.

    Create one with :meth:`fit` (training split only) or :meth:`load`; encode with the
    ``transform_*`` methods, :meth:`encode_target` and :meth:`empty_inputs`.

    Example::

        prep = Preprocessor.fit(cohort)
        prep.save("run/preprocessing.json")
        prep = Preprocessor.load("run/preprocessing.json")
        prep.transform_tabular("labs", {"age": "61", "sex": "F"})
    """

    def __init__(
        self,
        modality_configs: Mapping[str, Modality],
        target_configs: Mapping[str, Target],
        state: Mapping[str, Mapping[str, Any]],
    ) -> None:
        self.modality_configs: dict[str, Modality] = dict(modality_configs)
        self.target_configs: dict[str, Target] = dict(target_configs)
        # Fitted values per "modality:<name>" / "target:<name>"; JSON types only.
        self.state: dict[str, dict[str, Any]] = {k: dict(v) for k, v in state.items()}
        # Training files that could not be read while fitting (skipped, listed here).
        self.fit_issues: list[DataIssue] = []
        self._tokenizers: dict[str, Any] = {}
        self._lookups: dict[str, dict[str, int]] = {}
        self._fingerprints: dict[str | None, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers get a copy: tokenizers are rebuilt there from the JSON state.
        return {**self.__dict__, "_tokenizers": {}}

    @classmethod
    def fit(cls, cohort: Cohort, *, on_error: OnError = "skip-modality") -> Preprocessor:
        """Fit every modality and target on the rows of ``cohort`` in the ``train`` split.

        Unreadable training files (series, text files) are skipped and listed in
        :attr:`fit_issues` (``on_error="skip-modality"``) or raised (``"fail"``).

        Raises:
            SpecError: no training rows, or a target's training labels contradict the spec.
            ReadError: a training cell of a numeric column or numeric label is not a number,
                or training values so large that their mean or spread overflows a float.
        """
        spec = cohort.spec
        rows = cohort.rows("train")
        if len(rows) == 0:
            raise SpecError(
                f"{cohort.manifest_path}: no row is in the training split, so preprocessing "
                "cannot be fitted; check the split column or recipe"
            )
        ids = rows[spec.id_column]
        issues: list[DataIssue] = []
        state = {
            f"modality:{name}": fit_modality(name, cfg, cohort, rows, on_error, issues)
            for name, cfg in spec.modalities.items()
        }
        for name, cfg in spec.targets.items():
            state[f"target:{name}"] = fit_target(name, cfg, rows, ids)
        _require_finite_state(state)
        prep = cls(spec.modalities, spec.targets, state)
        prep.fit_issues = issues
        return prep

    # ------------------------------------------------------------------------------------------
    # Save / load / fingerprint
    # ------------------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The whole state as JSON-ready data (spec sections + fitted values)."""
        return {
            "format": STATE_FORMAT,
            "version": STATE_VERSION,
            "polymodal_version": __version__,
            "modalities": {
                name: {
                    "config": cfg.model_dump(mode="json"),
                    "state": self.state[f"modality:{name}"],
                }
                for name, cfg in self.modality_configs.items()
            },
            "targets": {
                name: {"config": cfg.model_dump(mode="json"), "state": self.state[f"target:{name}"]}
                for name, cfg in self.target_configs.items()
            },
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], source: str = "preprocessing state"
    ) -> Preprocessor:
        """Rebuild from :meth:`to_dict` output; ModelError when it is not one."""
        if not isinstance(data, Mapping) or data.get("format") != STATE_FORMAT:
            raise ModelError(f"{source}: not a polymodal preprocessing state (no 'format' marker)")
        if data.get("version") != STATE_VERSION:
            raise ModelError(
                f"{source}: preprocessing state version {data.get('version')!r}; this polymodal "
                f"reads version {STATE_VERSION} (refit with `polymodal fit`)"
            )
        try:
            modalities = {
                n: _MODALITY_ADAPTER.validate_python(e["config"])
                for n, e in data["modalities"].items()
            }
            targets = {
                n: _TARGET_ADAPTER.validate_python(e["config"]) for n, e in data["targets"].items()
            }
            state = {f"modality:{n}": e["state"] for n, e in data["modalities"].items()}
            state.update({f"target:{n}": e["state"] for n, e in data["targets"].items()})
        except (KeyError, TypeError, AttributeError, ValidationError) as err:
            raise ModelError(
                f"{source}: damaged preprocessing state ({type(err).__name__}: {err})"
            ) from None
        return cls(modalities, targets, state)

    def save(self, path: Path | str) -> Path:
        """Write the state as JSON (atomically: a reader never sees half a file)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                # The fingerprint is informative (which state a cache or model folder used).
                json.dump({**self.to_dict(), "fingerprint": self.fingerprint()}, out, indent=1)
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        return path

    @classmethod
    def load(cls, path: Path | str) -> Preprocessor:
        """Read a state written by :meth:`save` (JSON only; nothing is unpickled)."""
        path = Path(path)
        if not path.is_file():
            raise ModelError(f"{path}: preprocessing state not found; fit one with `polymodal fit`")
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise ModelError(f"{path}: not a JSON preprocessing state ({err})") from None
        return cls.from_dict(data, source=str(path))

    def fingerprint(self, modality: str | None = None) -> str:
        """Stable hash of the settings and fitted values that decide an encoding.

        With ``modality``, only what decides that modality's tensors (its spec section, minus
        ``augment`` which acts after the cache, and its fitted values), so a change to another
        modality keeps this one's cache entries.
        """
        if modality not in self._fingerprints:
            if modality is None:
                payload: Any = self.to_dict()
            else:
                cfg, state = self._modality(modality)
                payload = {
                    "polymodal_version": __version__,
                    "config": cfg.model_dump(mode="json", exclude={"augment"}),
                    "state": state,
                }
            self._fingerprints[modality] = _digest(payload)
        return self._fingerprints[modality]

    # ------------------------------------------------------------------------------------------
    # Names and infos the model side builds against
    # ------------------------------------------------------------------------------------------

    @property
    def modalities(self) -> list[str]:
        """Modality names in spec order."""
        return list(self.modality_configs)

    @property
    def targets(self) -> list[str]:
        """Target names in spec order."""
        return list(self.target_configs)

    def _modality(self, name: str) -> tuple[Any, dict[str, Any]]:
        if name not in self.modality_configs:
            raise ModelError(f"unknown modality {name!r}; this state has {self.modalities}")
        return self.modality_configs[name], self.state[f"modality:{name}"]

    def _target(self, name: str) -> tuple[Any, dict[str, Any]]:
        if name not in self.target_configs:
            raise ModelError(f"unknown target {name!r}; this state has {self.targets}")
        return self.target_configs[name], self.state[f"target:{name}"]

    def input_info(self, modality: str) -> dict[str, Any]:
        """What an encoder needs to know about one modality's tensors."""
        cfg, st = self._modality(modality)
        if isinstance(cfg, ImageModality):
            size = list(cfg.size)
            return {
                "kind": "image",
                "channels": cfg.channels,
                "size": size,
                "views": len(cfg.columns),
            }
        if isinstance(cfg, VolumeModality):
            return {"kind": "volume", "size": None if cfg.size is None else list(cfg.size)}
        if isinstance(cfg, TabularModality):
            # Cardinality counts the reserved ids 0 (missing) and 1 (unknown / rare).
            categorical = {c: 2 + len(v) for c, v in st["vocabularies"].items()}
            return {"kind": "tabular", "numeric": list(cfg.numeric), "categorical": categorical}
        if isinstance(cfg, TextModality):
            return {
                "kind": "text",
                "vocab_size": st["vocab_size"],
                "pad_id": st["pad_id"],
                "max_tokens": cfg.max_tokens,
                "tokenizer": st.get("tokenizer_folder"),
            }
        return {"kind": "series", "channels": list(cfg.channels), "max_steps": cfg.max_steps}

    def target_info(self, target: str) -> dict[str, Any]:
        """What a head needs: kind, output size, class names and weights, time bins, scaling.

        ``n_outputs``: 1 for binary, regression and Cox; K for multiclass/multilabel; the number
        of bins for discrete time-to-event, whose ``bins`` are the upper bin edges (see
        :func:`event_time_bin`). ``mean``/``std`` undo a standardised regression target.
        Time-to-event targets also carry ``loss`` (``"discrete"`` or ``"cox"``).
        Cumulative-risk targets: ``n_outputs`` = K hazards + 1 base, ``horizons`` (K,) and
        ``monotone``; digits targets: ``n_outputs`` = 10 per digit and ``num_digits``. Every
        target carries ``prompts``: its task prompt and paraphrases, None when the spec has none.
        """
        cfg, st = self._target(target)
        info: dict[str, Any] = dict.fromkeys(("classes", "class_weights", "bins", "mean", "std"))
        info.update(kind=cfg.kind, n_outputs=1, prompts=list(cfg.prompts) if cfg.prompts else None)
        if isinstance(cfg, BinaryTarget):
            info["classes"] = [st["negative"], cfg.positive]
            if cfg.class_weights is not None:
                info["class_weights"] = [float(w) for w in cfg.class_weights]
        elif isinstance(cfg, MulticlassTarget):
            info.update(n_outputs=len(st["classes"]), classes=list(st["classes"]))
            info["class_weights"] = st["class_weights"]
        elif isinstance(cfg, MultilabelTarget):
            info.update(n_outputs=len(cfg.columns), classes=list(cfg.columns))
        elif isinstance(cfg, RegressionTarget) and cfg.standardize:
            info.update(mean=st["mean"], std=st["std"])
        elif isinstance(cfg, TimeToEventTarget):
            info["loss"] = cfg.loss
            if cfg.loss == "discrete":
                info.update(n_outputs=len(st["bins"]), bins=list(st["bins"]))
        elif isinstance(cfg, CumulativeRiskTarget):
            horizons = [float(h) for h in cfg.horizons]
            info.update(n_outputs=len(horizons) + 1, horizons=horizons, monotone=cfg.monotone)
        elif isinstance(cfg, DigitsTarget):
            info.update(n_outputs=10 * cfg.num_digits, num_digits=cfg.num_digits)
        return info

    # ------------------------------------------------------------------------------------------
    # Transforms: reader output / manifest cells -> unbatched tensors of the sample contract
    # ------------------------------------------------------------------------------------------

    def empty_inputs(self, modality: str) -> dict[str, torch.Tensor]:
        """Zeros of the right shape for a modality that is unavailable; every mask False."""
        cfg, _ = self._modality(modality)
        if isinstance(cfg, ImageModality):
            views = len(cfg.columns)
            return {
                "pixels": torch.zeros(views, cfg.channels, *cfg.size),
                "view_mask": torch.zeros(views, dtype=torch.bool),
            }
        if isinstance(cfg, VolumeModality):
            size = cfg.size or [1, 1, 1]
            return {"voxels": torch.zeros(1, *size), "spacing": torch.zeros(3)}
        if isinstance(cfg, TabularModality):
            return {
                "numeric": torch.zeros(len(cfg.numeric)),
                "numeric_missing": torch.ones(len(cfg.numeric), dtype=torch.bool),
                "categorical": torch.zeros(len(cfg.categorical), dtype=torch.int64),
            }
        if isinstance(cfg, TextModality):
            return {
                "input_ids": torch.full(
                    (1,), self.input_info(modality)["pad_id"], dtype=torch.int64
                ),
                "attention_mask": torch.zeros(1, dtype=torch.bool),
            }
        channels = len(cfg.channels)
        return {
            "values": torch.zeros(1, channels),
            "observed": torch.zeros(1, channels, dtype=torch.bool),
            "times": torch.zeros(1),
            "step_mask": torch.zeros(1, dtype=torch.bool),
        }

    def transform_image(
        self, modality: str, views: Sequence[np.ndarray | torch.Tensor | None]
    ) -> dict[str, torch.Tensor]:
        """Reader outputs ``(C, H, W)`` per view column (None: view missing) -> ``pixels``
        ``(V, C, H, W)`` and ``view_mask`` ``(V,)``."""
        cfg, _ = self._modality(modality)
        out = self.empty_inputs(modality)
        expected = (cfg.channels, *cfg.size)
        for index, view in enumerate(views):
            if view is None:
                continue
            view = torch.as_tensor(view, dtype=torch.float32)
            if tuple(view.shape) != expected:
                raise ReadError(
                    f"image of shape {tuple(view.shape)}, expected {expected} (C, H, W)"
                )
            out["pixels"][index] = view
            out["view_mask"][index] = True
        return out

    def transform_volume(
        self, modality: str, voxels: np.ndarray | torch.Tensor, spacing: Sequence[float]
    ) -> dict[str, torch.Tensor]:
        """Reader output ``(1, D, H, W)`` + voxel spacing -> ``voxels`` and ``spacing`` ``(3,)``."""
        cfg, _ = self._modality(modality)
        voxels = torch.as_tensor(voxels, dtype=torch.float32)
        if voxels.ndim != 4 or voxels.shape[0] != 1:
            raise ReadError(f"volume of shape {tuple(voxels.shape)}, expected (1, D, H, W)")
        if cfg.size is not None and list(voxels.shape[1:]) != list(cfg.size):
            raise ReadError(f"volume of size {list(voxels.shape[1:])}, expected {cfg.size}")
        return {"voxels": voxels, "spacing": torch.tensor([float(s) for s in spacing])}

    def transform_tabular(
        self,
        modality: str,
        cells: Mapping[str, str],
        bad_values: list[tuple[str, str]] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Manifest cells -> ``numeric`` ``(F_num,)`` scaled with the training mean/std (0 and
        ``numeric_missing`` True where missing) and ``categorical`` ``(F_cat,)`` ids.

        A numeric cell that is not a finite number (or too far from the training values to
        scale) raises :class:`ReadError`, or, when ``bad_values`` is a list, becomes missing and
        ``(column, reason)`` is appended there. Every value returned is finite.
        """
        cfg, st = self._modality(modality)
        out = self.empty_inputs(modality)
        for index, column in enumerate(cfg.numeric):
            try:
                value = parse_number(cells.get(column, ""), cfg.missing_values)
                if np.isnan(value):
                    continue
                scaled = (value - st["mean"][index]) / st["std"][index]
                if not _fits_float32(scaled):
                    raise ReadError(f"{value:g} is too large to scale with the training values")
            except ReadError as err:
                if bad_values is None:
                    raise ReadError(f"column {column!r}: {err.reason}") from None
                bad_values.append((column, f"{err.reason}; used as missing"))
                continue
            out["numeric"][index] = scaled
            out["numeric_missing"][index] = False
        for index, column in enumerate(cfg.categorical):
            cell = cells.get(column, "")
            if not is_missing(cell, cfg.missing_values):
                position = self._lookup(f"{modality}:{column}", st["vocabularies"][column])
                # Ids 0 and 1 are reserved: missing, and unknown / rare in training.
                out["categorical"][index] = 2 + position.get(cell.strip(), -1)
        return out

    def transform_text(self, modality: str, text: str) -> dict[str, torch.Tensor]:
        """A non-empty text -> ``input_ids`` ``(L,)`` (L <= max_tokens) and ``attention_mask``."""
        cfg, _ = self._modality(modality)
        tokenizer = self._tokenizer(modality)
        if hasattr(tokenizer, "encode_batch"):  # a fitted `tokenizers.Tokenizer`
            ids = tokenizer.encode(text).ids
        else:  # a transformers tokenizer from a local folder
            ids = tokenizer(text, truncation=True, max_length=cfg.max_tokens)["input_ids"]
        if not ids:
            raise ReadError("the text gives no tokens")
        input_ids = torch.tensor(ids, dtype=torch.int64)
        return {"input_ids": input_ids, "attention_mask": torch.ones(len(ids), dtype=torch.bool)}

    def _lookup(self, key: str, items: Sequence[str]) -> dict[str, int]:
        """Position of each item (vocabulary, class list), built once per list."""
        if key not in self._lookups:
            self._lookups[key] = {item: position for position, item in enumerate(items)}
        return self._lookups[key]

    def _tokenizer(self, modality: str) -> Any:
        if modality not in self._tokenizers:
            _, st = self._modality(modality)
            if "tokenizer_json" in st:
                from tokenizers import Tokenizer

                self._tokenizers[modality] = Tokenizer.from_str(st["tokenizer_json"])
            else:
                where = f"modalities.{modality}.tokenizer"
                self._tokenizers[modality] = hf_tokenizer(st["tokenizer_folder"], where)
        return self._tokenizers[modality]

    def transform_series(
        self, modality: str, times: np.ndarray, values: np.ndarray
    ) -> dict[str, torch.Tensor]:
        """Reader output (times ``(T,)``, values ``(T, C)`` NaN unmeasured) -> ``values``
        ``(T', C)`` scaled, ``observed`` ``(T', C)``, ``times`` ``(T',)`` and ``step_mask``.

        With ``bin_width`` the series becomes a regular grid of bins from its first observation
        (last observation per channel in a bin; empty bins are steps with nothing observed);
        otherwise the raw steps are kept. Only the last ``max_steps`` steps remain. Times are
        ``(t - first time) / time_scale`` (``time_scale`` fitted on training series spans).
        """
        cfg, st = self._modality(modality)
        times = np.asarray(times, dtype=np.float64).reshape(-1)
        values = np.asarray(values, dtype=np.float64).reshape(len(times), -1)
        if values.shape[1] != len(cfg.channels):
            raise ReadError(f"series with {values.shape[1]} channels, expected {cfg.channels}")
        keep = np.isfinite(times)
        times, values = times[keep], values[keep]
        if times.size == 0:
            raise ReadError("the series has no time steps")
        order = np.argsort(times, kind="stable")
        times, values = times[order], values[order]
        start = times[0]
        if cfg.bin_width is not None:
            step = np.floor((times - start) / cfg.bin_width).astype(np.int64)
            first_bin = max(0, int(step[-1]) - cfg.max_steps + 1)
            recent = step >= first_bin
            frame = pd.DataFrame(values[recent]).assign(step=step[recent])
            # groupby.last skips NaN: the last *measured* value of each channel in each bin.
            grid = frame.groupby("step").last().reindex(range(first_bin, int(step[-1]) + 1))
            values = grid.to_numpy(dtype=np.float64)  # (T', C) on the regular grid
            step_times = start + np.arange(first_bin, int(step[-1]) + 1) * cfg.bin_width
        else:
            values, step_times = values[-cfg.max_steps :], times[-cfg.max_steps :]
        observed = np.isfinite(values)
        scaled = (values - np.asarray(st["mean"])) / np.asarray(st["std"])
        scaled_times = (step_times - start) / st["time_scale"]
        if not _fits_float32(scaled[observed]):
            raise ReadError("series values too large to scale with the training values")
        if not _fits_float32(scaled_times):
            raise ReadError("series times too far apart to scale with the training time scale")
        return {
            "values": torch.from_numpy(np.where(observed, scaled, 0.0).astype(np.float32)),
            "observed": torch.from_numpy(observed),
            "times": torch.from_numpy(scaled_times.astype(np.float32)),
            "step_mask": torch.ones(len(step_times), dtype=torch.bool),
        }

    # ------------------------------------------------------------------------------------------
    # Targets
    # ------------------------------------------------------------------------------------------

    def empty_target(self, target: str) -> torch.Tensor:
        """The value a missing label holds (ignored, since its ``target_mask`` is False)."""
        cfg, _ = self._target(target)
        if isinstance(cfg, MulticlassTarget):
            return torch.tensor(0, dtype=torch.int64)
        if isinstance(cfg, MultilabelTarget):
            return torch.zeros(len(cfg.columns))
        if isinstance(cfg, TimeToEventTarget):
            return torch.zeros(2)
        if isinstance(cfg, CumulativeRiskTarget):
            return torch.zeros(2 * len(cfg.horizons))
        if isinstance(cfg, DigitsTarget):
            return torch.zeros(cfg.num_digits, dtype=torch.int64)
        return torch.tensor(0.0)

    def encode_target(self, target: str, cells: Mapping[str, str]) -> torch.Tensor | None:
        """One row's label, encoded as in :mod:`polymodal.data.batch`; None when missing.

        Raises:
            ReadError: a label that the fitted state does not know (names the column).
        """
        cfg, st = self._target(target)
        if isinstance(cfg, MultilabelTarget):
            flags = [parse_flag(cells.get(c, ""), c) for c in cfg.columns]
            return None if any(np.isnan(flags)) else torch.tensor(flags, dtype=torch.float32)
        if isinstance(cfg, TimeToEventTarget):
            try:
                time = parse_number(cells.get(cfg.time_column, ""), LABEL_MISSING)
            except ReadError as err:
                raise ReadError(f"column {cfg.time_column!r}: {err.reason}") from None
            event = parse_flag(cells.get(cfg.event_column, ""), cfg.event_column)
            if np.isnan(time) or np.isnan(event):
                return None
            return torch.tensor([time, event], dtype=torch.float32)
        if isinstance(cfg, CumulativeRiskTarget):
            return self._encode_cumulative_risk(cfg, cells)
        if isinstance(cfg, DigitsTarget):
            digits = parse_digits(cells.get(cfg.column, ""), cfg.column, cfg.num_digits)
            return None if digits is None else torch.tensor(digits, dtype=torch.int64)
        cell = cells.get(cfg.column, "")
        if is_blank(cell):
            return None
        label = cell.strip()
        if isinstance(cfg, BinaryTarget):
            if label not in (cfg.positive, st["negative"]):
                raise ReadError(
                    f"column {cfg.column!r}: {label!r} is neither the positive value "
                    f"{cfg.positive!r} nor the negative value {st['negative']!r}"
                )
            return torch.tensor(float(label == cfg.positive))
        if isinstance(cfg, MulticlassTarget):
            position = self._lookup(f"target:{target}", st["classes"]).get(label)
            if position is None:
                raise ReadError(
                    f"column {cfg.column!r}: {label!r} is not a class seen in training "
                    f"{st['classes']}"
                )
            return torch.tensor(position, dtype=torch.int64)
        try:
            value = parse_number(label, LABEL_MISSING)
        except ReadError as err:
            raise ReadError(f"column {cfg.column!r}: {err.reason}") from None
        if cfg.standardize:
            value = (value - st["mean"]) / st["std"]
        if not _fits_float32(value):
            raise ReadError(f"column {cfg.column!r}: {label!r} is too large to use as a label")
        return torch.tensor(value, dtype=torch.float32)

    @staticmethod
    def _encode_cumulative_risk(
        cfg: CumulativeRiskTarget, cells: Mapping[str, str]
    ) -> torch.Tensor | None:
        """(time, event) -> per-horizon labels and label mask, ``(2K,)``; None when missing.

        An event at time T is known at every horizon: 1 from the first horizon ≥ T on, 0
        before. A follow-up to T without event is 0 and known at the horizons ≤ T, unknown
        (censored) after.
        """
        try:
            time = parse_number(cells.get(cfg.time_column, ""), LABEL_MISSING)
        except ReadError as err:
            raise ReadError(f"column {cfg.time_column!r}: {err.reason}") from None
        event = parse_flag(cells.get(cfg.event_column, ""), cfg.event_column)
        if np.isnan(time) or np.isnan(event):
            return None
        if time < 0:
            raise ReadError(
                f"column {cfg.time_column!r}: {time:g} is a negative time; follow-up starts at 0"
            )
        horizons = torch.tensor(cfg.horizons, dtype=torch.float64)
        if event == 1:
            labels, known = horizons >= time, torch.ones_like(horizons, dtype=torch.bool)
        else:
            labels, known = torch.zeros_like(horizons, dtype=torch.bool), horizons <= time
        return torch.cat([labels, known]).to(torch.float32)
