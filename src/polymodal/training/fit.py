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
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from lightning.pytorch.utilities.exceptions import MisconfigurationException
from torch.utils.data import DataLoader

from polymodal.config import ModelConfig
from polymodal.data.cache import SampleCache
from polymodal.data.dataset import CohortDataset
from polymodal.data.manifest import Cohort, load_cohort
from polymodal.data.preprocessing import Preprocessor
from polymodal.data.spec import CohortSpec
from polymodal.errors import PolymodalError
from polymodal.frozen_features import fill_feature_stores, frozen_feature_stores
from polymodal.model import MultimodalModel, build_model
from polymodal.model_folder import save_model_folder
from polymodal.progress import is_terminal, log_to_file
from polymodal.run_lock import RunLock
from polymodal.runtime import setup_process
from polymodal.training.checkpoints import load_best_weights, verify_resume_checkpoint
from polymodal.training.config import TrainConfig
from polymodal.training.distill import Distillation, DistillationConfig
from polymodal.training.ema import WeightEMA
from polymodal.training.epoch_seeds import SeedEachEpoch
from polymodal.training.intervention_loss import InterventionLoss, InterventionLossConfig
from polymodal.training.loaders import make_loader
from polymodal.training.mixing import BatchMixing
from polymodal.training.modulation import GradientModulation, ModulationConfig
from polymodal.training.module import PolymodalModule, TrainingPlugin, resolve_monitor
from polymodal.training.preflight import check_blocking
from polymodal.training.resume import check_resume_config
from polymodal.training.sampling import dataset_sampler
from polymodal.training.timing import EpochLog, EpochTimer


@dataclass
class FitResult:
    model_dir: Path
    best_checkpoint: Path | None
    best_score: float | None
    monitor: str
    epochs_run: int
    # Values or files that could not be used (the sample went on without them).
    data_issues: list = field(default_factory=list)


def fit(
    spec: CohortSpec,
    out_dir: Path,
    *,
    model_config: ModelConfig,
    train_config: TrainConfig,
    resume: bool = False,
    cohort: Cohort | None = None,
    preprocessor: Preprocessor | None = None,
    warm_start: Callable[[MultimodalModel], None] | None = None,
    progress: bool = True,
    distill: DistillationConfig | None = None,
    modulation: ModulationConfig | None = None,
    intervention_loss: InterventionLossConfig | None = None,
    allow_blocking: bool = False,
) -> FitResult:
    """Train ``model_config`` on ``spec``'s training split, select on validation, export.

    With ``resume=True`` and ``OUT/checkpoints/last.ckpt`` present, training continues from
    that checkpoint (written after every epoch) with the preprocessing state saved in ``OUT``;
    the run config must be the one the run started with (see :mod:`polymodal.training.resume`),
    and the result equals an uninterrupted run's. ``distill`` adds knowledge
    distillation from a teacher model folder fitted on the same cohort, ``modulation`` gradient
    modulation, ``intervention_loss`` the Early Intervention loss of the ``intervention`` core;
    none changes the exported model's architecture.
    ``preprocessor`` replaces the state fitted on the training split (``polymodal adapt`` keeps
    the trained model's input encodings), and ``warm_start(model)`` runs on the freshly built
    model before training (loading earlier weights, freezing parts).

    Training does not start while another process writes to ``out_dir``
    (:class:`polymodal.run_lock.RunLock`) or while the cohort has a problem that
    ``polymodal validate`` calls blocking, unless ``allow_blocking`` (recorded in run.json).
    """
    out_dir = Path(out_dir)
    with RunLock(out_dir), log_to_file(out_dir / "logs" / "fit.log"):
        return _fit_locked(
            spec,
            out_dir,
            model_config=model_config,
            train_config=train_config,
            resume=resume,
            cohort=cohort,
            preprocessor=preprocessor,
            warm_start=warm_start,
            progress=progress,
            distill=distill,
            modulation=modulation,
            intervention_loss=intervention_loss,
            allow_blocking=allow_blocking,
        )


