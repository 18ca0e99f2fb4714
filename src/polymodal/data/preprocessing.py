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
import torch
from pydantic import TypeAdapter, ValidationError

from polymodal import __version__, targets
from polymodal.data.cells import is_blank
from polymodal.data.issues import DataIssue, OnError, read_or_record
from polymodal.data.manifest import Cohort
from polymodal.data.spec import Modality, Target
from polymodal.errors import ModelError, ReadError, SpecError
from polymodal.modalities import Fitted, ModalityKind, TrainingRows
from polymodal.modalities import get as modality_kind
from polymodal.modalities.text import WORD_SPECIAL_TOKENS

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
        # Per modality: its spec section, state and scratch (tokenizer, lookups) for its kind.
        self._fitted: dict[str, Fitted] = {}
        self._lookups: dict[str, dict[str, int]] = {}
        self._target_states: dict[str, targets.TargetState] = {}
        self._fingerprints: dict[str | None, str] = {}

    def __getstate__(self) -> dict[str, Any]:
        # DataLoader workers get a copy: tokenizers are rebuilt there from the JSON state.
        return {**self.__dict__, "_fitted": {}}

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
        groups = rows[spec.group_column] if spec.group_column else None
        training = TrainingRows(
            rows, ids, cohort.resolve_path, spec.base_dir, on_error, issues, groups=groups
        )
        state = {
            f"modality:{name}": modality_kind(cfg.kind).fit(name, cfg, training)
            for name, cfg in spec.modalities.items()
        }
        for name, cfg in spec.targets.items():
            fitted = targets.get(cfg.kind).fit(f"targets.{name}", cfg, rows, ids)
            state[f"target:{name}"] = fitted.model_dump(mode="json")
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
            targets_cfg = {
                n: _TARGET_ADAPTER.validate_python(e["config"]) for n, e in data["targets"].items()
            }
            state = {f"modality:{n}": e["state"] for n, e in data["modalities"].items()}
            state.update({f"target:{n}": e["state"] for n, e in data["targets"].items()})
            for n, cfg in targets_cfg.items():
                targets.get(cfg.kind).read_state(state[f"target:{n}"])  # a damaged one fails here
        except (KeyError, TypeError, AttributeError, ValidationError) as err:
            raise ModelError(
                f"{source}: damaged preprocessing state ({type(err).__name__}: {err})"
            ) from None
        return cls(modalities, targets_cfg, state)

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

    def _target(self, name: str) -> tuple[Any, targets.TargetState]:
        """A target's spec section and its typed fitted state."""
        if name not in self.target_configs:
            raise ModelError(f"unknown target {name!r}; this state has {self.targets}")
        cfg = self.target_configs[name]
        if name not in self._target_states:
            raw = self.state[f"target:{name}"]
            self._target_states[name] = targets.get(cfg.kind).read_state(raw)
        return cfg, self._target_states[name]

    def fitted(self, modality: str) -> Fitted:
        """One modality's spec section, fitted state and scratch, as its kind reads them."""
        if modality not in self._fitted:
            if modality not in self.modality_configs:
                self._modality(modality)  # raises, naming the known modalities
            # A state built by hand may leave out the kinds that learn nothing from training.
            state = self.state.get(f"modality:{modality}", {})
            self._fitted[modality] = Fitted(modality, self.modality_configs[modality], state)
        return self._fitted[modality]

    def _kind(self, modality: str) -> ModalityKind:
        return modality_kind(self._modality(modality)[0].kind)

    def input_info(self, modality: str) -> dict[str, Any]:
        """What an encoder needs to know about one modality's tensors (keys: see its kind)."""
        cfg, st = self._modality(modality)
        return self._kind(modality).input_info(cfg, st)

    def pad_ids(self) -> dict[str, int]:
        """Per modality with padded tokens, the id collate writes into their padding."""
        pads = {m: self._kind(m).pad_id(*self._modality(m)) for m in self.modalities}
        return {m: pad for m, pad in pads.items() if pad is not None}

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
        cfg, state = self._target(target)
        return targets.get(cfg.kind).info(cfg, state)

    # ------------------------------------------------------------------------------------------
    # Transforms: reader output / manifest cells -> unbatched tensors of the sample contract
    # ------------------------------------------------------------------------------------------

    def empty_inputs(self, modality: str) -> dict[str, torch.Tensor]:
        """Zeros of the right shape for a modality that is unavailable; every mask False."""
        return self._kind(modality).empty_inputs(self.fitted(modality))

    def transform_image(
        self, modality: str, views: Sequence[np.ndarray | torch.Tensor | None]
    ) -> dict[str, torch.Tensor]:
        """Reader outputs ``(C, H, W)`` per view column (None: view missing) -> ``pixels``
        ``(V, C, H, W)`` and ``view_mask`` ``(V,)``."""
        return self._kind(modality).transform(self.fitted(modality), views)

    def transform_volume(
        self, modality: str, voxels: np.ndarray | torch.Tensor, spacing: Sequence[float]
    ) -> dict[str, torch.Tensor]:
        """Reader output ``(1, D, H, W)`` + voxel spacing -> ``voxels`` and ``spacing`` ``(3,)``."""
        return self._kind(modality).transform(self.fitted(modality), voxels, spacing)

    def transform_tabular(
        self,
        modality: str,
        cells: Mapping[str, str],
        bad_values: list[tuple[str, str]] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Manifest cells -> ``numeric``, ``numeric_missing`` and ``categorical`` (see
        :meth:`polymodal.modalities.tabular.Tabular.transform`)."""
        return self._kind(modality).transform(self.fitted(modality), cells, bad_values)

    def transform_text(self, modality: str, text: str) -> dict[str, torch.Tensor]:
        """A non-empty text -> ``input_ids`` ``(L,)`` (L <= max_tokens) and ``attention_mask``."""
        return self._kind(modality).transform(self.fitted(modality), text)

    def _lookup(self, key: str, items: Sequence[str]) -> dict[str, int]:
        """Position of each item (vocabulary, class list), built once per list."""
        if key not in self._lookups:
            self._lookups[key] = {item: position for position, item in enumerate(items)}
        return self._lookups[key]

    def transform_series(
        self, modality: str, times: np.ndarray, values: np.ndarray
    ) -> dict[str, torch.Tensor]:
        """Reader output (times ``(T,)``, values ``(T, C)``) -> ``values``, ``observed``,
        ``times`` and ``step_mask`` (see :meth:`polymodal.modalities.series.Series.transform`)."""
        return self._kind(modality).transform(self.fitted(modality), times, values)

    # ------------------------------------------------------------------------------------------
    # Targets
    # ------------------------------------------------------------------------------------------

    def empty_target(self, target: str) -> torch.Tensor:
        """The value a missing label holds (ignored, since its ``target_mask`` is False)."""
        cfg, _ = self._target(target)
        return targets.get(cfg.kind).empty(cfg)

    def encode_target(self, target: str, cells: Mapping[str, str]) -> torch.Tensor | None:
        """One row's label, encoded as in :mod:`polymodal.data.batch`; None when missing.

        Raises:
            ReadError: a label that the fitted state does not know (names the column).
        """
        cfg, state = self._target(target)
        return targets.get(cfg.kind).encode(cfg, state, cells)
