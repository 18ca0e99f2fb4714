"""A cohort written once as LitData shards, so that many nodes train from one prepared copy.

``polymodal shards SPEC --out DIR`` decodes and preprocesses every row once and writes what
:func:`polymodal.data.dataset.encode_row` returns for it (no augmentation) as LitData chunks;
``polymodal fit --shards DIR`` (``train.shards``) then reads the training and validation splits
from them and never opens an image, DICOM or NIfTI file to train
(:mod:`polymodal.training.shard_loaders`).

Why LitData (Lightning's streaming library) rather than WebDataset: it writes fixed-size binary
chunks with an index (``litdata.optimize``), and its ``StreamingDataset`` assigns whole chunks
to ranks, nodes and DataLoader workers itself, shuffles by (seed, epoch) and streams a local
folder or ``s3://`` / ``gs://`` with a local chunk cache; the item at position i is also
readable directly (validation reads its rows in polymodal's own order). WebDataset's tar shards
leave the split over ranks and workers, equal step counts and random access to the caller.

Folder layout (``DIR``)::

    DIR/
      shards.json          what the shards were made from (see :func:`cohort_fingerprint`)
      preprocessing.json   fitted on the training split, exactly as `polymodal fit` fits it
      data_issues.csv      values or files that could not be used (the row went on without)
      train/ val/ test/    LitData chunks (chunk-*.bin) and index.json, one item per row,
                           in the split's row order (:mod:`polymodal.data.shard_items`)
"""

from __future__ import annotations

import json
import os
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset

from polymodal import __version__
from polymodal.checksums import file_sha256
from polymodal.data.batch import Sample
from polymodal.data.cache import SampleCache
from polymodal.data.dataset import CohortDataset
from polymodal.data.issues import DataIssue, write_issues_csv
from polymodal.data.manifest import Cohort, load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.remote import check_protocol, is_url
from polymodal.data.shard_items import from_item, to_item
from polymodal.data.spec import SPLITS, CohortSpec, modality_columns, target_columns
from polymodal.errors import PolymodalError
from polymodal.progress import PlainProgress

MANIFEST = "shards.json"
FORMAT = "polymodal-shards"
# LitData's own default; a chunk is what a rank downloads and maps at a time.
CHUNK_BYTES = "64MB"


def require_litdata() -> Any:
    """The ``litdata`` module, or a PolymodalError saying how to install it."""
    try:
        import litdata
    except ImportError:
        raise PolymodalError(
            "shards need the 'shards' extra (litdata is not installed): "
            "pip install 'polymodal[shards]'"
        ) from None
    return litdata


def _digest(payload: Any) -> str:
    import hashlib

    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def cohort_fingerprint(spec: CohortSpec, cohort: Cohort) -> dict[str, Any]:
    """What shards are made from: the spec's sections (not where its manifest and files lie,
    which differ between machines), the manifest's bytes, and every split's row ids in order."""
    sections = spec.model_dump(mode="json", exclude={"manifest", "root"})
    return {
        "spec_sha256": _digest(sections),
        "manifest_sha256": file_sha256(Path(cohort.manifest_path)),
        "split_rows": {s: len(cohort.indices(s)) for s in SPLITS},
        "split_ids_sha256": {
            s: _digest(cohort.ids.iloc[cohort.indices(s)].astype(str).tolist()) for s in SPLITS
        },
    }


@dataclass
class ShardsWritten:
    folder: Path
    rows: dict[str, int]
    issues: list[DataIssue] = field(default_factory=list)


