"""``explain_model``: rank the data elements of a cohort by their effect on one task's prediction.

Example::

    from polymodal.explain import explain_model

    result = explain_model("runs/demo/model", "new_rows.csv", task="label", max_samples=100)
    result.cohort.head()          # element, kind, modality, mean |effect| with a bootstrap CI, rank
    result.save("explain_out")    # elements_per_sample.csv, elements_cohort.csv, overlays/*.png
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import torch

from polymodal.data.dataset import encode_row
from polymodal.data.manifest import Cohort, load_cohort
from polymodal.data.preprocessing import DataIssue
from polymodal.errors import ModelError
from polymodal.evaluation.bootstrap import bootstrap_ci
from polymodal.explain.elements import occlusions
from polymodal.explain.occlusion import (
    SampleScorer,
    reference_index,
    score_description,
    task_score,
)
from polymodal.explain.overlay import RegionMap, region_maps, save_overlay
from polymodal.explain.rollout import (
    check_rollout_support,
    modality_token_shares,
    recording_attention,
    rollout_cores,
    supports_rollout,
)
from polymodal.explain.token_map import TokenMapper
from polymodal.modalities import get as modality_kind
from polymodal.model_folder import LoadedModel, load_model_folder
from polymodal.prediction_checks import NonFiniteGuard

Method = Literal["occlusion", "rollout", "both"]
METHODS = ("occlusion", "rollout", "both")
PER_SAMPLE_COLUMNS = [
    "sample_id",
    "group",
    "element",
    "kind",
    "modality",
    "detail",
    "prediction",
    "occluded_prediction",
    "occlusion_effect",
    "rollout_share",
]


@dataclass
class ExplainResult:
    """What :func:`explain_model` found.

    Attributes:
        task: the target explained; ``score``: what its prediction is (e.g. "probability of '1'").
        methods: ``("occlusion",)``, ``("rollout",)`` or both.
        per_sample: one row per sample and element (columns :data:`PER_SAMPLE_COLUMNS`);
            ``occlusion_effect`` = prediction − prediction without the element.
        cohort: one row per element: ``n`` samples that had it, ``mean_abs_effect`` with its
            bootstrap interval (patients resampled), ``mean_effect``, ``mean_rollout_share``,
            ``rank`` over all elements and ``rank_in_kind`` among elements of its kind.
        region_maps: region relevance of image / volume modalities for the first samples.
        notes: what was left out and why (e.g. a core without rollout support).
        issues: unreadable files or values met while reading the samples.
    """

    task: str
    score: str
    methods: tuple[str, ...]
    per_sample: pd.DataFrame
    cohort: pd.DataFrame
    region_maps: list[RegionMap] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    issues: list[DataIssue] = field(default_factory=list)

    def save(self, out_dir: Path | str) -> list[Path]:
        """Write the two CSVs and one PNG per region map; returns the paths written."""
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        written = [out_dir / "elements_per_sample.csv", out_dir / "elements_cohort.csv"]
        self.per_sample.to_csv(written[0], index=False)
        self.cohort.to_csv(written[1], index=False)
        for region_map in self.region_maps:
            label = f"_{region_map.label}" if region_map.label else ""
            name = _safe(f"{region_map.sample_id}_{region_map.modality}{label}") + ".png"
            written.append(save_overlay(region_map, out_dir / "overlays" / name))
        return written


def _safe(text: str) -> str:
    """A file name from a sample id: anything but letters, digits, ``-``, ``_``, ``.`` -> ``_``."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)[:120]


def resolve_task(task: str | None, target_infos: dict[str, Any]) -> str:
    """The target to explain: ``task``, or the only target; ModelError lists the known ones."""
    names = list(target_infos)
    if task is None:
        if len(names) == 1:
            return names[0]
        raise ModelError(
            f"the model has {len(names)} targets; choose one with --task: {', '.join(names)}"
        )
    if task not in target_infos:
        raise ModelError(f"unknown task {task!r}; the model's targets are: {', '.join(names)}")
    return task


def _pick_rows(n_rows: int, max_samples: int, seed: int) -> np.ndarray:
    """Row positions to explain: all, or a seeded random subset kept in manifest order."""
    if max_samples < 1:
        raise ModelError(f"max_samples must be at least 1, got {max_samples}")
    if n_rows <= max_samples:
        return np.arange(n_rows)
    return np.sort(np.random.default_rng(seed).choice(n_rows, max_samples, replace=False))