def _fit_locked(
    spec: CohortSpec,
    out_dir: Path,
    *,
    model_config: ModelConfig,
    train_config: TrainConfig,
    resume: bool,
    cohort: Cohort | None,
    preprocessor: Preprocessor | None,
    warm_start: Callable[[MultimodalModel], None] | None,
    progress: bool,
    distill: DistillationConfig | None,
    modulation: ModulationConfig | None,
    intervention_loss: InterventionLossConfig | None,
    allow_blocking: bool,
) -> FitResult:
    """:func:`fit`, with ``out_dir`` locked for this process."""
    cfg = train_config
    setup_process(cfg.num_workers, cfg.num_threads)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    cohort = cohort or load_cohort(spec)
    overridden = check_blocking(cohort, allow_blocking=allow_blocking)
    if distill is not None and distill.student_modality_dropout is not None:
        # Recorded in run.json and the model folder: what the student was actually trained with.
        model_config = model_config.model_copy(
            update={"modality_dropout": distill.student_modality_dropout}
        )
    plugin_configs = {
        name: section.model_dump(mode="json")
        for name, section in (
            ("distill", distill),
            ("modulation", modulation),
            ("intervention_loss", intervention_loss),
        )
        if section is not None
    }
    run_record = {
        "model": model_config.model_dump(mode="json"),
        "train": cfg.model_dump(mode="json"),
        **plugin_configs,
    }

    state_path = out_dir / "preprocessing.json"
    checkpoints_dir = out_dir / "checkpoints"
    first_epoch = _start_or_resume(out_dir, resume, run_record)
    resuming = first_epoch is not None
    if resuming and state_path.is_file():
        preprocessor = Preprocessor.load(state_path)
    else:
        preprocessor = preprocessor or Preprocessor.fit(cohort)
        preprocessor.save(state_path)
    if overridden:
        run_record["allow_blocking"] = overridden
    (out_dir / "run.json").write_text(json.dumps(run_record, indent=2))

    input_infos = {m: preprocessor.input_info(m) for m in preprocessor.modalities}
    target_infos = {t: preprocessor.target_info(t) for t in preprocessor.targets}
    model = build_model(model_config, input_infos, target_infos)
    if warm_start is not None and not resuming:
        # A resumed run's checkpoint holds the warm-started weights already.
        warm_start(model)
    plugins = _training_plugins(
        model, model_config, target_infos, preprocessor, distill, modulation, intervention_loss
    )
    cache = SampleCache(cfg.cache_dir or out_dir / "cache") if cfg.cache else None
    if cache is not None:
        # Augmented images are new every epoch: their features are not worth a file each.
        augmented = {m for m, cfg_m in spec.modalities.items() if getattr(cfg_m, "augment", False)}
        _keep_frozen_features_on_disk(
            [model, *teachers_of(plugins)], cache.folder / "features", skip=augmented
        )
    # Only what the model (and a teacher) reads is loaded: a single-modality model never opens
    # the cohort's volumes.
    needed = set(model.modalities)
    for teacher in teachers_of(plugins):
        needed |= set(getattr(teacher, "modalities", ()))
    read = [m for m in preprocessor.modalities if m in needed]
    train_ds = CohortDataset(
        cohort,
        preprocessor,
        "train",
        cache=cache,
        augment=True,
        augment_seed=cfg.seed,
        modalities=read,
    )
    val_ds = CohortDataset(cohort, preprocessor, "val", cache=cache, modalities=read)
    _read_frozen_features(model, teachers_of(plugins), cfg, cache, [train_ds, val_ds], progress)
    if len(train_ds) == 0:
        raise PolymodalError(
            f"{spec.manifest_path}: the training split has no rows; check the split column or recipe"
        )
    if len(val_ds) == 0:
        raise PolymodalError(
            f"{spec.manifest_path}: the validation split has no rows; model selection needs one "
            "(add 'val' rows or a split recipe with val > 0)"
        )
    sampler = dataset_sampler(
        train_ds, sampling=cfg.sampling, sampling_target=cfg.sampling_target, seed=cfg.seed
    )
    train_loader = make_loader(train_ds, cfg, shuffle=True, sampler=sampler)
    val_loader = make_loader(val_ds, cfg, shuffle=False)

    mixing = BatchMixing.from_config(
        cfg,
        model=model,
        input_kinds={m: info["kind"] for m, info in input_infos.items()},
        target_infos=target_infos,
        plugins=plugin_configs,
    )
    module = PolymodalModule(
        model,
        target_infos,
        cfg,
        steps_per_epoch=len(train_loader),
        plugins=plugins,
        mixing=mixing,
    )
    monitor, mode = resolve_monitor(cfg, target_infos)
    best_checkpoint = ModelCheckpoint(
        dirpath=checkpoints_dir,
        filename="best",
        monitor=monitor,
        mode=mode,
        save_top_k=1,
        enable_version_counter=False,
    )
    seeds = SeedEachEpoch(cfg.seed, train_loader, first_epoch or 0)
    trainer = _trainer(
        cfg, out_dir, best_checkpoint, seeds, monitor, mode, len(train_loader), progress
    )
    metrics_csv = out_dir / "logs" / "metrics.csv"
    earlier_metrics = metrics_csv.read_text() if resuming and metrics_csv.is_file() else None
    resume_from = checkpoints_dir / "last.ckpt" if resuming else None
    _train(trainer, module, train_loader, val_loader, resume_from, monitor)
    if earlier_metrics is not None:
        _keep_earlier_metrics(metrics_csv, earlier_metrics)

    best_path = Path(best_checkpoint.best_model_path) if best_checkpoint.best_model_path else None
    if best_path is not None and best_path.is_file():
        module.load_state_dict(load_best_weights(best_path, checkpoints_dir))
    best_score = (
        None
        if best_checkpoint.best_model_score is None
        else float(best_checkpoint.best_model_score)
    )
    model_dir = save_model_folder(
        out_dir / "model",
        model=module.model,
        config=model_config,
        preprocessor=preprocessor,
        spec=spec,
        extra={
            "train": cfg.model_dump(mode="json"),
            **plugin_configs,
            "monitor": monitor,
            "best_score": best_score,
        },
    )
    issues = _write_issues(
        out_dir / "data_issues.csv",
        [*getattr(preprocessor, "fit_issues", []), *train_ds.issues, *val_ds.issues],
    )
    return FitResult(model_dir, best_path, best_score, monitor, trainer.current_epoch, issues)


