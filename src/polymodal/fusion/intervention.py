"""``intervention``: Early Intervention (EI, methods.md §3) on one shared, frozen ViT.

Each image modality is in turn the *target*; every other modality is one of its *references*.
A reference gives one intervention token through a small MLP per ordered pair (reference →
target); the tokens join the target image's sequence before block ``insert_at`` (0: every block
sees them) in a second, adapted pass, and a router fuses the per-target branches::

    reference summaries:  image m  -> CLS of pass 1 (adapter "ref_<m>", max over views)  (B, E)
                          other m  -> masked mean of its encoder tokens                     (B, D)
    intervention tokens:  z_{s→t} = MLP_{s→t}(summary_s)                                    (B, E)
    target pass:          CLS of pass 2 on t's views with [z_{s→t}]_s appended (adapter "tgt_<t>",
                          mean over views)                                                  (B, E)
    branch feature:       Linear(E → out_dim)(CLS²_t)                                       (B, out_dim)
    router:               w = softmax(Linear(E·M → M)(concat_t stopgrad(CLS²_t))) over present t
    output:               Σ_t w_t · feature_t                                               (B, out_dim)

Every pass runs through the same timm ViT (:class:`~polymodal.layers.vit_insertion.ViTWithInsertion`)
whose frozen weights exist once; the passes differ only in the active adapter set (MoR by
default, LoRA optional), so memory does not grow with 2·M backbone copies.

The core reads the image modalities' raw inputs, not encoder tokens: it declares ``raw_inputs``
and the model hands it ``(pixels (B, V, C, H, W), view_mask
(B, V))`` as those modalities' ``(tokens, mask)``. Non-image modalities come from their encoders.

Missing data: a missing reference gives no token (masked out of every attention); a missing
target skips its branch and the router's softmax runs over the present branches only; a sample
without any image modality gets a zero feature vector (EI has no branch for it).

The paper's extra loss terms (per-branch losses on s¹ and s², router supervision) need the
training loop: :meth:`InterventionCore.forward_with_auxiliary` returns what they need beside the
fused features (the model passes them on as ``outputs["auxiliary"]`` to the training plugin).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from polymodal.adapters import (
    LoRAConfig,
    MoRConfig,
    adapter_state_dict,
    freeze_except_adapters,
    inject_adapters,
    set_active_adapter,
)
from polymodal.errors import ModelError
from polymodal.fusion.base import AdapterWeights, FusionCore
from polymodal.fusion.registry import register_core
from polymodal.fusion.streams import batch_size
from polymodal.layers.pooling import masked_mean
from polymodal.layers.vit_insertion import ViTWithInsertion
from polymodal.layers.weights import load_pretrained_backbone
from polymodal.modalities import get as modality_kind
from polymodal.modalities import kinds as modality_kinds

ADAPTERS = {"mor": MoRConfig, "lora": LoRAConfig}


def intervention_mlp(in_dim: int, embed_dim: int) -> nn.Sequential:
    """LN → Linear(in → E/2) → GELU → Linear(E/2 → E), the paper's MLP_{t,r} (768→384→768)."""
    hidden = max(embed_dim // 2, 1)
    return nn.Sequential(
        nn.LayerNorm(in_dim),
        nn.Linear(in_dim, hidden),
        nn.GELU(),
        nn.Linear(hidden, embed_dim),
    )


@register_core("intervention")
class InterventionCore(FusionCore):
    """Early Intervention over one shared frozen ViT with two adapter sets per image modality.

    Args:
        modalities: modality name -> kind; at least one of a 2D pixel kind (``pixels_2d``, the
            image kind), a target of the ViT.
        dim: token width D of the non-image encoders (their summaries feed the MLPs).
        backbone: a timm ViT name with a class token (e.g. ``vit_base_patch16_clip_224``).
        backbone_options: keyword arguments for ``timm.create_model`` (``img_size``,
            ``in_chans``, ``embed_dim``, ``depth``, …).
        pretrained: a local weights file for the backbone (``.safetensors``/``.pth``), or None
            for random weights. Nothing is downloaded.
        adapter: ``"mor"`` (the paper's Mixture of Low-varied-Ranks) or ``"lora"``.
        adapter_options: fields of :class:`~polymodal.adapters.MoRConfig` or
            :class:`~polymodal.adapters.LoRAConfig`.
        insert_at: index of the first block that sees the intervention tokens (0 = EI).
        out_dim: output width (default ``dim``).
        detach_branches: the paper's fused output uses stopgrad(branch logits), so the fused
            loss trains only the router and each branch learns from its own loss. Only set this
            when a training plugin adds those per-branch losses (see :meth:`forward_branches`);
            with the plain loop the branches would get no gradient at all.

    The router always reads detached target CLS features, as in the paper.
    """

    auxiliary_outputs = ("branch_features", "branch_available", "router_weights", "reference_cls")
    export_refusal = (
        "its ViT passes run only for the images and references some sample of the batch has "
        "(branches on the data), with adapters switched between passes"
    )

    def __init__(
        self,
        *,
        modalities: dict[str, str],
        dim: int,
        backbone: str = "vit_base_patch16_clip_224",
        backbone_options: dict[str, Any] | None = None,
        pretrained: str | Path | None = None,
        adapter: str = "mor",
        adapter_options: dict[str, Any] | None = None,
        insert_at: int = 0,
        out_dim: int | None = None,
        detach_branches: bool = False,
    ) -> None:
        super().__init__(modalities=modalities, dim=dim)
        # The ViT's targets: modalities whose kind is 2D pixel views (the core reads them raw).
        self.images = tuple(m for m, kind in modalities.items() if modality_kind(kind).pixels_2d)
        if not self.images:
            raise ModelError(
                "the intervention core needs at least one image modality (a kind of 2D pixels: "
                f"{', '.join(_pixel_kinds())}) as a target; got kinds {dict(modalities)}. Use "
                "another core, e.g. 'synergy'"
            )
        if adapter not in ADAPTERS:
            raise ModelError(
                f"intervention adapter={adapter!r} is not one of {', '.join(ADAPTERS)}"
            )
        # The model hands these modalities' raw (pixels, view_mask) to the core instead of
        # running an encoder: the target pass itself takes the intervention tokens.
        self.raw_inputs = {m: ("pixels", "view_mask") for m in self.images}
        self.out_dim = out_dim or dim
        self.detach_branches = detach_branches

        self.backbone = ViTWithInsertion(
            _create_vit(backbone, backbone_options or {}, pretrained), insert_at=insert_at
        )
        embed_dim = self.backbone.embed_dim
        self.embed_dim = embed_dim
        config = ADAPTERS[adapter](**(adapter_options or {}))
        # Pass 1 is needed only when an image is the reference of another image.
        self.reference_passes = self.images if len(self.images) > 1 else ()
        for m in self.reference_passes:
            inject_adapters(self.backbone, config, adapter_name=f"ref_{m}")
        for m in self.images:
            inject_adapters(self.backbone, config, adapter_name=f"tgt_{m}")
        freeze_except_adapters(self.backbone)

        self.intervention = nn.ModuleDict(
            {
                _pair(source, target): intervention_mlp(
                    embed_dim if source in self.images else dim, embed_dim
                )
                for target in self.images
                for source in modalities
                if source != target
            }
        )
        self.branch_heads = nn.ModuleDict(
            {m: nn.Linear(embed_dim, self.out_dim) for m in self.images}
        )
        # One branch has nothing to weigh: no router (it would never get a gradient).
        self.router = (
            nn.Linear(embed_dim * len(self.images), len(self.images))
            if len(self.images) > 1
            else None
        )

    def forward(
        self,
        tokens: dict[str, Tensor],
        masks: dict[str, Tensor],
        available: dict[str, Tensor],
    ) -> Tensor:
        """``tokens[image] (B, V, C, H, W)``, ``tokens[other] (B, N, D)`` -> ``(B, out_dim)``."""
        return self.forward_branches(tokens, masks, available)["fused"]

    def forward_with_auxiliary(
        self,
        tokens: dict[str, Tensor],
        masks: dict[str, Tensor],
        available: dict[str, Tensor],
    ) -> tuple[Tensor, dict[str, Any]]:
        """The fused features and the rest of :meth:`forward_branches` (``auxiliary_outputs``)."""
        branches = self.forward_branches(tokens, masks, available)
        fused = branches.pop("fused")
        return fused, branches

    @classmethod
    def example_modalities(cls) -> dict[str, str]:
        return {"derm": "image", "clinical": "image", "labs": "tabular"}

    @classmethod
    def example_options(cls) -> dict[str, Any]:
        vit = {"img_size": 32, "embed_dim": 32, "depth": 2, "num_heads": 2}
        return {"backbone": "vit_tiny_patch16_224", "backbone_options": vit}

    def example_stream(
        self, modality: str, batch_size: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """Two views of pixels ``(B, 2, C, H, W)`` for an image modality, tokens otherwise."""
        if modality not in self.raw_inputs:
            return super().example_stream(modality, batch_size, generator)
        patch_embed = self.backbone.vit.patch_embed
        shape = (batch_size, 2, patch_embed.proj.in_channels, *patch_embed.img_size)
        return torch.randn(shape, generator=generator), torch.ones(batch_size, 2, dtype=torch.bool)

    def required_plugins(self) -> tuple[str, ...]:
        """Detached branches learn only from the ``intervention_loss`` plugin's terms."""
        return ("intervention_loss",) if self.detach_branches else ()

    def forward_branches(
        self,
        tokens: dict[str, Tensor],
        masks: dict[str, Tensor],
        available: dict[str, Tensor],
    ) -> dict[str, Any]:
        """Everything the paper's losses need, plus the fused output.

        Inputs:
            tokens: image modality -> pixels (B, V, C, H, W); other modality -> (B, N, D).
            masks: image modality -> view mask (B, V); other -> token mask (B, N); True = valid.
            available: modality -> (B,) bool.

        Returns:
            dict with ``fused`` (B, out_dim); ``branch_features`` {target: (B, out_dim)} (the
            input of a per-branch head, s²); ``branch_available`` (B, M) bool and
            ``router_weights`` (B, M) over ``self.images`` (zero for absent branches);
            ``reference_cls`` {image: (B, E)} from pass 1 (the input of s¹), for the images
            that are references of another image.
        """
        n = batch_size(tokens, available)
        like = self.branch_heads[self.images[0]].weight
        # Valid tokens (non-image, (B, N)) or present views (image, (B, V)), availability applied.
        valid = {m: self._valid(m, masks, available) for m in self.modalities if m in tokens}
        present = {m: mask.any(dim=1) for m, mask in valid.items()}  # (B,) each

        # Reference summaries: (B, D) for non-image modalities, pass-1 CLS (B, E) for images.
        summaries = {
            m: masked_mean(tokens[m], valid[m])
            for m in self.modalities
            if m in valid and m not in self.images and bool(present[m].any())
        }
        reference_cls = {}
        for m in self.reference_passes:
            if m in valid and bool(present[m].any()):
                set_active_adapter(self.backbone, f"ref_{m}")
                pixels = self._pixels(m, tokens[m])
                reference_cls[m] = self.backbone.forward_views(pixels, valid[m], pool="max")["cls"]
        summaries.update(reference_cls)

        cls_features, branch_features = [], {}
        for target in self.images:
            if target not in valid or not bool(present[target].any()):
                cls_features.append(like.new_zeros(n, self.embed_dim))
                branch_features[target] = like.new_zeros(n, self.out_dim)
                continue
            sources = [s for s in self.modalities if s != target and s in summaries]
            extra_tokens = extra_mask = None
            if sources:
                extra_tokens = torch.stack(
                    [self.intervention[_pair(s, target)](summaries[s]) for s in sources], dim=1
                )  # (B, R, E)
                extra_mask = torch.stack([present[s] for s in sources], dim=1)  # (B, R)
            set_active_adapter(self.backbone, f"tgt_{target}")
            cls = self.backbone.forward_views(
                self._pixels(target, tokens[target]),
                valid[target],
                extra_tokens,
                extra_mask,
                pool="mean",
            )["cls"]  # (B, E), zeros where the target is absent
            cls_features.append(cls)
            branch_features[target] = self.branch_heads[target](cls)  # (B, out_dim)
        set_active_adapter(self.backbone, None)

        branch_available = torch.stack(
            [
                present.get(t, torch.zeros(n, dtype=torch.bool, device=like.device))
                for t in self.images
            ],
            dim=1,
        )  # (B, M)
        weights = self._route(cls_features, branch_available)  # (B, M)
        stacked = torch.stack([branch_features[t] for t in self.images], dim=1)  # (B, M, out_dim)
        if self.detach_branches:
            stacked = stacked.detach()
        fused = (weights[..., None] * stacked).sum(dim=1)  # (B, out_dim)
        return {
            "fused": fused,
            "branch_features": branch_features,
            "branch_available": branch_available,
            "router_weights": weights,
            "reference_cls": reference_cls,
        }

    @torch.no_grad()
    def init_adapters(self, modality: str, weights: AdapterWeights) -> list[str]:
        """Start both adapter sets of image ``modality`` (``ref_<m>``, ``tgt_<m>``) from a
        single-image model's adapters: the paper's two-step protocol (methods.md §3.3), where
        EI's first and second copies of modality m begin as m's single-modal MoR checkpoint.

        Args:
            modality: an image modality of this core.
            weights: that model's adapters (and the frozen backbone they were trained on), read
                by the caller from a model or adapter folder
                (:func:`polymodal.training.adapter_source.read_adapter_weights`).

        Returns:
            The adapter sets that were initialised.

        Raises:
            ModelError: ``modality`` is not an image of this core, or the adapters do not fit
                (other method, ranks, modules or backbone).

        The frozen backbone is not copied: build this core on the same weights (``pretrained``)
        as the single model; a warning says when they differ.
        """
        if modality not in self.images:
            raise ModelError(
                f"init_from names '{modality}', which is not an image modality of the "
                f"intervention core ({', '.join(self.images)})"
            )
        state, frozen, where = weights.adapters, weights.frozen, weights.source
        own_frozen = {
            k.removeprefix("vit."): p.detach()
            for k, p in self.backbone.named_parameters()
            if not p.requires_grad
        }
        if frozen and (
            own_frozen.keys() != frozen.keys()
            or any(not _same_frozen(own_frozen[k], frozen[k]) for k in frozen)
        ):
            warnings.warn(
                f"{where}: its frozen backbone weights differ from this core's; its adapters "
                "were trained on other weights (give the core the same 'pretrained' file)",
                stacklevel=2,
            )
        names = [f"ref_{modality}"] if modality in self.reference_passes else []
        names.append(f"tgt_{modality}")
        for name in names:
            own = {
                k.removeprefix("vit."): v
                for k, v in adapter_state_dict(self.backbone, name).items()
            }
            missing, unexpected = sorted(own.keys() - state.keys()), sorted(state.keys() - own)
            shapes = [k for k in own.keys() & state.keys() if own[k].shape != state[k].shape]
            if missing or unexpected or shapes:
                raise ModelError(
                    f"{where}: its adapters do not fit adapter set '{name}' (missing "
                    f"{missing[:3]}, unexpected {unexpected[:3]}, other shapes {shapes[:3]}); "
                    "train the single model with the same adapter, adapter_options and backbone"
                )
            for key, tensor in own.items():
                tensor.copy_(state[key])
        return names

    def _route(self, cls_features: list[Tensor], branch_available: Tensor) -> Tensor:
        """Softmax over the present branches only: ``(B, M)``, rows without a branch all zero."""
        weights = branch_available.to(cls_features[0].dtype)
        if self.router is None:
            return weights
        logits = self.router(torch.cat(cls_features, dim=1).detach())  # (B, M)
        # A finite floor, not -inf: a row with no branch stays finite (then zeroed below).
        logits = logits.masked_fill(~branch_available, torch.finfo(logits.dtype).min)
        return logits.softmax(dim=1) * weights

    def _valid(self, name: str, masks: dict[str, Tensor], available: dict[str, Tensor]) -> Tensor:
        mask = masks[name].bool()
        if name in available:
            mask = mask & available[name].bool()[:, None]
        return mask

    def _pixels(self, name: str, pixels: Tensor) -> Tensor:
        """Check (B, V, C, H, W) against the backbone; grayscale is repeated to its channels."""
        if pixels.ndim != 5:
            raise ModelError(
                f"the intervention core reads modality '{name}' as pixels (B, V, C, H, W), got "
                f"shape {tuple(pixels.shape)}; give it a modality of kind "
                f"{' or '.join(map(repr, _pixel_kinds()))}"
            )
        patch_embed = self.backbone.vit.patch_embed
        channels = patch_embed.proj.in_channels
        if pixels.shape[2] == 1 and channels > 1:
            # Grayscale slices replicated to RGB, as the paper does for MRNet.
            pixels = pixels.expand(-1, -1, channels, -1, -1)
        if pixels.shape[2] != channels:
            raise ModelError(
                f"modality '{name}' has {pixels.shape[2]} channels but the intervention backbone "
                f"takes {channels}; set backbone_options in_chans={pixels.shape[2]}"
            )
        size = tuple(pixels.shape[-2:])
        if getattr(patch_embed, "strict_img_size", False) and size != tuple(patch_embed.img_size):
            raise ModelError(
                f"modality '{name}' has images of {size[0]}x{size[1]} but the intervention "
                f"backbone was built for {patch_embed.img_size[0]}x{patch_embed.img_size[1]}; "
                f"set backbone_options img_size={size[0]} (or resize the images in the spec)"
            )
        return pixels


def _same_frozen(own: Tensor, theirs: Tensor) -> bool:
    """Equal frozen weights; a grayscale model's first convolution holds the sum over RGB of
    this core's (timm's ``adapt_input_conv``; the core repeats gray to RGB instead)."""
    if own.shape != theirs.shape and own.ndim == 4 and theirs.shape[1] == 1:
        own = own.sum(dim=1, keepdim=True)
        return own.shape == theirs.shape and torch.allclose(own, theirs.to(own), atol=1e-6)
    return own.shape == theirs.shape and torch.equal(own, theirs.to(own))


def _pixel_kinds() -> list[str]:
    """The registered modality kinds of 2D pixel views (what the ViT reads), for messages."""
    return [kind.name for kind in modality_kinds() if kind.pixels_2d]


def _pair(source: str, target: str) -> str:
    return f"{source}_to_{target}"


def _create_vit(name: str, options: dict[str, Any], pretrained: str | Path | None) -> nn.Module:
    # timm (with torchvision and torch._dynamo, ~1.6 s) only when an image model is built.
    import timm

    if not timm.is_model(name):
        raise ModelError(
            f"unknown timm backbone {name!r} for the intervention core; choose a ViT such as "
            "'vit_base_patch16_clip_224' or 'vit_small_patch16_224'"
        )
    try:
        vit = timm.create_model(name, pretrained=False, num_classes=0, **options)
    except TypeError as error:
        raise ModelError(f"backbone {name!r} rejects backbone_options {options}: {error}") from None
    if pretrained is not None:
        load_pretrained_backbone(vit, pretrained)
    return vit