def explain_model(
    model_dir: Path | str | LoadedModel,
    manifest: Path | str | None,
    task: str | None = None,
    *,
    method: Method = "both",
    max_samples: int = 200,
    overlays: int = 4,
    device: str | torch.device = "cpu",
    seed: int = 0,
    progress: bool = False,
    root: Path | str | None = None,
) -> ExplainResult:
    """Rank the data elements of a manifest's rows by their effect on ``task``'s prediction.

    Args:
        model_dir: a model folder (``polymodal fit``'s ``OUT/model``) or a loaded one.
        manifest: rows laid out like the training manifest (labels not needed); None: the
            manifest of the model's spec.
        task: a target of the model; may be None when it has one target.
        method: ``"occlusion"``, ``"rollout"`` or ``"both"``. ``both`` on a core without
            rollout support runs occlusion alone and says so in ``notes``.
        max_samples: explain at most this many rows (a seeded random subset beyond it).
        overlays: region maps (image / volume relevance) for this many samples.
        device: where the model runs.
        seed: seed of the row subset and of the bootstrap.
        progress: show a progress bar over the samples.
        root: folder that the rows' relative file paths resolve against (default: the folder of
            ``manifest``, or the spec's data root when ``manifest`` is None).

    Raises:
        ModelError: the model's prediction for some explained row is NaN or infinite.
    """
    if method not in METHODS:
        raise ModelError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    loaded = model_dir if isinstance(model_dir, LoadedModel) else load_model_folder(model_dir)
    device = torch.device(device)
    loaded.model.to(device).eval()
    task = resolve_task(task, loaded.target_infos)
    kind = loaded.target_infos[task]["kind"]
    cohort = load_cohort(
        loaded.spec,
        manifest_override=None if manifest is None else Path(manifest),
        for_inference=True,
        root=root,
    )
    notes: list[str] = []
    use_rollout = method in ("rollout", "both")
    if use_rollout and not supports_rollout(loaded.model.core):
        if method == "rollout":
            check_rollout_support(loaded.model.core)  # raises, naming the supported cores
        notes.append(
            f"attention rollout is not available for the '{loaded.model.core.core_name}' core "
            f"(only {', '.join(rollout_cores())}): occlusion only"
        )
        use_rollout = False
    explainer = _Explainer(loaded, cohort, task, kind, device, method != "rollout", use_rollout)
    positions = _pick_rows(len(cohort), max_samples, seed)
    iterator: Any = positions
    if progress:
        from polymodal.progress import track

        iterator = track(positions, description="explaining", total=len(positions))
    rows: list[dict[str, Any]] = []
    descriptions: set[str] = set()
    for count, position in enumerate(iterator):
        sample_rows, description = explainer.explain_row(int(position), count < overlays)
        rows.extend(sample_rows)
        descriptions.add(description)
    explainer.guard.check(loaded)
    per_sample = pd.DataFrame(rows, columns=PER_SAMPLE_COLUMNS)
    methods = tuple(
        m for m, on in (("occlusion", explainer.occlude), ("rollout", use_rollout)) if on
    )
    return ExplainResult(
        task=task,
        score=" / ".join(sorted(descriptions)),
        methods=methods,
        per_sample=per_sample,
        cohort=summarize(per_sample, seed=seed),
        region_maps=explainer.region_maps,
        notes=notes,
        issues=explainer.issues,
    )


