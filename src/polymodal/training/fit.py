"""Fit a model on a cohort: preprocessing on the training split, Lightning loop, model folder.

Run folder layout (``OUT``)::

    OUT/
      preprocessing.json     fitted on the training split (reused on --resume)
      run.json               the model and training config of this run
      cache/                 decoded, preprocessed files (second epoch decodes nothing)
      checkpoints/           best.ckpt and last.ckpt (Lightning, every epoch; used to resume)
      logs/                  CSV metrics; fit.log (progress lines: epochs, counts, ETA)
      tensorboard/           TensorBoard events
      model/                 the exported model folder (see polymodal.model_folder)
      .polymodal.lock        held while a fit writes here (polymodal.run_lock)
"""

from __future__ import annotations

import json
import logging
import shutil
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch.utils.data import DataLoader

from polymodal.data.cache import SampleCache
from polymodal.data.dataset import CohortDataset
from polymodal.data.issues import write_issues_csv
from polymodal.data.manifest import Cohort, load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.spec import CohortSpec
from polymodal.errors import PolymodalError
from polymodal.frozen_features import fill_feature_stores, frozen_feature_stores
from polymodal.model import MultimodalModel, build_model
from polymodal.model_card.build import fit_recipe
from polymodal.model_card.folder import write_fit_card
from polymodal.model_card.subgroups import check_subgroups
from polymodal.model_folder import save_model_folder
from polymodal.progress import is_terminal, log_to_file
from polymodal.run_lock import RunLock
from polymodal.runtime import setup_process
from polymodal.training.cache_log import CacheHitRate, sample_cache
from polymodal.training.checkpoints import load_best_weights, verify_resume_checkpoint
from polymodal.training.config import TrainConfig
from polymodal.training.distributed import is_global_zero, processes_per_machine, trainer_options
from polymodal.training.epoch_seeds import SeedEachEpoch
from polymodal.training.loaders import make_loader
from polymodal.training.mixing import BatchMixing
from polymodal.training.module import PolymodalModule, resolve_monitor
from polymodal.training.plugins import PLUGINS, Exported, FitContext, build_plugins
from polymodal.training.preflight import check_blocking
from polymodal.training.resume import check_resume_config
from polymodal.training.run_config import RunConfig
from polymodal.training.sampling import dataset_sampler
from polymodal.training.timing import EpochLog, EpochTimer

if TYPE_CHECKING:
    from polymodal.data.shards import Shards


@dataclass
class FitResult:
    model_dir: Path
    best_checkpoint: Path | None
    best_score: float | None
    monitor: str
    epochs_run: int
    # Values or files that could not be used (the sample went on without them).
    data_issues: list = field(default_factory=list)


@dataclass
class _Prepared:
    """A fit once its folder, cohort, preprocessing and run.json are settled."""

    cohort: Cohort
    run: RunConfig  # with the model config the plugins ask for
    preprocessor: Preprocessor
    first_epoch: int | None  # the epoch a resumed run goes on from; None for a fresh run
    shards: Shards | None = None  # train.shards: the rows are read from these


@dataclass
class _Data:
    # CohortDataset, or with train.shards the shards' StreamingRows (training) and ShardRows.
    train: Any
    val: Any
    train_loader: DataLoader
    val_loader: DataLoader