def _start_or_resume(out_dir: Path, resume: bool, run_record: dict) -> int | None:
    """The epoch a resumed run starts with, once its config and checkpoints are checked; or
    None for a fresh run, for which an earlier run's metrics and checkpoints are cleared."""
    last_ckpt = out_dir / "checkpoints" / "last.ckpt"
    if resume and last_ckpt.is_file():
        # Refused before anything in the folder changes.
        check_resume_config(out_dir / "run.json", run_record)
        return verify_resume_checkpoint(last_ckpt, last_ckpt.parent)
    if resume:
        warnings.warn(
            f"--resume: no checkpoint at {last_ckpt}; starting from scratch", stacklevel=4
        )
    _clear_earlier_run(out_dir)
    return None


def _training_plugins(
    model: MultimodalModel,
    model_config: ModelConfig,
    target_infos: dict[str, dict],
    preprocessor: Preprocessor,
    distill: DistillationConfig | None,
    modulation: ModulationConfig | None,
    intervention_loss: InterventionLossConfig | None,
) -> list[TrainingPlugin]:
    """The training additions the run config asks for, built for ``model``."""
    plugins: list[TrainingPlugin] = []
    if distill is not None:
        plugins.append(Distillation.from_config(distill, student=model, preprocessor=preprocessor))
    if modulation is not None and modulation.enabled:
        plugins.append(
            GradientModulation.from_config(
                modulation, model=model, dim=model_config.dim, target_infos=target_infos
            )
        )
    if intervention_loss is not None:
        plugins.append(
            InterventionLoss.from_config(intervention_loss, model=model, target_infos=target_infos)
        )
    elif getattr(model.core, "detach_branches", False):
        raise PolymodalError(
            "model.core_options.detach_branches is true but the run config has no "
            "intervention_loss section: the branches would get no gradient. Add "
            "'intervention_loss: {}' (see configs/ei/ei_mor.yaml) or drop detach_branches"
        )
    return plugins


def _trainer(
    cfg: TrainConfig,
    out_dir: Path,
    best_checkpoint: ModelCheckpoint,
    seeds: SeedEachEpoch,
    monitor: str,
    mode: str,
    steps_per_epoch: int,
    progress: bool,
) -> L.Trainer:
    """The Lightning trainer: checkpoints, logs, early stopping, per-epoch seeds."""
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
    ]
    if cfg.ema_decay is not None:
        # Validation, the best checkpoint and the export see the average; last.ckpt keeps both.
        callbacks.append(WeightEMA(cfg.ema_decay))
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
        devices=1,
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
        import pandas as pd

        pd.DataFrame(
            [
                {"row_id": i.row_id, "modality": i.modality, "column": i.column, "reason": i.reason}
                for i in unique
            ]
        ).to_csv(path, index=False)
    return unique


def teachers_of(plugins: list[TrainingPlugin]) -> list[torch.nn.Module]:
    """The frozen teacher models of the training plugins (distillation has one)."""
    return [t for p in plugins if (t := getattr(p, "teacher", None)) is not None]


def _read_frozen_features(
    model: torch.nn.Module,
    teachers: list[torch.nn.Module],
    cfg: TrainConfig,
    cache: SampleCache | None,
    datasets: list[CohortDataset],
    progress: bool,
) -> None:
    """Image modalities whose backbone is frozen for good are read as its features (from the
    feature store, computed once now) instead of pixels (:mod:`polymodal.frozen_features`).

    Not with mixup/CutMix (they mix pixels), not for an augmented modality in the training
    split, and not for a modality a teacher reads through another backbone.
    """
    if cfg.mixup > 0 or cfg.cutmix > 0:
        return
    stores = frozen_feature_stores(model, cache, list(model.modalities))
    for teacher in teachers:
        theirs = frozen_feature_stores(teacher, cache, list(getattr(teacher, "modalities", ())))
        for name in [n for n in stores if n in getattr(teacher, "modalities", ())]:
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
