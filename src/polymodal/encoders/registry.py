"""The encoder registry: one factory for every modality encoder, the way timm has ``create_model``.

An encoder turns one modality's batch fields (see :mod:`polymodal.data.batch`) into tokens::

    encoder = create_encoder("tabular_tokens", input_info=info, dim=64)
    tokens, mask = encoder(batch["inputs"]["labs"])   # (B, N, 64) float, (B, N) bool, True = valid

Each encoder class registers itself with :func:`register_encoder`; its constructor takes
``input_info`` (a dict from the fitted preprocessing state, keys per kind in
:data:`INPUT_INFO_KEYS`), ``dim`` (the token width D) and keyword-only options.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from torch import nn

from polymodal import modalities
from polymodal.errors import ModelError
from polymodal.registry import Registry

# The modality kinds, and per kind the keys every `input_info` carries (besides "kind") as the
# preprocessing state writes them: both declared by the kinds (polymodal.modalities).
KINDS = tuple(modalities.MODALITIES.names())
INPUT_INFO_KEYS: dict[str, tuple[str, ...]] = {k.name: k.info_keys for k in modalities.kinds()}


ENCODERS: Registry[Callable[..., nn.Module]] = Registry(
    "encoder", config_key="model.encoders.<modality>.name"
)

EncoderT = TypeVar("EncoderT", bound=Callable[..., nn.Module])


def register_encoder(name: str, kinds: Iterable[str]) -> Callable[[EncoderT], EncoderT]:
    """Class decorator: make an encoder available to :func:`create_encoder` as ``name``.

    ``kinds`` lists the modality kinds it encodes. Registering a name twice is a bug and raises.
    """
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"encoder '{name}': unknown kinds {unknown}; kinds are {list(KINDS)}")
    return ENCODERS.register(name, kinds=kinds)


def list_encoders(kind: str | None = None) -> list[str]:
    """Sorted names of the registered encoders, only those for ``kind`` when given."""
    return [n for n in ENCODERS.names() if kind is None or kind in ENCODERS.meta(n)["kinds"]]


def encoder_kinds(name: str) -> tuple[str, ...]:
    """The modality kinds encoder ``name`` accepts."""
    return ENCODERS.meta(name)["kinds"]


def default_encoder(kind: str) -> str:
    """The encoder a modality of ``kind`` gets when the config names none."""
    if kind not in KINDS:
        raise ModelError(f"unknown modality kind '{kind}'; kinds are: {', '.join(KINDS)}")
    return modalities.get(kind).default_encoder


def create_encoder(name: str, *, input_info: dict[str, Any], dim: int, **options: Any) -> nn.Module:
    """Build encoder ``name`` for a modality described by ``input_info``, with token width ``dim``.

    Raises :class:`ModelError` for an unknown name (listing the known ones), an encoder used for a
    kind it does not encode, an ``input_info`` without the keys its kind needs, or an option the
    encoder does not take (listing the ones it does).
    """
    kinds = encoder_kinds(name)
    kind = input_info.get("kind") if isinstance(input_info, dict) else None
    if kind not in KINDS:
        raise ModelError(
            f"encoder '{name}': input_info must be a dict with 'kind' one of {', '.join(KINDS)}; "
            f"got {input_info!r}"
        )
    if kind not in kinds:
        raise ModelError(
            f"encoder '{name}' encodes {'/'.join(kinds)} inputs, not {kind}; "
            f"encoders for {kind}: {', '.join(list_encoders(kind))}"
        )
    missing = [key for key in INPUT_INFO_KEYS[kind] if key not in input_info]
    if missing:
        raise ModelError(
            f"encoder '{name}': input_info for a {kind} modality lacks {missing}; "
            "refit the preprocessing state so it describes this modality"
        )
    if not isinstance(dim, int) or isinstance(dim, bool) or dim <= 0:
        raise ModelError(f"encoder '{name}': dim must be a positive integer, got {dim!r}")
    ENCODERS.check_options(name, options)
    return ENCODERS.get(name)(input_info, dim, **options)