def fit(
    spec: CohortSpec,
    out_dir: Path,
    run_config: RunConfig,
    *,
    resume: bool = False,
    cohort: Cohort | None = None,
    preprocessor: Preprocessor | None = None,
    warm_start: Callable[[MultimodalModel], None] | None = None,
    progress: bool = True,
    allow_blocking: bool = False,
    callbacks: list[L.Callback] | None = None,
) -> FitResult:
    """Train ``run_config.model`` on ``spec``'s training split, select on validation, export.

    ``run_config`` is the whole run: the model, the training settings and the section of every
    training plugin it uses (:mod:`polymodal.training.plugins`: distillation, gradient
    modulation, the Early Intervention loss, the weights' moving average); no plugin changes the
    exported model's architecture. All of it is recorded in ``OUT/run.json``.

    With ``resume=True`` and ``OUT/checkpoints/last.ckpt`` present, training continues from
    that checkpoint (written after every epoch) with the preprocessing state saved in ``OUT``;
    the run config must be the one the run started with (see :mod:`polymodal.training.resume`),
    and the result equals an uninterrupted run's.
    ``preprocessor`` replaces the state fitted on the training split (``polymodal adapt`` keeps
    the trained model's input encodings), and ``warm_start(model)`` runs on the freshly built
    model before training (loading earlier weights, freezing parts).

    Training does not start while another process writes to ``out_dir``
    (:class:`polymodal.run_lock.RunLock`) or while the cohort has a problem that
    ``polymodal validate`` calls blocking, unless ``allow_blocking`` (recorded in run.json).
    ``callbacks`` are extra Lightning callbacks of this run's trainer, after the plugins' ones
    (``polymodal tune`` reports each epoch's validation metric to its trial and prunes).
    """
    out_dir = Path(out_dir)
    # The other ranks of a multi-process run re-run this call and write nothing (rank 0 holds
    # the lock and writes the folder; see polymodal.training.distributed).
    writer = is_global_zero()
    if not writer:  # rank 0 reports progress; the others only warn
        logging.getLogger("polymodal").setLevel(logging.WARNING)
        progress = False
    lock = RunLock(out_dir) if writer else nullcontext()
    with lock, log_to_file(out_dir / "logs" / "fit.log") if writer else nullcontext():
        train = run_config.train
        setup_process(train.num_workers, train.num_threads, processes_per_machine(train))
        L.seed_everything(run_config.train.seed, workers=True, verbose=False)
        prepared = _prepare(spec, out_dir, run_config, resume, cohort, preprocessor, allow_blocking)
        return _fit_prepared(spec, out_dir, prepared, warm_start, progress, callbacks or [])


def _prepare(
    spec: CohortSpec,
    out_dir: Path,
    run: RunConfig,
    resume: bool,
    cohort: Cohort | None,
    preprocessor: Preprocessor | None,
    allow_blocking: bool,
) -> _Prepared:
    """Check the cohort and the resume, settle the preprocessing, write run.json."""
    cohort = cohort or load_cohort(spec)
    overridden = check_blocking(cohort, allow_blocking=allow_blocking)
    check_subgroups(cohort, run.card)  # before training, not after it
    model_config = run.model
    for name, section in run.plugin_sections().items():
        model_config = PLUGINS.get(name).adjust_model_config(section, model_config)
    run = run.model_copy(update={"model": model_config})
    record = run.record()
    writer = is_global_zero()
    shards = _open_shards(spec, cohort, run.train.shards, preprocessor)
    first_epoch = _start_or_resume(out_dir, resume, record, clear=writer)
    state_path = out_dir / "preprocessing.json"
    if shards is not None:
        _check_resumed_state(state_path, shards, resumed=first_epoch is not None)
        preprocessor = shards.preprocessor
        if writer:
            preprocessor.save(state_path)
    elif first_epoch is not None and state_path.is_file():
        preprocessor = Preprocessor.load(state_path)
    else:
        # Every rank fits the same state from the same training rows; rank 0 saves it.
        preprocessor = preprocessor or Preprocessor.fit(cohort)
        if writer:
            preprocessor.save(state_path)
    if overridden:
        record["allow_blocking"] = overridden
    if writer:
        (out_dir / "run.json").write_text(json.dumps(record, indent=2))
    return _Prepared(cohort, run, preprocessor, first_epoch, shards)


def _open_shards(
    spec: CohortSpec, cohort: Cohort, location: str | None, preprocessor: Preprocessor | None
) -> Shards | None:
    """``train.shards`` opened and checked against the cohort (None when not set)."""
    if location is None:
        return None
    if preprocessor is not None:
        raise PolymodalError(
            f"train.shards: the shards at {location} hold rows encoded with the preprocessing "
            "fitted when they were written, not the one given to this fit (polymodal adapt); "
            "leave out train.shards"
        )
    from polymodal.data.shards import open_shards

    return open_shards(location, spec, cohort)


