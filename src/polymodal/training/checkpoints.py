"""Reading a run's Lightning checkpoints without ever running code from them.

A checkpoint is a pickle; ``torch.load(..., weights_only=True)`` unpickles tensors, containers and
primitives only, so a planted payload is refused instead of run. A checkpoint also records the
paths of other checkpoints (Lightning's ``ModelCheckpoint`` restores ``best_model_path`` from
``last.ckpt`` and later loads that file): every such path must lie inside the run folder's
``checkpoints/`` folder, or nothing is loaded.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from polymodal.errors import PolymodalError

# The ModelCheckpoint state entries that hold a checkpoint file (or folder) path.
PATH_KEYS = ("best_model_path", "last_model_path", "kth_best_model_path", "dirpath")


def _inside(path: Path | str, folder: Path) -> bool:
    return Path(path).resolve().is_relative_to(folder.resolve())


def load_checkpoint(path: Path, checkpoints_dir: Path) -> dict[str, Any]:
    """The checkpoint at ``path``, unpickled with ``weights_only=True`` on the CPU.

    Raises:
        PolymodalError: ``path`` lies outside ``checkpoints_dir``, cannot be read, or holds
            anything but tensors, containers and primitives (e.g. a pickled object).
    """
    if not _inside(path, checkpoints_dir):
        raise PolymodalError(
            f"{path}: a checkpoint outside this run's {checkpoints_dir}; polymodal only loads "
            "checkpoints of its own run folder. Start a fresh run without --resume"
        )
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, OSError, EOFError, ValueError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise PolymodalError(
            f"{path}: not a checkpoint polymodal can load safely ({first_line}); it was not "
            "written by `polymodal fit` or was changed since. Delete the run folder's "
            "checkpoints/ and start a fresh run"
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise PolymodalError(
            f"{path}: not a Lightning checkpoint (no state_dict); start a fresh run"
        )
    return checkpoint


def recorded_paths(checkpoint: dict[str, Any]) -> list[str]:
    """Every checkpoint path a checkpoint's callback states record (non-empty strings)."""
    paths: list[str] = []
    for state in (checkpoint.get("callbacks") or {}).values():
        if not isinstance(state, dict):
            continue
        paths += [state[k] for k in PATH_KEYS if isinstance(state.get(k), str) and state[k]]
        best_k = state.get("best_k_models")
        if isinstance(best_k, dict):
            paths += [str(k) for k in best_k]
    return paths


def check_recorded_paths(checkpoint: dict[str, Any], path: Path, checkpoints_dir: Path) -> None:
    """Raise unless every path ``checkpoint`` records lies inside ``checkpoints_dir``."""
    outside = [p for p in recorded_paths(checkpoint) if not _inside(p, checkpoints_dir)]
    if outside:
        raise PolymodalError(
            f"{path}: it points at checkpoint files outside this run's {checkpoints_dir} "
            f"({', '.join(repr(p) for p in outside[:3])}); the file was moved from another "
            "folder or tampered with. Start a fresh run without --resume"
        )


def verify_resume_checkpoint(last: Path, checkpoints_dir: Path) -> int:
    """Check ``last.ckpt`` and the best checkpoint it names before Lightning resumes from them;
    returns the epoch the resumed run starts with.

    Both are unpickled safely here, so a planted file stops the run before any training.
    ``last.ckpt`` is written at the end of an epoch's validation, so training resumes with the
    next epoch.
    """
    checkpoint = load_checkpoint(last, checkpoints_dir)
    check_recorded_paths(checkpoint, last, checkpoints_dir)
    for state in (checkpoint.get("callbacks") or {}).values():
        best = state.get("best_model_path") if isinstance(state, dict) else None
        if best and Path(best).resolve() != last.resolve() and Path(best).is_file():
            load_checkpoint(Path(best), checkpoints_dir)
    return int(checkpoint.get("epoch", -1)) + 1


def load_best_weights(path: Path, checkpoints_dir: Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of the best checkpoint of a run, read safely."""
    return load_checkpoint(path, checkpoints_dir)["state_dict"]