def write_shards(
    spec: CohortSpec,
    out: Path,
    *,
    cache_dir: Path | None = None,
    workers: int = 1,
    progress: bool = True,
) -> ShardsWritten:
    """Fit the preprocessing on the training split and write every split's rows as shards.

    ``cache_dir``: a sample cache (e.g. a fit's ``OUT/cache``) whose decoded files are reused
    and filled; ``workers``: processes encoding rows (LitData's ``optimize`` workers).
    Unreadable files and values are skipped as in ``polymodal fit`` (the modality or label is
    unavailable for that row) and listed in ``DIR/data_issues.csv``.
    """
    require_litdata()
    out = _clear_folder(Path(out))
    cohort = load_cohort(spec)
    preprocessor = Preprocessor.fit(cohort)
    preprocessor.save(out / "preprocessing.json")
    cache = None if cache_dir is None else SampleCache(cache_dir)
    issues: list[DataIssue] = list(preprocessor.fit_issues)
    rows = {}
    for split in SPLITS:
        dataset = CohortDataset(cohort, preprocessor, split, cache=cache)
        rows[split] = len(dataset)
        if len(dataset):
            issues += _write_split(dataset, out / split, workers, progress)
    issues = list(dict.fromkeys(issues))
    write_issues_csv(out / "data_issues.csv", issues)
    manifest = {
        "format": FORMAT,
        "complete": True,
        "polymodal_version": __version__,
        "cohort": spec.name,
        "fingerprint": cohort_fingerprint(spec, cohort),
        "preprocessing_fingerprint": preprocessor.fingerprint(),
        "rows": rows,
        "modalities": preprocessor.modalities,
        "targets": preprocessor.targets,
        "columns": _columns(cohort, preprocessor),
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return ShardsWritten(out, rows, issues)


def _columns(cohort: Cohort, preprocessor: Preprocessor) -> list[str]:
    """The manifest columns the items were encoded from (ids, groups, modalities, targets)."""
    spec = cohort.spec
    used = [spec.id_column, *([spec.group_column] if spec.group_column else [])]
    used += [c for m in preprocessor.modality_configs.values() for c in modality_columns(m)]
    used += [c for t in preprocessor.target_configs.values() for c in target_columns(t)]
    return [c for c in dict.fromkeys(used) if c in cohort.frame.columns]


def _clear_folder(out: Path) -> Path:
    """``out``, emptied of earlier shards; a non-empty folder of anything else is refused."""
    if out.exists() and any(out.iterdir()) and not (out / MANIFEST).is_file():
        raise PolymodalError(
            f"{out}: not empty and not a shards folder (no {MANIFEST}); give an empty or new "
            "folder to --out"
        )
    for name in (*SPLITS, ".rows"):
        shutil.rmtree(out / name, ignore_errors=True)
    for name in (MANIFEST, "preprocessing.json", "data_issues.csv"):
        (out / name).unlink(missing_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    # Marks the folder as shards being written: an interrupted run can be written over.
    (out / MANIFEST).write_text(json.dumps({"format": FORMAT, "complete": False}))
    return out


@dataclass
class _EncodeRow:
    """LitData's ``optimize`` function: row ``index`` of the split as an item; each worker
    process appends one JSON line per row (its issues) to its own file in ``log_dir``, which
    counts progress and carries the issues back.

    The first row is encoded in the parent before the workers fork (:meth:`first`): the
    readers' libraries (MONAI, nibabel, …) are then imported once, not in every worker.
    """

    dataset: CohortDataset
    log_dir: Path
    _first: tuple[dict[str, Any], list[dict]] | None = None
    _parent: int = field(default_factory=os.getpid)

    def first(self) -> None:
        self._first = self._encode(0)

    def _encode(self, index: int) -> tuple[dict[str, Any], list[dict]]:
        before = len(self.dataset.issues)
        sample = self.dataset[index]
        found = [issue.__dict__ for issue in self.dataset.issues[before:]]
        return to_item(self.dataset.preprocessor, sample, index), found

    def __call__(self, index: int) -> dict[str, Any]:
        if os.getpid() != self._parent and torch.get_num_threads() > 1:
            # A forked worker's OpenMP pool hangs once the parent has used its own (as
            # DataLoader workers do, one torch thread per worker process).
            torch.set_num_threads(1)
        item, found = self._first if index == 0 and self._first else self._encode(index)
        with (self.log_dir / f"{os.getpid()}.jsonl").open("a") as log:
            log.write(json.dumps({"index": index, "issues": found}) + "\n")
        return item


def _write_split(
    dataset: CohortDataset, folder: Path, workers: int, progress: bool
) -> list[DataIssue]:
    """One split's rows as LitData chunks in ``folder``, in row order; its issues."""
    from litdata import optimize

    log_dir = folder.parent / ".rows" / folder.name
    log_dir.mkdir(parents=True)
    done = threading.Event()
    watcher = threading.Thread(
        target=_report_progress, args=(log_dir, len(dataset), folder.name, done), daemon=True
    )
    encode = _EncodeRow(dataset, log_dir)
    encode.first()
    if progress:
        watcher.start()
    try:
        optimize(
            fn=encode,
            inputs=list(range(len(dataset))),
            output_dir=str(folder),
            num_workers=max(1, min(workers, len(dataset))),
            chunk_bytes=CHUNK_BYTES,
            # Items in row order: item i of the split is row i (validation relies on it).
            keep_data_ordered=True,
            reorder_files=False,
            # Forked workers share the loaded cohort and preprocessing (spawn would re-import).
            start_method="fork",
            verbose=False,
        )
        lines = [json.loads(line) for path in log_dir.glob("*.jsonl") for line in path.open()]
    finally:
        done.set()
        shutil.rmtree(log_dir.parent, ignore_errors=True)
    if sorted(line["index"] for line in lines) != list(range(len(dataset))):
        raise PolymodalError(f"{folder}: LitData wrote {len(lines)} of {len(dataset)} rows")
    return [DataIssue(**issue) for line in lines for issue in line["issues"]]


def _report_progress(log_dir: Path, total: int, split: str, done: threading.Event) -> None:
    """Progress lines (counts, elapsed, ETA) from the workers' row logs until ``done``."""
    meter = PlainProgress(total, f"shards {split}", every_seconds=15.0)
    while not done.wait(2.0):
        rows = sum(sum(1 for _ in path.open()) for path in log_dir.glob("*.jsonl"))
        if rows > meter.done:
            meter.update(rows - meter.done)


# ----------------------------------------------------------------------------------------------
# Reading (local folders; s3:// or gs:// through LitData and fsspec)
# ----------------------------------------------------------------------------------------------


def _child(location: str, name: str) -> str:
    return f"{location.rstrip('/')}/{name}"


def _read_text(location: str, name: str) -> str:
    """A small file of a shards folder, local or on object storage."""
    path = _child(location, name)
    try:
        if is_url(location):
            import fsspec

            check_protocol(location)
            with fsspec.open(path, "r") as handle:
                return handle.read()
        return Path(path).read_text()
    except (OSError, ValueError) as err:
        raise PolymodalError(
            f"{location}: cannot read {name} ({err}); is this a folder written by "
            "`polymodal shards`?"
        ) from None


@dataclass
class Shards:
    """An opened shards folder, checked against the cohort it is used with."""

    location: str
    manifest: dict[str, Any]
    preprocessor: Preprocessor

    def split(self, split: str) -> str:
        return _child(self.location, split)

    def issues(self, row_ids: set[str]) -> list[DataIssue]:
        """The recorded issues of these rows (fitting the preprocessing reads training rows)."""
        import io

        import pandas as pd

        text = _read_text(self.location, "data_issues.csv")
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
        records = frame.to_dict("records")
        return [
            DataIssue(**{**r, "column": r["column"] or None})
            for r in records
            if r["row_id"] in row_ids
        ]


def open_shards(location: str | Path, spec: CohortSpec, cohort: Cohort) -> Shards:
    """The shards at ``location``, refused (one message naming it and what differs) when they
    were made from another spec, manifest, split or polymodal version."""
    require_litdata()
    location = str(location)
    try:
        manifest = json.loads(_read_text(location, MANIFEST))
    except json.JSONDecodeError as err:
        raise PolymodalError(f"{_child(location, MANIFEST)}: not JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise PolymodalError(f"{_child(location, MANIFEST)}: not a polymodal shards manifest")
    if not manifest.get("complete"):
        raise PolymodalError(
            f"{location}: the shards were not written to the end; write them again with "
            f"`polymodal shards SPEC --out {location}`"
        )
    differs = _differences(manifest, spec, cohort)
    if differs:
        raise PolymodalError(
            f"{location}: these shards were made from another cohort or polymodal "
            f"({'; '.join(differs)}); write them again with `polymodal shards SPEC --out "
            f"{location}`"
        )
    state = json.loads(_read_text(location, "preprocessing.json"))
    preprocessor = Preprocessor.from_dict(state, source=_child(location, "preprocessing.json"))
    if preprocessor.fingerprint() != manifest.get("preprocessing_fingerprint"):
        raise PolymodalError(
            f"{location}: preprocessing.json is not the state the shards were encoded with; "
            "write the shards again"
        )
    return Shards(location, manifest, preprocessor)


def _differences(manifest: dict[str, Any], spec: CohortSpec, cohort: Cohort) -> list[str]:
    """What differs between the shards' record and this spec and manifest, in words."""
    now = cohort_fingerprint(spec, cohort)
    made = manifest.get("fingerprint", {})
    names = {
        "spec_sha256": f"the cohort spec {spec.name!r} differs",
        "manifest_sha256": f"the manifest {cohort.manifest_path} differs",
        "split_rows": "the split row counts differ",
        "split_ids_sha256": "the rows of the splits differ",
    }
    differs = [text for key, text in names.items() if made.get(key) != now[key]]
    if manifest.get("polymodal_version") != __version__:
        differs.append(
            f"written by polymodal {manifest.get('polymodal_version')}, this is {__version__}"
        )
    return differs


class ShardRows(Dataset):
    """One split of a shards folder as a map-style dataset: item i is row i of the split,
    the sample :func:`~polymodal.data.dataset.encode_row` gave for it (never augmented).

    ``modalities``: the others are unavailable (as in :class:`CohortDataset`); None: all.
    ``issues`` holds the split's recorded issues (what fit reports).
    """

    def __init__(
        self,
        shards: Shards,
        split: str,
        modalities: list[str] | None = None,
        issues: list[DataIssue] | None = None,
    ) -> None:
        from litdata import StreamingDataset
        from litdata.utilities.env import _DistributedEnv

        self.preprocessor = shards.preprocessor
        self.split = split
        self.modalities = modalities
        self.cache = None  # no sample cache: nothing is decoded
        self.issues = issues or []
        self.stream = StreamingDataset(shards.split(split))
        # Every rank reads the whole split by position (polymodal's samplers give each its
        # share); LitData would otherwise count only this rank's share from WORLD_SIZE.
        self.stream.distributed_env = _DistributedEnv(world_size=1, global_rank=0, num_nodes=1)

    def __len__(self) -> int:
        return len(self.stream)

    def __getitem__(self, index: int) -> Sample:
        return from_item(self.preprocessor, self.stream[int(index)], self.modalities)