def _check_resumed_state(state_path: Path, shards: Shards, *, resumed: bool) -> None:
    """A resumed run keeps the preprocessing it started with: that of the same shards."""
    if not (resumed and state_path.is_file()):
        return
    if Preprocessor.load(state_path).fingerprint() != shards.preprocessor.fingerprint():
        raise PolymodalError(
            f"{state_path}: this run started with another preprocessing than that of the "
            f"shards at {shards.location}; resume with the shards it started with"
        )


def _fit_prepared(
    spec: CohortSpec,
    out_dir: Path,
    prepared: _Prepared,
    warm_start: Callable[[MultimodalModel], None] | None,
    progress: bool,
    callbacks: list[L.Callback],
) -> FitResult:
    """Build the model and its plugins, train, export the best epoch's model folder."""
    run, preprocessor = prepared.run, prepared.preprocessor
    resuming = prepared.first_epoch is not None
    input_infos = {m: preprocessor.input_info(m) for m in preprocessor.modalities}
    target_infos = {t: preprocessor.target_info(t) for t in preprocessor.targets}
    model = build_model(run.model, input_infos, target_infos)
    if warm_start is not None and not resuming:
        # A resumed run's checkpoint holds the warm-started weights already.
        warm_start(model)
    sections = run.plugin_sections()
    context = FitContext(model, run.model, run.train, preprocessor, target_infos)
    parts = build_plugins(sections, context)
    data = _data(spec, out_dir, prepared, [model, *parts.teachers], progress)
    if data.train.cache is not None:  # the sample cache's hit rate, logged every epoch
        parts.callbacks.append(CacheHitRate(data.train.cache))
    mixing = BatchMixing.from_config(
        run.train,
        model=model,
        input_kinds={m: info["kind"] for m, info in input_infos.items()},
        target_infos=target_infos,
        plugins=[name for name in sections if PLUGINS.get(name).reads_labels],
    )
    module = PolymodalModule(
        model,
        target_infos,
        run.train,
        steps_per_epoch=len(data.train_loader),
        plugins=parts.modules,
        mixing=mixing,
    )
    monitor, mode = resolve_monitor(run.train, target_infos)
    best = ModelCheckpoint(
        dirpath=out_dir / "checkpoints",
        filename="best",
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        enable_version_counter=False,
    )
    seeds = SeedEachEpoch(run.train.seed, data.train_loader, prepared.first_epoch or 0)
    steps = len(data.train_loader)
    trainer = _trainer(
        run.train, out_dir, best, seeds, parts.callbacks + callbacks, monitor, mode, steps, progress
    )
    _train_keeping_metrics(trainer, module, data, out_dir, resuming, monitor)
    if not trainer.is_global_zero:  # rank 0 exports the folder
        return FitResult(out_dir / "model", None, None, monitor, trainer.current_epoch)
    result = _export(spec, out_dir, prepared, module, best, data, trainer.current_epoch)
    cache_dir = (run.train.cache_dir or out_dir / "cache") if run.train.cache else None
    device = trainer.strategy.root_device
    store = run.train.frozen_feature_store
    for step in parts.after_export:  # recalibration, conformal thresholds: on the folder
        step(Exported(result.model_dir, prepared.cohort, cache_dir, device, store))
    # Last: the card reports the recalibration and conformal settings the steps added.
    recipe = fit_recipe(run, result.epochs_run, result.monitor, result.best_score)
    write_fit_card(
        result.model_dir,
        prepared.cohort,
        run.card,
        recipe,
        device=device,
        cache_dir=cache_dir,
        feature_store=store,
    )
    return result


