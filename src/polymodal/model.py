"""The multimodal model: per-modality encoders -> one fusion core -> one head per target.

Composition by injection (TorchMultimodal's late-fusion pattern)::

    model = MultimodalModel(encoders, core, heads, modality_dropout=0.2)
    outputs = model(batch)                     # {"logits": {target: ...}, "features": (B, D_out)}
    total, per_target = model.loss(batch, outputs)
    predictions = model.predict(batch)         # {target: {name: Tensor}}

``batch`` follows :mod:`polymodal.data.batch`. A modality the model has no encoder for is ignored;
a modality of the model that the batch does not carry is unavailable for every sample.

What the model does with a core follows the core's declared capabilities
(:class:`~polymodal.fusion.base.FusionCore`):

* raw inputs: a core whose own passes must see a modality's input declares ``raw_inputs =
  {modality: (value_field, mask_field)}``. Such a modality gets no encoder; its stream is
  ``(inputs[m][value_field], inputs[m][mask_field])``, e.g. ``(pixels (B, V, C, H, W), view_mask
  (B, V))``, masked by availability like any other stream;
* auxiliary outputs: a core with ``auxiliary_outputs`` returns them beside its features; they
  are in ``outputs["auxiliary"]`` for a training plugin;
* per-task features: see :class:`MultimodalModel`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_model, save_model
from torch import Tensor, nn

from polymodal.config import ModelConfig
from polymodal.errors import ModelError
from polymodal.fusion import CORES, FusionCore, create_core
from polymodal.heads import create_head


class MultimodalModel(nn.Module):
    """Encoders + fusion core + heads.

    Args:
        encoders: modality -> encoder; an encoder maps ``batch["inputs"][m]`` to
            ``(tokens (B, N_m, D), mask (B, N_m) bool)``.
        core: a fusion core (:func:`polymodal.fusion.create_core`); its ``modalities`` says which
            modalities it reads, and only their encoders run.
        heads: target -> head (:func:`polymodal.heads.create_head`).
        modality_dropout: training only: probability of dropping each available modality of
            each sample independently; a sample never loses all of its available modalities.

    Task routing: a core whose ``tasks`` name every head (e.g. one task prompt per target) gives
    each head the feature of its own task (``forward_tasks``); the outputs then also hold
    ``task_features`` (B, T, D_out), and ``features`` is their mean. Such a core with a single
    task feeds that one feature to every head, like any other core.
    """

    def __init__(
        self,
        encoders: nn.ModuleDict,
        core: FusionCore,
        heads: nn.ModuleDict,
        modality_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if not isinstance(core, FusionCore):
            raise ModelError(
                f"the fusion core must be a FusionCore (polymodal.fusion.create_core), got "
                f"{type(core).__name__}"
            )
        if not 0.0 <= modality_dropout < 1.0:
            raise ModelError(f"modality_dropout must be in [0, 1), got {modality_dropout}")
        self.encoders = encoders
        self.core = core
        self.heads = heads
        self.modality_dropout = modality_dropout
        self.raw_inputs: dict[str, tuple[str, str]] = dict(core.raw_inputs)
        # The modalities this model feeds the core: those it reads that have an encoder or that
        # it takes raw.
        self.modalities = tuple(m for m in core.modalities if m in encoders or m in self.raw_inputs)
        self.task_routing = _task_routing(core, tuple(heads))

    def forward(self, batch: dict[str, Any]) -> dict[str, Any]:
        """``batch`` -> ``{"logits": {target: (B,) | (B, K)}, "features": (B, D_out)}`` (and
        ``task_features``, ``auxiliary`` where the core has them, see :meth:`fuse`)."""
        encoded, availability = self.encode(batch)
        if self.training:
            availability = self.drop_modalities(availability)
        return self.fuse(encoded, availability)

    def encode(
        self, batch: dict[str, Any]
    ) -> tuple[dict[str, tuple[Tensor, Tensor]], dict[str, Tensor]]:
        """Run the encoders: ``({m: (tokens (B, N_m, D), mask (B, N_m))}, {m: available (B,)})``.

        Split from :meth:`fuse` so that an evaluation can encode a batch once and fuse it under
        many availability patterns (the missing-modality matrix).
        """
        inputs, available = batch.get("inputs", {}), batch.get("available", {})
        present = [m for m in self.modalities if m in inputs]
        missing_availability = [m for m in present if m not in available]
        if missing_availability:
            raise ModelError(
                f"the batch has inputs but no 'available' entry for {missing_availability}; "
                "build batches with polymodal.data.collate.collate_samples"
            )
        availability = {m: available[m].bool() for m in present}
        encoded = {}
        for m in present:
            if not self.training and not bool(availability[m].any()):
                # No sample has it: skip the encoder (the core would mask every token anyway).
                # Training always runs it so every parameter gets a gradient (DDP needs that).
                continue
            if m in self.raw_inputs:
                encoded[m] = self._raw_stream(m, inputs[m])
            else:
                encoded[m] = self.encoders[m](inputs[m])  # (B, N_m, D), (B, N_m)
        return encoded, availability

    def _raw_stream(self, modality: str, fields: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``(value, mask)`` of a modality the core takes raw (see ``raw_inputs``)."""
        value_field, mask_field = self.raw_inputs[modality]
        lacking = [f for f in (value_field, mask_field) if f not in fields]
        if lacking:
            raise ModelError(
                f"the fusion core reads modality '{modality}' raw and needs the input field(s) "
                f"{lacking}, but the batch has {sorted(fields)}; give '{modality}' the kind the "
                "core expects (e.g. 'image' for pixels and view_mask)"
            )
        return fields[value_field], fields[mask_field].bool()

    def fuse(
        self, encoded: dict[str, tuple[Tensor, Tensor]], availability: dict[str, Tensor]
    ) -> dict[str, Any]:
        """Fusion core and heads over encoded streams; a modality unavailable for a sample is
        masked out of that sample's tokens, whatever its stream holds."""
        tokens = {m: stream for m, (stream, _) in encoded.items()}
        masks = {m: mask.bool() & availability[m][:, None] for m, (_, mask) in encoded.items()}
        if self.task_routing:
            # One feature per head, each read by its own task prompt.
            task_features = self.core.forward_tasks(tokens, masks, availability, self.task_routing)
            logits = {
                t: head(task_features[:, i]) for i, (t, head) in enumerate(self.heads.items())
            }  # task_features: (B, T, D_out)
            return {
                "logits": logits,
                "features": task_features.mean(dim=1),
                "task_features": task_features,
            }
        if self.core.auxiliary_outputs:
            features, auxiliary = self.core.forward_with_auxiliary(tokens, masks, availability)
        else:
            features, auxiliary = self.core(tokens, masks, availability), None  # (B, D_out)
        logits = {t: head(features) for t, head in self.heads.items()}
        outputs = {"logits": logits, "features": features}
        if auxiliary is not None:
            outputs["auxiliary"] = auxiliary  # {key: ... for key in core.auxiliary_outputs}
        return outputs

    def drop_modalities(self, availability: dict[str, Tensor]) -> dict[str, Tensor]:
        """Per-sample modality dropout: each available modality goes with prob. p, never all.

        ``forward`` applies it in training mode; a training loop that needs the encoded streams
        (:meth:`encode`, then this, then :meth:`fuse`) applies it itself. With p = 0 the
        availability comes back unchanged.
        """
        if self.modality_dropout == 0 or not availability:
            return availability
        names = list(availability)
        present = torch.stack([availability[m] for m in names], dim=1)  # (B, M)
        draw = torch.rand(present.shape, device=present.device)
        kept = present & (draw >= self.modality_dropout)
        lost_all = present.any(dim=1) & ~kept.any(dim=1)  # (B,)
        if bool(lost_all.any()):
            # Give each such sample back one of its modalities, chosen uniformly.
            restore = torch.multinomial(present[lost_all].float(), 1).squeeze(1)
            rows = lost_all.nonzero().squeeze(1)
            kept[rows, restore] = True
        return {m: kept[:, i] for i, m in enumerate(names)}

    def loss(
        self, batch: dict[str, Any], outputs: dict[str, Any]
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Mean of the per-target losses over the targets labelled in the batch, and each of them.

        A target without any label in the batch (or missing from it) has loss exactly 0 and is
        not counted in the mean (M3FM's multitask average over the tasks present), so a batch
        that labels one target of five trains it at full weight.
        """
        per_target: dict[str, Tensor] = {}
        targets, target_mask = batch.get("targets", {}), batch.get("target_mask", {})
        for name, head in self.heads.items():
            logits = outputs["logits"][name]
            if name in targets and name in target_mask:
                per_target[name] = head.loss(logits, targets[name], target_mask[name])
            else:
                per_target[name] = (logits * 0.0).sum()
        labelled = [
            name
            for name in per_target
            if name in targets and name in target_mask and bool(target_mask[name].any())
        ]
        # The unlabelled targets' exact zeros keep every head in the graph (DDP expects it).
        unlabelled = sum(
            (v for n, v in per_target.items() if n not in labelled),
            outputs["features"].new_zeros(()),
        )
        total = sum((per_target[n] for n in labelled), unlabelled) / max(1, len(labelled))
        return total, per_target

    def predictions_from_logits(self, logits: dict[str, Tensor]) -> dict[str, dict[str, Tensor]]:
        """``{target: logits}`` -> ``{target: {name: Tensor}}`` (see each head's ``predict``)."""
        return {name: head.predict(logits[name]) for name, head in self.heads.items()}

    @torch.no_grad()
    def predict(self, batch: dict[str, Any]) -> dict[str, dict[str, Tensor]]:
        """Predictions per target, e.g. ``{"label": {"probability": (B,)}}``.

        Call ``model.eval()`` first: in training mode dropout and modality dropout are active.
        """
        return self.predictions_from_logits(self(batch)["logits"])

    def save_weights(self, path: Path | str) -> None:
        """Write the weights as safetensors (shared tensors, if an encoder ties any, are handled)."""
        save_model(self, str(path))

    def load_weights(self, path: Path | str) -> None:
        """Read weights written by :meth:`save_weights`; raises :class:`ModelError` on mismatch."""
        if not Path(path).is_file():
            raise ModelError(f"{path}: weights file not found")
        try:
            load_model(self, str(path), strict=True)
        except RuntimeError as err:
            raise ModelError(
                f"{path}: the weights do not fit this model ({err}); build the model with the "
                "config it was trained with"
            ) from None


def _task_routing(core: FusionCore, targets: tuple[str, ...]) -> tuple[str, ...] | None:
    """The core task each head reads (its own name), or None when every head reads one feature.

    Raises:
        ModelError: a core with several tasks that do not name every target.
    """
    tasks = tuple(core.tasks)
    if not tasks:
        return None
    if all(t in tasks for t in targets):
        return targets
    if len(tasks) == 1:
        return None
    missing = [t for t in targets if t not in tasks]
    raise ModelError(
        f"the fusion core has task prompts for {', '.join(map(repr, tasks))} but not for the "
        f"target(s) {', '.join(map(repr, missing))}; give one prompt per target in "
        "model.core_options.task_prompts (or leave task_prompts out to use the spec's prompts)"
    )


def build_model(
    config: ModelConfig,
    input_infos: dict[str, dict[str, Any]],
    target_infos: dict[str, dict[str, Any]],
) -> MultimodalModel:
    """Build encoders, core and heads for a cohort from its fitted preprocessing state.

    Args:
        config: the model config.
        input_infos: modality -> info (``{"kind": ..., ...}``, see ``polymodal.encoders``).
        target_infos: target -> info (see :mod:`polymodal.heads`).

    Only the modalities the core reads get an encoder, and none of those it takes raw
    (``raw_inputs``). A core option derived from the targets (the core's ``target_options``,
    e.g. one task prompt per target) that ``core_options`` leaves out or sets to null comes from
    the core's ``options_from_targets``.
    """
    # Imported here: the encoders pull in timm/transformers/monai, which the rest of this module
    # (and everything that only loads a core or a head) does not need.
    from polymodal.encoders import create_encoder, default_encoder

    unknown = sorted(set(config.encoders) - set(input_infos))
    if unknown:
        raise ModelError(
            f"model config 'encoders' names {unknown}, which are not modalities of this cohort "
            f"({', '.join(input_infos) or 'none'})"
        )
    if not target_infos:
        raise ModelError("the cohort has no targets; add at least one under 'targets' in the spec")
    for what, names in (("modality", input_infos), ("target", target_infos)):
        # Module names are attribute paths: a dot would split one name into two levels.
        dotted = [n for n in names if "." in n or not n]
        if dotted:
            raise ModelError(
                f"{what} name(s) {dotted} cannot be used as model parts; rename them in the "
                "spec without '.' (e.g. 'ct_scan' for 'ct.scan')"
            )
    if config.modalities is not None:
        unknown = sorted(set(config.modalities) - set(input_infos))
        if unknown or not config.modalities:
            raise ModelError(
                f"model config 'modalities' names {unknown or 'nothing'}; give one or more "
                f"modalities of this cohort ({', '.join(input_infos)})"
            )
        input_infos = {m: input_infos[m] for m in config.modalities}
    kinds = {m: info.get("kind", "") for m, info in input_infos.items()}
    core_options = _core_options(config, target_infos)
    core = create_core(config.core, modalities=kinds, dim=config.dim, **core_options)
    encoders = nn.ModuleDict()
    for m in core.modalities:
        if m in core.raw_inputs:
            continue
        choice = config.encoders.get(m)
        name = (choice.name if choice else None) or default_encoder(kinds[m])
        options = choice.options if choice else {}
        encoders[m] = create_encoder(name, input_info=input_infos[m], dim=config.dim, **options)
    heads = nn.ModuleDict(
        {t: create_head(t, info, in_dim=core.out_dim) for t, info in target_infos.items()}
    )
    return MultimodalModel(encoders, core, heads, modality_dropout=config.modality_dropout)


def _core_options(config: ModelConfig, target_infos: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``config.core_options`` with the core's target-derived options filled in where unset."""
    options = dict(config.core_options)
    derived = CORES.get(config.core).options_from_targets(target_infos)
    for key, value in derived.items():
        if options.get(key) is None:
            options[key] = value
    return options
