"""Whether a run folder may be resumed with a given config: the same run, or a refusal.

A resumed run restores weights, optimiser and schedule from ``last.ckpt``; with another model or
training recipe it would crash on mismatched tensors or, worse, quietly train a hybrid. So the
sections saved in ``OUT/run.json`` (``model``, ``train`` and the plugin sections) are compared
with the new ones, key by key, and any difference refuses the resume, except the keys in
:data:`MAY_CHANGE_ON_RESUME`, which change how or how long the run goes on, not what it trains.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from polymodal.errors import PolymodalError
from polymodal.training.plugins import PLUGINS

# Sections of run.json that define what a run trains: the model, the training settings and
# every registered training plugin's section.
COMPARED_SECTIONS = ("model", "train", *PLUGINS.names())

MAY_CHANGE_ON_RESUME = frozenset(
    {
        "train.max_epochs",  # train longer (or stop sooner)
        # Loader processes: the same rows in the same order, and a row's augmentation depends on
        # (seed, epoch, row) only. (train.num_threads is compared: the thread count can change
        # the order of floating-point sums.)
        "train.num_workers",
        "train.accelerator",  # another device
        "train.cache",  # the sample cache holds the same decoded values
        "train.cache_dir",
        "train.log_every_n_steps",  # logging only
        # How many processes share a step: a DDP checkpoint resumes on one process and the
        # other way round, as long as the global batch stays (see _GLOBAL_BATCH).
        "train.devices",
        "train.num_nodes",
        "train.strategy",
        "train.sync_batchnorm",
    }
)
# Compared as one number, batch_size × devices × num_nodes × accumulate_grad_batches: the
# rows of one optimiser step, which decide what is trained.
_GLOBAL_BATCH = ("train.batch_size", "train.accumulate_grad_batches")


def flatten(section: Any, prefix: str) -> dict[str, Any]:
    """``{"a.b.c": value}`` for every leaf of nested dicts (lists are leaves)."""
    if not isinstance(section, dict):
        return {prefix: section}
    flat: dict[str, Any] = {}
    for key, value in section.items():
        flat.update(flatten(value, f"{prefix}.{key}"))
    return flat


def _field_defaults() -> dict[str, Any]:
    """``{"train.lr": default}`` for the top-level fields of the compared sections' configs, as
    JSON values: a run saved before a field existed trained with its default."""
    from polymodal.training.run_config import RunConfig

    defaults: dict[str, Any] = {}
    for section in COMPARED_SECTIONS:
        annotation = RunConfig.model_fields[section].annotation
        config_class = next(
            (
                a
                for a in (annotation, *getattr(annotation, "__args__", ()))
                if hasattr(a, "model_fields")
            ),
            None,
        )
        for name, field in getattr(config_class, "model_fields", {}).items():
            if not field.is_required() and field.default_factory is None:
                defaults[f"{section}.{name}"] = json.loads(json.dumps(field.default, default=str))
    return defaults


def config_differences(saved: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``"key: saved → new"`` for every compared key whose value differs, values as JSON.

    A key absent from the saved run (added to polymodal since) counts as its default.
    """
    old_flat: dict[str, Any] = {}
    new_flat: dict[str, Any] = {}
    for name in COMPARED_SECTIONS:
        old_flat.update(flatten(saved.get(name), name) if saved.get(name) is not None else {})
        new_flat.update(flatten(new.get(name), name) if new.get(name) is not None else {})
    defaults = _field_defaults()
    differences = []
    before, after = (_global_batch(flat, defaults) for flat in (old_flat, new_flat))
    if before != after:
        differences.append(
            f"global batch (train.batch_size × devices × num_nodes × accumulate_grad_batches): "
            f"{before} → {after}"
        )
    for key in sorted(old_flat.keys() | new_flat.keys()):
        if key in MAY_CHANGE_ON_RESUME or key in _GLOBAL_BATCH:
            continue
        before, after = old_flat.get(key, defaults.get(key, _ABSENT)), new_flat.get(key, _ABSENT)
        if before != after:
            differences.append(f"{key}: {_shown(before)} → {_shown(after)}")
    return differences


_ABSENT = object()


def _global_batch(flat: dict[str, Any], defaults: dict[str, Any]) -> int | str:
    """The rows of one optimiser step over all processes ('auto' devices: not a number)."""
    value = 1
    for key in (*_GLOBAL_BATCH, "train.devices", "train.num_nodes"):
        factor = flat.get(key, defaults.get(key, 1))
        if not isinstance(factor, int):
            return f"{flat.get('train.batch_size')} per device on {factor} devices"
        value *= factor
    return value


def _shown(value: Any) -> str:
    return "(absent)" if value is _ABSENT else json.dumps(value)


def check_resume_config(run_json: Path, new: dict[str, Any]) -> None:
    """Raise unless the run config ``new`` (run.json's layout) may resume the run in ``run_json``.

    Raises:
        PolymodalError: run.json is missing or unreadable, or a compared key differs; the
            message lists every differing key with both values.
    """
    fresh = "start a fresh run without --resume (it replaces the checkpoints)"
    try:
        saved = json.loads(run_json.read_text())
    except FileNotFoundError:
        raise PolymodalError(
            f"--resume: {run_json} is missing, so the checkpoint's config cannot be checked; "
            f"{fresh}"
        ) from None
    except (OSError, ValueError) as err:
        raise PolymodalError(f"--resume: {run_json} is unreadable ({err}); {fresh}") from None
    if not isinstance(saved, dict):
        raise PolymodalError(f"--resume: {run_json} is not a JSON object; {fresh}")
    from polymodal.training.run_config import upgrade_run_record

    try:
        saved = upgrade_run_record(saved)  # a run started before a key moved
    except ValueError as err:
        raise PolymodalError(f"--resume: {run_json}: {err}; {fresh}") from None
    differences = config_differences(saved, new)
    if differences:
        allowed = ", ".join(sorted(MAY_CHANGE_ON_RESUME))
        raise PolymodalError(
            f"--resume: the run config differs from the one {run_json.parent} was trained with:\n  "
            + "\n  ".join(differences)
            + f"\nResume with the same config (only {allowed} may change), or {fresh}."
        )