def _data(
    spec: CohortSpec,
    out_dir: Path,
    prepared: _Prepared,
    models: list[torch.nn.Module],
    progress: bool,
) -> _Data:
    """The training and validation datasets and loaders of what ``models`` (the model, then its
    teachers) read.

    Only what the model (and a teacher) reads is loaded: a single-modality model never opens the
    cohort's volumes. A frozen image backbone's features are read instead of its pixels. With
    ``train.shards`` both splits come from the shards (:mod:`polymodal.training.shard_loaders`).
    """
    cfg, preprocessor = prepared.run.train, prepared.preprocessor
    needed = {m for model in models for m in getattr(model, "modalities", ())}
    read = [m for m in preprocessor.modalities if m in needed]
    cohort = prepared.cohort
    if prepared.shards is not None:
        from polymodal.training.shard_loaders import shard_loaders

        ids = {s: set(cohort.ids.iloc[cohort.indices(s)].astype(str)) for s in ("train", "val")}
        first_epoch = prepared.first_epoch or 0
        return _Data(*shard_loaders(prepared.shards, cfg, read, first_epoch, ids))
    cache = sample_cache(cfg, out_dir)
    if cache is not None:
        # Augmented images are new every epoch: their features are not worth a file each.
        augmented = {m for m, cfg_m in spec.modalities.items() if getattr(cfg_m, "augment", False)}
        _keep_frozen_features_on_disk(models, cache.folder / "features", skip=augmented)
    train = CohortDataset(
        cohort,
        preprocessor,
        "train",
        cache=cache,
        augment=True,
        augment_seed=cfg.seed,
        modalities=read,
    )
    val = CohortDataset(cohort, preprocessor, "val", cache=cache, modalities=read)
    _read_frozen_features(models, cfg, cache, [train, val], progress)
    if len(train) == 0:
        raise PolymodalError(
            f"{spec.manifest_path}: the training split has no rows; check the split column or recipe"
        )
    if len(val) == 0:
        raise PolymodalError(
            f"{spec.manifest_path}: the validation split has no rows; model selection needs one "
            "(add 'val' rows or a split recipe with val > 0)"
        )
    sampler = dataset_sampler(
        train, sampling=cfg.sampling, sampling_target=cfg.sampling_target, seed=cfg.seed
    )
    train_loader = make_loader(train, cfg, shuffle=True, sampler=sampler)
    return _Data(train, val, train_loader, make_loader(val, cfg, shuffle=False))


def _train_keeping_metrics(
    trainer: L.Trainer,
    module: PolymodalModule,
    data: _Data,
    out_dir: Path,
    resuming: bool,
    monitor: str,
) -> None:
    """Train; a resumed run resumes from last.ckpt and keeps the metrics logged before it."""
    metrics_csv = out_dir / "logs" / "metrics.csv"
    earlier = metrics_csv.read_text() if resuming and metrics_csv.is_file() else None
    resume_from = out_dir / "checkpoints" / "last.ckpt" if resuming else None
    _train(trainer, module, data.train_loader, data.val_loader, resume_from, monitor)
    if earlier is not None and trainer.is_global_zero:
        _keep_earlier_metrics(metrics_csv, earlier)


def _export(
    spec: CohortSpec,
    out_dir: Path,
    prepared: _Prepared,
    module: PolymodalModule,
    best: ModelCheckpoint,
    data: _Data,
    epochs_run: int,
) -> FitResult:
    """The best epoch's weights as ``OUT/model``, and the values or files that were skipped."""
    checkpoints_dir = out_dir / "checkpoints"
    best_path = Path(best.best_model_path) if best.best_model_path else None
    if best_path is not None and best_path.is_file():
        module.load_state_dict(load_best_weights(best_path, checkpoints_dir))
    best_score = None if best.best_model_score is None else float(best.best_model_score)
    run, preprocessor = prepared.run, prepared.preprocessor
    record = run.record()
    model_dir = save_model_folder(
        out_dir / "model",
        model=module.model,
        config=run.model,
        preprocessor=preprocessor,
        spec=spec,
        extra={
            **{k: v for k, v in record.items() if k != "model"},
            "monitor": best.monitor,
            "best_score": best_score,
        },
    )
    skipped = [*getattr(preprocessor, "fit_issues", []), *data.train.issues, *data.val.issues]
    issues = _write_issues(out_dir / "data_issues.csv", skipped)
    return FitResult(model_dir, best_path, best_score, str(best.monitor), epochs_run, issues)


