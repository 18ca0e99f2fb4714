"""2D images through any timm backbone, as a grid of tokens (one token per feature-map cell or patch).

Several views of one sample (e.g. frontal and lateral X-ray) share the backbone; a learned view
embedding tells their tokens apart, and a missing view's tokens are masked out. Only present views
go through the backbone, so a missing view's stand-in pixels never reach BatchNorm statistics.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from polymodal.data.views import dihedral_view, dihedral_views, views_for
from polymodal.encoders.registry import register_encoder
from polymodal.encoders.stage_cache import DTYPE as STAGE_DTYPE
from polymodal.encoders.stage_cache import StageCache
from polymodal.encoders.stages import (
    StageSplit,
    parse_frozen_stages,
    run_modules,
    split_backbone,
)
from polymodal.errors import ModelError
from polymodal.freezing import (
    freeze,
    is_kept_in_eval,
    keep_frozen_parts_in_eval,
    settle_frozen_modes,
)
from polymodal.layers.weights import load_pretrained_backbone
from polymodal.slabs import Slabs

# "none", "all", "all_but_last" or "stages:K" (the stem and the first K stages; see stages.py).
Freeze = str
# Part of every feature-cache key. Caches written before frozen backbones were held in eval
# mode (version 1) mix training-mode and eval-mode features under the same weights: a new
# version never reads them.
FEATURE_CACHE_VERSION = 2
FREEZE_MODES = ("none", "all", "all_but_last")


def feature_space(backbone: nn.Module) -> str:
    """A hash of a backbone's class and weights (every parameter and buffer): frozen features
    computed by equal weights are interchangeable, any other weights get another space."""
    digest = hashlib.blake2b(type(backbone).__name__.encode(), digest_size=16)
    digest.update(f"eval-mode features v{FEATURE_CACHE_VERSION}".encode())
    for name, tensor in backbone.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class FrozenFeatureCache:
    """Backbone features of images already seen, for frozen backbones (see ``feature_cache``).

    One cache per set of backbone weights (a hash of every parameter and buffer) and folder,
    shared by all encoders built on them, so e.g. a benchmark of several fusion models over one frozen
    ImageNet backbone runs the backbone once per image. Stops storing new entries in memory
    after ``max_items`` so an augmenting pipeline cannot exhaust memory.

    With a ``folder`` the features also go to disk (``folder/<weights hash>/<image hash>``, one
    safetensors file per image), so the next process (the next ``polymodal fit`` on the same
    cohort and backbone) reads them instead of running the backbone again. ``fit`` puts them
    under the sample cache (``train.cache_dir``/``features``).

    Only a frozen backbone (:func:`polymodal.freezing.freeze`) gets a cache: it computes in eval
    mode even inside a training epoch, so every entry is the eval-mode feature of its image.

    Entries are kept in shared blocks (:mod:`polymodal.slabs`): one allocation per image,
    between a training loop's large transient buffers, fragments the C heap.
    """

    _caches: ClassVar[dict[str, FrozenFeatureCache]] = {}

    def __init__(self, max_items: int = 100_000, folder: Path | None = None) -> None:
        self.max_items = max_items
        self.folder = folder
        self.entries: dict[bytes, Tensor] = {}
        self._slabs = Slabs()
        self.hits = 0
        self.misses = 0
        self.disk_hits = 0

    @classmethod
    def for_backbone(cls, backbone: nn.Module, folder: Path | None = None) -> FrozenFeatureCache:
        """The cache of ``backbone``'s weights; the backbone must be frozen for good.

        Frozen means no trainable parameter and held in eval mode by
        :func:`polymodal.freezing.freeze`, so every cached feature is an eval-mode feature, the
        same in a training epoch as in evaluation.
        """
        if any(p.requires_grad for p in backbone.parameters()) or not is_kept_in_eval(backbone):
            raise ModelError(
                f"the frozen-feature cache needs a frozen backbone ({type(backbone).__name__} is "
                "not frozen with polymodal.freezing.freeze); its features would change as it trains"
            )
        space = feature_space(backbone)
        # One cache per weights and folder: a run with another cache_dir writes to its own.
        where = Path(folder) / space if folder is not None else None
        return cls._caches.setdefault(f"{space}@{where}", cls(folder=where))

    def _path(self, key: bytes) -> Path:
        assert self.folder is not None
        name = key.hex()
        return self.folder / name[:2] / f"{name}.safetensors"

    def _read(self, key: bytes) -> Tensor | None:
        """The feature saved on disk for ``key``, or None (absent or unreadable: recompute)."""
        if self.folder is None:
            return None
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            return load_file(str(path))["features"]
        except Exception:  # a truncated or foreign file: computing again repairs it
            return None

    def _write(self, key: bytes, feature: Tensor) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename: a reader in another process never sees half a file.
        partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
        save_file({"features": feature.contiguous()}, str(partial))
        partial.replace(path)

    @torch.no_grad()
    def features(self, images: Tensor, compute: Callable[[Tensor], Tensor]) -> Tensor:
        """(M, C, H, W) images -> (M, N, C') features, computing only the images not seen yet."""
        keys = [
            hashlib.blake2b(
                image.detach().cpu().contiguous().numpy().tobytes(), digest_size=16
            ).digest()
            for image in images
        ]
        loaded: dict[int, Tensor] = {}
        for i, key in enumerate(keys):
            if key not in self.entries and (feature := self._read(key)) is not None:
                loaded[i] = feature
                if len(self.entries) < self.max_items:
                    self.entries[key] = self._slabs.copy(feature)
        self.disk_hits += len(loaded)
        todo = [i for i, key in enumerate(keys) if key not in self.entries and i not in loaded]
        computed = compute(images[todo]) if todo else None
        fresh = dict(zip(todo, computed.unbind(0) if computed is not None else (), strict=True))
        self.hits += len(keys) - len(todo)
        self.misses += len(todo)
        for i, feature in fresh.items():
            if self.folder is not None:
                self._write(keys[i], feature.cpu())
            if len(self.entries) < self.max_items:
                self.entries[keys[i]] = self._slabs.copy(feature.cpu())
        fresh.update((i, feature.to(images.device)) for i, feature in loaded.items())
        out = [
            fresh[i] if i in fresh else self.entries[key].to(images.device)
            for i, key in enumerate(keys)
        ]
        return torch.stack(out)


@register_encoder("image_timm", kinds=("image",))
class ImageTimmEncoder(nn.Module):
    """A timm backbone's feature map (CNN) or patch tokens (ViT), one token per cell or patch.

    Inputs: ``pixels`` (B, V, C, H, W) float, ``view_mask`` (B, V) bool.
    Output: tokens (B, V·N, D) and mask (B, V·N), N = h·w cells of the final feature map (CNN) or
    the patch tokens (ViT, plus CLS/register tokens when ``prefix_tokens``); ``num_tokens`` holds N.
    Images need not be square: ``size: [150, 200]`` runs the backbone at that native aspect.

    Args:
        input_info: ``{"kind": "image", "channels": C, "size": [H, W], "views": V}``.
        dim: token width D.
        backbone: any timm model name; models with a fixed input size (ViTs) are built for
            ``input_info["size"]``.
        pretrained: a local weights file, ``package:efficientnet-lite0`` (``-lite1``,
            ``-lite2``), or None (random init).
        freeze: ``"none"``, ``"all"`` (backbone fixed, in eval mode), ``"all_but_last"`` (only the
            last stage/block trains) or ``"stages:K"`` (the stem and the first K stages are
            fixed, the later stages train: partial fine-tuning; EfficientNet(-Lite), MobileNetV3
            and ResNet families, see :mod:`polymodal.encoders.stages`). Frozen parts stay in eval
            mode whatever the trainer does (running statistics never move, no dropout): see
            :mod:`polymodal.freezing`.
        prefix_tokens: keep a ViT's CLS/register tokens among the outputs.
        feature_cache: with ``freeze="all"``: remember each image's backbone features (in
            RAM, keyed by the image's bytes and the backbone's weights), so a frozen backbone
            runs once per image rather than once per epoch. With ``freeze="stages:K"``: remember
            the frozen prefix's output per image and dihedral view, as float16
            (:mod:`polymodal.encoders.stage_cache`), so an epoch runs only the trainable stages.
            Models built on the same frozen weights share the cache. ``fit`` also keeps it on
            disk beside its sample cache, so later runs skip the frozen part. Needs the spec's
            ``augment: false`` and no ``train.mixup``/``cutmix`` (an augmented or mixed image is
            a new image every step); ``dihedral`` is the augmentation that survives caching.
        dihedral: train on a random one of the image's dihedral views (right-angle rotations
            and mirrors, :mod:`polymodal.data.views`) per sample and step, drawn from torch's
            generator (which ``fit`` seeds per epoch: runs repeat). All 8 views for square
            images, the 4 that keep the shape otherwise. Only for images with no preferred
            orientation (dermoscopy, fundus, histology; not chest X-rays). Evaluation uses
            view 0, or every view with test-time augmentation (``Predictor(tta=True)``).
        stage_cache_gb: most memory the stage cache holds (GiB); beyond it entries are read
            from disk (or recomputed without a disk folder).
        backbone_options: extra keyword arguments for ``timm.create_model`` (e.g. ``depth``).
        adapter: ``"mor"`` or ``"lora"``: inject adapters (:mod:`polymodal.adapters`) into the
            backbone and train only them (and the projection); the backbone's own weights stay
            frozen. Needs ``freeze="none"`` (the adapter decides what trains).
        adapter_options: fields of :class:`~polymodal.adapters.MoRConfig` /
            :class:`~polymodal.adapters.LoRAConfig`, e.g. ``{r: 4}`` or ``{ranks: [2, 4, 8]}``.
    """

    def __init__(
        self,
        input_info: dict[str, Any],
        dim: int,
        *,
        backbone: str = "efficientnet_lite0",
        pretrained: str | Path | None = None,
        freeze: Freeze = "none",
        feature_cache: bool = False,
        dihedral: bool = False,
        stage_cache_gb: float = 4.0,
        prefix_tokens: bool = True,
        backbone_options: dict[str, Any] | None = None,
        adapter: Literal["mor", "lora"] | None = None,
        adapter_options: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        # timm (with torchvision and torch._dynamo, ~1.6 s) only when an image model is built.
        import timm

        if not timm.is_model(backbone):
            raise ModelError(
                f"image_timm: unknown timm backbone '{backbone}'; pick a name from "
                "timm.list_models(), e.g. efficientnet_lite0 or resnet18"
            )
        frozen_stages = parse_frozen_stages(freeze)
        if freeze not in FREEZE_MODES and frozen_stages is None:
            raise ModelError(
                f"image_timm: freeze must be one of {FREEZE_MODES} or 'stages:K' (the stem and "
                f"the first K stages fixed, e.g. stages:5), got '{freeze}'"
            )
        if adapter is not None and freeze != "none":
            raise ModelError(
                f"image_timm: adapter='{adapter}' already freezes the backbone and trains the "
                f"adapters; leave freeze at 'none' (got '{freeze}')"
            )
        if feature_cache and freeze != "all" and frozen_stages is None:
            raise ModelError(
                "image_timm: feature_cache needs freeze='all' or freeze='stages:K' (a backbone "
                f"that trains changes its features every step), got freeze='{freeze}'"
            )
        if stage_cache_gb < 0:
            raise ModelError(f"image_timm: stage_cache_gb must be ≥ 0, got {stage_cache_gb}")
        self.dim = dim
        self.channels = int(input_info["channels"])
        self.size = tuple(int(s) for s in input_info["size"])
        self.views = int(input_info["views"])
        self.freeze = freeze
        self.prefix_tokens = prefix_tokens
        self.dihedral = dihedral
        # The dihedral views these images have without changing shape (8 square, else 4).
        self.dihedral_views = views_for(self.size)
        # The view evaluation uses; test-time augmentation sets each in turn (set_view).
        self.eval_view = 0

        options = dict(backbone_options or {})
        cfg = timm.models.get_pretrained_cfg(backbone)
        if cfg is not None and cfg.fixed_input_size:
            options.setdefault("img_size", self.size)
        # num_classes=0: tokens come from forward_features; the classifier would be dead weight.
        self.backbone = timm.create_model(
            backbone, pretrained=False, num_classes=0, in_chans=self.channels, **options
        )
        if pretrained is not None:
            load_pretrained_backbone(self.backbone, pretrained)
        self.num_prefix_tokens = int(getattr(self.backbone, "num_prefix_tokens", 0))
        # Tokens per view (and the cut, when partly frozen), measured once in eval mode so
        # BatchNorm statistics stay untouched.
        self.backbone.eval()
        self.split: StageSplit | None = None
        with torch.no_grad():
            probe = torch.randn(1, self.channels, *self.size, generator=torch.Generator())
            self.num_tokens = int(self._tokens(probe).shape[1])
            if frozen_stages is not None:
                self.split = split_backbone(self.backbone, frozen_stages, probe)
                prefix = run_modules(self.backbone, self.split.prefix, probe)
                self.prefix_shape = tuple(prefix.shape[1:])  # (C', h, w) of one cached entry
        self.backbone.train()
        self.proj = nn.Linear(self.backbone.num_features, dim)
        self.view_embedding = nn.Parameter(torch.zeros(self.views, dim))
        nn.init.trunc_normal_(self.view_embedding, std=0.02)
        self._freeze_backbone()
        if adapter is not None:
            self._inject_adapter(adapter, adapter_options or {})
        self.feature_cache = feature_cache
        self.stage_cache_bytes = int(stage_cache_gb * (1 << 30))
        # Where the feature cache also keeps features on disk; set by fit (not part of the
        # model's config: a property of the machine, not of the model).
        self.feature_cache_dir: Path | None = None
        # Looked up at the first forward pass, once the weights are final (see _load_from_state_dict).
        self._feature_cache: FrozenFeatureCache | None = None
        self._stage_cache: StageCache | None = None

    def _load_from_state_dict(self, *args: Any, **kwargs: Any) -> None:
        # New weights: features cached for the old ones no longer apply.
        self._feature_cache = None
        self._stage_cache = None
        super()._load_from_state_dict(*args, **kwargs)

    def __getstate__(self) -> dict[str, Any]:
        # A copy (e.g. the weight EMA's deepcopy) finds the shared cache of its weights again
        # rather than duplicating gigabytes of cached tensors.
        state = dict(self.__dict__)
        state["_feature_cache"] = state["_stage_cache"] = None
        return state

    def _freeze_backbone(self) -> None:
        """Frozen parts get no gradient and stay in eval mode (BatchNorm statistics, dropout)
        whatever mode the trainer sets (:mod:`polymodal.freezing`)."""
        if self.freeze == "all":
            freeze(self.backbone)
        elif self.freeze == "all_but_last":
            # timm's coarse groups are stem, stages/blocks...; the last group holds the final
            # stage or block together with what follows it (conv_head, final norm).
            from timm.models import group_parameters

            groups = group_parameters(self.backbone, self.backbone.group_matcher(coarse=True))
            trainable = set(groups[max(groups)])
            for name, parameter in self.backbone.named_parameters():
                parameter.requires_grad_(name in trainable)
            keep_frozen_parts_in_eval(self.backbone)
        elif self.split is not None:
            for name in self.split.prefix:
                freeze(self.backbone.get_submodule(name))

    def _inject_adapter(self, adapter: str, options: dict[str, Any]) -> None:
        """Adapters into the backbone's linear layers; everything else in it is frozen."""
        from polymodal.adapters import (
            LoRAConfig,
            MoRConfig,
            freeze_except_adapters,
            inject_adapters,
        )

        configs = {"mor": MoRConfig, "lora": LoRAConfig}
        if adapter not in configs:
            raise ModelError(f"image_timm: adapter must be 'mor' or 'lora', got '{adapter}'")
        try:
            config = configs[adapter](**options)
        except TypeError as error:
            raise ModelError(
                f"image_timm: adapter_options {options} do not fit {adapter}: {error}"
            ) from None
        inject_adapters(self.backbone, config, adapter_name=adapter)
        freeze_except_adapters(self.backbone)  # frozen layers also stay in eval mode

    def train(self, mode: bool = True) -> ImageTimmEncoder:
        """Switch modes; frozen parts of the backbone keep eval mode (fixed BN statistics).

        Only for truthful flags: the frozen parts compute in eval mode even when a trainer sets
        their flags directly (see :mod:`polymodal.freezing`).
        """
        super().train(mode)
        settle_frozen_modes(self)
        return self

    def _flat_pixels(self, pixels: Tensor) -> Tensor:
        """(B, V, C, H, W) -> (B·V, C, H, W), checked against the shape this encoder was built for."""
        batch, views, channels, height, width = pixels.shape
        if (views, channels, (height, width)) != (self.views, self.channels, self.size):
            raise ModelError(
                f"image_timm was built for {self.views} view(s) of {self.channels}×"
                f"{self.size[0]}×{self.size[1]} images but got {views} view(s) of "
                f"{channels}×{height}×{width}; encode with the preprocessing state it was fitted with"
            )
        return pixels.reshape(batch * views, channels, height, width)

    def _given_features(self, features: Tensor) -> Tensor:
        """(B, V, N, C') frozen tokens -> (B·V, N, C'), checked against this backbone."""
        if not self.takes_frozen_features:
            raise ModelError(
                "image_timm got precomputed features but its backbone is not frozen for good "
                "(freeze: all, feature_cache: true, no dihedral views); give it pixels"
            )
        expected = (self.views, *self.feature_shape)
        if tuple(features.shape[1:]) != expected:
            raise ModelError(
                f"image_timm expects frozen features of shape (B, {', '.join(map(str, expected))}),"
                f" got {tuple(features.shape)}"
            )
        return features.reshape(-1, *self.feature_shape)

    def _project(
        self, inputs: Tensor, present: Tensor, backbone: Callable[[Tensor], Tensor]
    ) -> Tensor:
        """Tokens (B·V, N, D) from every view's inputs (B·V, ...): ``backbone`` gives the
        present views' (P, N, C') tokens, projected to D; absent views stay zero."""
        rows = present.shape[0]
        if torch.compiler.is_exporting():
            # A graph has no data-dependent row count: every view goes through the backbone
            # (in eval mode one image's tokens never depend on another's), absent ones zeroed.
            tokens = self.proj(backbone(inputs))  # (B·V, N, D)
            return torch.where(present[:, None, None], tokens, torch.zeros_like(tokens))
        if not bool(present.any()):
            return inputs.new_zeros(rows, self.num_tokens, self.dim)
        present_tokens = self.proj(backbone(inputs[present]))  # (P, N, D)
        # Zeros in the tokens' own dtype: under autocast they need not be float32.
        tokens = present_tokens.new_zeros(rows, self.num_tokens, self.dim)
        return tokens.index_put((present,), present_tokens)  # (B·V, N, D)

    def set_view(self, view: int) -> None:
        """Evaluate on dihedral view ``view`` of every image (test-time augmentation)."""
        if view not in self.dihedral_views:
            raise ModelError(
                f"image_timm: {self.size[0]}×{self.size[1]} images have views "
                f"{list(self.dihedral_views)}, not {view}"
            )
        self.eval_view = view

    def _views(self, count: int) -> Tensor:
        """The dihedral view (count,) of each image: random in training with ``dihedral``,
        else ``eval_view``."""
        if self.training and self.dihedral:
            choices = torch.tensor(self.dihedral_views)
            return choices[torch.randint(len(choices), (count,))]
        return torch.full((count,), self.eval_view, dtype=torch.long)

    def _as_tokens(self, features: Tensor) -> Tensor:
        """A backbone's ``forward_features`` output -> (M, N, C') tokens."""
        if features.ndim == 4:
            if getattr(self.backbone, "output_fmt", "NCHW") == "NHWC":  # e.g. Swin
                features = features.permute(0, 3, 1, 2)
            return features.flatten(2).transpose(1, 2)  # (M, C', h, w) -> (M, h·w, C')
        if not self.prefix_tokens:
            features = features[:, self.num_prefix_tokens :]
        return features  # (M, N, C')

    def _tokens(self, images: Tensor) -> Tensor:
        """(M, C, H, W) images -> (M, N, C') backbone tokens."""
        return self._as_tokens(self.backbone.forward_features(images))

    @torch.no_grad()
    def _prefix(self, images: Tensor, views: Tensor) -> Tensor:
        """The frozen prefix's output (M, C', h, w) float16 of each image in its view."""
        assert self.split is not None
        return run_modules(self.backbone, self.split.prefix, dihedral_views(images, views)).to(
            STAGE_DTYPE
        )

    def prefix_features(self, images: Tensor, views: Tensor) -> Tensor:
        """(M, C, H, W) images in ``views`` (M,) -> the frozen prefix's output (M, C', h, w),
        float16 (cached or not, the suffix sees the same values), from the stage cache if
        enabled."""
        if not self.feature_cache:
            return self._prefix(images, views)
        if self._stage_cache is None:
            assert self.split is not None
            self._stage_cache = StageCache.for_prefix(
                self.backbone, self.split.prefix, self.feature_cache_dir
            )
            self._stage_cache.max_bytes = self.stage_cache_bytes
        # Training draws a random view per step: a missed image gets all its views at once.
        fill = self.dihedral_views if self.training and self.dihedral else ()
        return self._stage_cache.features(
            images, views, self._prefix, self.prefix_shape, fill_views=fill
        )

    def backbone_features(self, images: Tensor) -> Tensor:
        """(M, C, H, W) images -> (M, N, C') backbone tokens, each image in its dihedral view
        (see ``dihedral``), from the feature or stage cache if enabled."""
        if torch.compiler.is_exporting():
            return self._exported_features(images)
        views = self._views(len(images))
        if self.split is not None:
            prefix = self.prefix_features(images, views).to(images.dtype)
            return self._as_tokens(run_modules(self.backbone, self.split.suffix, prefix))
        images = dihedral_views(images, views)
        if not self.feature_cache:
            return self._tokens(images)
        if self._feature_cache is None:
            self._feature_cache = FrozenFeatureCache.for_backbone(
                self.backbone, self.feature_cache_dir
            )
        return self._feature_cache.features(images, self._tokens)

    def _exported_features(self, images: Tensor) -> Tensor:
        """:meth:`backbone_features` as an exported graph computes it: every image in
        ``eval_view``, no cache (a graph cannot look features up; the cached ones are these)."""
        if self.eval_view:
            images = dihedral_view(images, self.eval_view)
        if self.split is None:
            return self._tokens(images)
        # The float16 round trip of the stage cache, so the suffix sees the same values.
        prefix = run_modules(self.backbone, self.split.prefix, images).to(STAGE_DTYPE)
        return self._as_tokens(
            run_modules(self.backbone, self.split.suffix, prefix.to(images.dtype))
        )

    @property
    def takes_frozen_features(self) -> bool:
        """Whether a dataset may hand this encoder its backbone's tokens instead of pixels
        (``features``, see :mod:`polymodal.data.feature_store`): the whole backbone is frozen
        for good and every image is seen in one view, so an image's tokens never change."""
        return (
            self.freeze == "all"
            and self.feature_cache
            and not self.dihedral
            and self.split is None
            and not any(p.requires_grad for p in self.backbone.parameters())
        )

    @property
    def feature_shape(self) -> tuple[int, int]:
        """(N, C'): the backbone tokens of one image, before the projection to D."""
        return self.num_tokens, int(self.backbone.num_features)

    def frozen_features(self, pixels: Tensor) -> Tensor:
        """Images (M, C, H, W) -> their frozen backbone tokens (M, N, C'), eval mode."""
        with torch.no_grad():
            return self._tokens(pixels.to(self.proj.weight.device)).cpu()

    def forward(self, inputs: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """``pixels`` (B, V, C, H, W) or, with a frozen backbone, its tokens ``features``
        (B, V, N, C'); ``view_mask`` (B, V) -> tokens (B, V·N, D), mask (B, V·N)."""
        view_mask = inputs["view_mask"].bool()
        batch, views = view_mask.shape
        present = view_mask.reshape(-1)
        if "features" in inputs:
            backbone_tokens = self._given_features(inputs["features"])  # (B·V, N, C')
            tokens = self._project(backbone_tokens, present, lambda t: t)
        else:
            flat_pixels = self._flat_pixels(inputs["pixels"])  # (B·V, C, H, W)
            tokens = self._project(flat_pixels, present, self.backbone_features)
        num_tokens = self.num_tokens
        tokens = tokens.reshape(batch, views, num_tokens, self.dim)
        tokens = tokens + self.view_embedding[None, :, None, :] * view_mask[..., None, None]
        mask = view_mask.repeat_interleave(num_tokens, dim=1)  # (B, V·N)
        return tokens.reshape(batch, views * num_tokens, self.dim), mask