class _Explainer:
    """Explains one row at a time (see :meth:`explain_row`)."""

    def __init__(
        self,
        loaded: LoadedModel,
        cohort: Cohort,
        task: str,
        kind: str,
        device: torch.device,
        occlude: bool,
        use_rollout: bool,
    ) -> None:
        self.loaded = loaded
        self.cohort = cohort
        self.task = task
        self.kind = kind
        self.device = device
        self.occlude = occlude
        self.use_rollout = use_rollout
        self.prep = loaded.preprocessor
        self.model = loaded.model
        self.mapper = TokenMapper(self.model, self.prep)
        self.region_maps: list[RegionMap] = []
        self.issues: list[DataIssue] = []
        # Effects measured against a NaN prediction would rank elements by nothing.
        self.guard = NonFiniteGuard()

    @torch.no_grad()
    def explain_row(self, position: int, with_maps: bool) -> tuple[list[dict[str, Any]], str]:
        """The per-sample rows of one manifest row, and what its prediction measures."""
        cohort, prep, model = self.cohort, self.prep, self.model
        cells = cohort.frame.iloc[position].to_dict()
        sample = encode_row(
            prep,
            cells,
            row_id=str(cohort.ids.iat[position]),
            group=str(cohort.groups.iat[position]),
            resolve=cohort.resolve_path,
            issues=self.issues,
        )
        present = [m for m in model.modalities if sample["available"].get(m, False)]
        # Sentences of the modalities whose kind has text (None for the others).
        sentences = {
            m: modality_kind(cfg.kind).sentences(cfg, cells, cohort.resolve_path)
            for m, cfg in ((m, prep.modality_configs[m]) for m in present)
        }
        scorer = SampleScorer(model, prep, sample, self.task, self.kind, self.device)
        shares: dict[str, float] = {}
        if self.use_rollout:
            with recording_attention(model.core):
                predictions, _ = scorer.baseline()
                layout = [
                    (m, int(scorer.encoded[m][0].shape[1]))
                    for m in model.core.modalities
                    if m in scorer.encoded
                ]
                routing = getattr(model, "task_routing", None)
                tokens = modality_token_shares(model.core, layout, 1, self.task, routing)
            for m in present:
                if m in tokens:
                    shares.update(
                        self.mapper.element_shares(
                            m, tokens[m][0].cpu().numpy(), sample["inputs"][m], sentences.get(m)
                        )
                    )
        else:
            predictions, _ = scorer.baseline()
        self.guard.add([sample["id"]], {self.task: predictions}, torch.ones(1, dtype=torch.bool))
        reference = reference_index(self.kind, predictions)
        prediction = float(task_score(self.kind, predictions, reference)[0])
        info = self.loaded.target_infos[self.task]
        rows = []
        for m in present:
            elements = occlusions(prep, m, sample["inputs"][m], sentences.get(m))
            if self.occlude:
                scored = scorer.occluded(m, elements, reference)
            else:
                scored = [(o.element, float("nan")) for o in elements]
            for element, occluded in scored:
                rows.append(
                    {
                        "sample_id": sample["id"],
                        "group": sample["group"],
                        "element": element.name,
                        "kind": element.kind,
                        "modality": element.modality,
                        "detail": element.detail,
                        "prediction": prediction,
                        "occluded_prediction": occluded,
                        "occlusion_effect": prediction - occluded,
                        "rollout_share": shares.get(element.name, float("nan")),
                    }
                )
        if with_maps:
            column = "occlusion_effect" if self.occlude else "rollout_share"
            relevance = {r["element"]: abs(r[column]) for r in rows if r["kind"] == "region"}
            what = "|occlusion effect|" if self.occlude else "rollout share"
            self.region_maps.extend(region_maps(prep, sample, relevance, what))
        return rows, score_description(self.kind, info, reference)


def summarize(per_sample: pd.DataFrame, *, n_boot: int = 500, seed: int = 0) -> pd.DataFrame:
    """One row per element: how often present, mean |effect| (grouped bootstrap CI), ranks."""
    columns = [
        "element",
        "kind",
        "modality",
        "n",
        "mean_abs_effect",
        "ci_low",
        "ci_high",
        "mean_effect",
        "mean_rollout_share",
        "rank",
        "rank_in_kind",
    ]
    if per_sample.empty:
        return pd.DataFrame(columns=columns)
    records = []
    for (element, kind, modality), rows in per_sample.groupby(
        ["element", "kind", "modality"], sort=False
    ):
        effects = rows["occlusion_effect"].to_numpy(dtype=float)
        record = {
            "element": element,
            "kind": kind,
            "modality": modality,
            "n": len(rows),
            "mean_abs_effect": float("nan"),
            "ci_low": float("nan"),
            "ci_high": float("nan"),
            "mean_effect": float("nan"),
            "mean_rollout_share": float(rows["rollout_share"].mean()),
        }
        if np.isfinite(effects).all():
            magnitude = np.abs(effects)
            ci = bootstrap_ci(
                lambda e: {"mean": float(np.mean(e))},
                (magnitude,),
                rows["group"].to_numpy(),
                n_boot=n_boot,
                seed=seed,
            )["mean"]
            record.update(
                mean_abs_effect=ci.point,
                ci_low=ci.low,
                ci_high=ci.high,
                mean_effect=float(effects.mean()),
            )
        records.append(record)
    table = pd.DataFrame(records, columns=columns)
    # Rank by occlusion when it ran, by rollout share otherwise.
    key = "mean_abs_effect" if table["mean_abs_effect"].notna().any() else "mean_rollout_share"
    table["rank"] = table[key].rank(ascending=False, method="min").astype("Int64")
    table["rank_in_kind"] = (
        table.groupby("kind")[key].rank(ascending=False, method="min").astype("Int64")
    )
    return table.sort_values(["rank", "element"], na_position="last").reset_index(drop=True)