def _start_or_resume(
    out_dir: Path, resume: bool, run_record: dict, *, clear: bool = True
) -> int | None:
    """The epoch a resumed run starts with, once its config and checkpoints are checked; or
    None for a fresh run, for which an earlier run's metrics and checkpoints are cleared
    (unless not ``clear``: a rank other than 0)."""
    last_ckpt = out_dir / "checkpoints" / "last.ckpt"
    if resume and last_ckpt.is_file():
        # Refused before anything in the folder changes.
        check_resume_config(out_dir / "run.json", run_record)
        return verify_resume_checkpoint(last_ckpt, last_ckpt.parent)
    if resume:
        warnings.warn(
            f"--resume: no checkpoint at {last_ckpt}; starting from scratch", stacklevel=4
        )
    if clear:
        _clear_earlier_run(out_dir)
    return None


def _trainer(
    cfg: TrainConfig,
    out_dir: Path,
    best_checkpoint: ModelCheckpoint,
    seeds: SeedEachEpoch,
    plugin_callbacks: list[L.Callback],
    monitor: str,
    mode: str,
    steps_per_epoch: int,
    progress: bool,
) -> L.Trainer:
    """The Lightning trainer: checkpoints, logs, early stopping, per-epoch seeds, and the
    training plugins' callbacks."""
    # last.ckpt after every epoch (the best checkpoint's save_last writes it only when the
    # monitored metric improved), written after best.ckpt so that it records the new best.
    last_checkpoint = ModelCheckpoint(
        dirpath=out_dir / "checkpoints",
        filename="last",
        monitor=None,
        save_top_k=1,
        enable_version_counter=False,
    )
    # A bar only on a terminal; in a log file it would be unreadable.
    terminal = is_terminal()
    progress = progress and terminal
    callbacks: list[L.Callback] = [
        best_checkpoint,
        last_checkpoint,
        seeds,
        LearningRateMonitor(logging_interval="epoch"),
        EpochTimer(),
        # Output to a file gets plain progress lines within epochs instead of a bar.
        EpochLog(monitor, batches=not terminal),
        *plugin_callbacks,
    ]
    if cfg.early_stopping_patience:
        callbacks.append(
            EarlyStopping(monitor=monitor, mode=mode, patience=cfg.early_stopping_patience)
        )
    if progress:
        from lightning.pytorch.callbacks import RichProgressBar

        callbacks.append(RichProgressBar(leave=True))
    loggers = [
        CSVLogger(out_dir, name="logs", version=""),
        TensorBoardLogger(out_dir, name="tensorboard", version=""),
    ]
    _quiet_lightning()
    return L.Trainer(
        max_epochs=cfg.max_epochs,
        accelerator=cfg.accelerator,
        **trainer_options(cfg),
        precision=cfg.precision,
        callbacks=callbacks,
        logger=loggers,
        gradient_clip_val=cfg.gradient_clip,
        deterministic=cfg.deterministic,
        log_every_n_steps=min(cfg.log_every_n_steps, max(1, steps_per_epoch)),
        enable_progress_bar=progress,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


def _train(
    trainer: L.Trainer,
    module: PolymodalModule,
    train_loader: DataLoader,
    val_loader: DataLoader,
    resume_from: Path | None,
    monitor: str,
) -> None:
    """``trainer.fit``, resuming from ``resume_from`` (unpickled with weights_only=True)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        warnings.filterwarnings(
            "ignore", message=".*Checkpoint directory.*exists and is not empty.*"
        )
        warnings.filterwarnings("ignore", message=".*Experiment logs directory.*not empty.*")
        # LitData's stream (train.shards) splits its rows over workers itself: its length holds.
        warnings.filterwarnings("ignore", message=".*`IterableDataset` has `__len__` defined.*")
        # Lightning's own use of a torch API that torch has deprecated: nothing a user can fix.
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
        # Frozen parts are in eval mode on purpose (polymodal.freezing keeps them there).
        warnings.filterwarnings(
            "ignore", message=r".*module\(s\) in eval mode at the start of training.*"
        )
        try:
            trainer.fit(
                module,
                train_loader,
                val_loader,
                ckpt_path=None if resume_from is None else str(resume_from),
                weights_only=True,
            )
        except (RuntimeError, MisconfigurationException):
            # EarlyStopping / ModelCheckpoint fail after the first validation when the monitored
            # name was never logged; say which names were.
            logged = sorted(k for k in trainer.callback_metrics if k.startswith("val/"))
            if not logged or monitor in trainer.callback_metrics:
                raise
            raise PolymodalError(
                f"train.monitor: the validation metric {monitor!r} was not logged (an unknown "
                f"name, or undefined on this validation split); logged: {', '.join(logged)}. "
                "Set train.monitor to one of them, or to 'auto'."
            ) from None


def _write_issues(path: Path, issues: list) -> list:
    """Every value or file that was skipped, one CSV row each, so nothing is dropped silently."""
    unique = list(dict.fromkeys(issues))
    if unique:
        write_issues_csv(path, unique)
    return unique


def _read_frozen_features(
    models: list[torch.nn.Module],
    cfg: TrainConfig,
    cache: SampleCache | None,
    datasets: list[CohortDataset],
    progress: bool,
) -> None:
    """Image modalities whose backbone is frozen for good are read as its features (from the
    feature store, computed once now, in batches) instead of pixels
    (:mod:`polymodal.frozen_features`).

    Not with ``train.frozen_feature_store: false``, not with mixup/CutMix (they mix pixels),
    not for a modality augmented in the training split
    (the dataset keeps its pixels), and not for a modality a teacher (``models[1:]``) reads
    through another backbone.
    """
    if not cfg.frozen_feature_store or cfg.mixup > 0 or cfg.cutmix > 0:
        return
    model, *teachers = models
    stores = frozen_feature_stores(model, cache, list(model.modalities))
    for teacher in teachers:
        reads = list(getattr(teacher, "modalities", ()))
        theirs = frozen_feature_stores(teacher, cache, reads)
        for name in [n for n in stores if n in reads]:
            if name not in theirs or theirs[name].folder != stores[name].folder:
                del stores[name]
    for dataset in datasets:
        dataset.read_as_features(stores)
    fill_feature_stores(datasets, progress=progress)


def _keep_frozen_features_on_disk(
    models: list[torch.nn.Module], folder: Path, skip: set[str]
) -> None:
    """Image encoders with ``feature_cache`` also keep their frozen features under ``folder``, so
    the next run on the same images and backbone skips the backbone; not for the modalities in
    ``skip``."""
    from polymodal.encoders.image import ImageTimmEncoder

    for model in models:
        for modality, encoder in getattr(model, "encoders", {}).items():
            frozen_cached = isinstance(encoder, ImageTimmEncoder) and encoder.feature_cache
            if frozen_cached and modality not in skip:
                encoder.feature_cache_dir = folder


def _clear_earlier_run(out_dir: Path) -> None:
    """A fresh run into a folder that holds an earlier one replaces its metrics and checkpoints.

    Lightning would append to the old ``metrics.csv`` and write ``best-v1.ckpt`` beside the old
    ``best.ckpt``, mixing two runs in one folder.
    """
    earlier = [
        path
        for path in (out_dir / "logs" / "metrics.csv", out_dir / "checkpoints")
        if path.exists()
    ]
    if not earlier:
        return
    warnings.warn(
        f"{out_dir} holds an earlier run: its metrics and checkpoints are replaced (pass "
        "resume=True / --resume to continue it instead)",
        stacklevel=5,
    )
    for path in earlier:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()


def _keep_earlier_metrics(path: Path, earlier: str) -> None:
    """Lightning's CSV logger starts metrics.csv afresh; a resumed run keeps the rows logged
    before the checkpoint it resumed from."""
    import io

    import pandas as pd

    before = pd.read_csv(io.StringIO(earlier))
    if path.is_file():
        resumed = pd.read_csv(path)
        kept = before[before["step"] < resumed["step"].min()]
        before = pd.concat([kept, resumed], ignore_index=True)
    before.to_csv(path, index=False)


def _quiet_lightning() -> None:
    """Lightning's banner lines (GPU available, TPU, …) are noise in a CLI run."""
    for name in (
        "lightning.pytorch.utilities.rank_zero",
        "lightning.pytorch.accelerators.cuda",
        "lightning.fabric",
    ):
        logging.getLogger(name).setLevel(logging.WARNING)
