"""The encoder registry: one factory for every modality encoder, the way timm has ``create_model``.

An encoder turns one modality's batch fields (see :mod:`polymodal.data.batch`) into tokens::

    encoder = create_encoder("tabular_tokens", input_info=info, dim=64)
    tokens, mask = encoder(batch["inputs"]["labs"])   # (B, N, 64) float, (B, N) bool, True = valid

Each encoder class registers itself with :func:`register_encoder`; its constructor takes
``input_info`` (a dict from the fitted preprocessing state, keys per kind in
:data:`INPUT_INFO_KEYS`), ``dim`` (the token width D) and keyword-only options.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from torch import nn

from polymodal.errors import ModelError

KINDS = ("image", "volume", "tabular", "text", "series")

# Keys every `input_info` of a kind carries (besides "kind"), as the preprocessing state writes them.
INPUT_INFO_KEYS: dict[str, tuple[str, ...]] = {
    "image": ("channels", "size", "views"),
    "volume": ("size",),
    "tabular": ("numeric", "categorical"),
    "text": ("vocab_size", "pad_id", "max_tokens", "tokenizer"),
    "series": ("channels", "max_steps"),
}

_DEFAULTS = {
    "image": "image_timm",
    "volume": "volume_patch",
    "tabular": "tabular_tokens",
    "text": "text_transformer",
    "series": "series_tokens",
}


@dataclass(frozen=True)
class _Entry:
    factory: Callable[..., nn.Module]
    kinds: tuple[str, ...]


_ENCODERS: dict[str, _Entry] = {}

EncoderT = TypeVar("EncoderT", bound=Callable[..., nn.Module])


def register_encoder(name: str, kinds: Iterable[str]) -> Callable[[EncoderT], EncoderT]:
    """Class decorator: make an encoder available to :func:`create_encoder` as ``name``.

    ``kinds`` lists the modality kinds it encodes. Registering a name twice is a bug and raises.
    """
    kinds = tuple(kinds)
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"encoder '{name}': unknown kinds {unknown}; kinds are {list(KINDS)}")

    def decorate(factory: EncoderT) -> EncoderT:
        if name in _ENCODERS:
            raise ValueError(f"encoder '{name}' is registered twice")
        _ENCODERS[name] = _Entry(factory=factory, kinds=kinds)
        return factory

    return decorate


def list_encoders(kind: str | None = None) -> list[str]:
    """Sorted names of the registered encoders, only those for ``kind`` when given."""
    return sorted(n for n, e in _ENCODERS.items() if kind is None or kind in e.kinds)


def encoder_kinds(name: str) -> tuple[str, ...]:
    """The modality kinds encoder ``name`` accepts."""
    return _entry(name).kinds


def default_encoder(kind: str) -> str:
    """The encoder a modality of ``kind`` gets when the config names none."""
    if kind not in _DEFAULTS:
        raise ModelError(f"unknown modality kind '{kind}'; kinds are: {', '.join(KINDS)}")
    return _DEFAULTS[kind]


def create_encoder(name: str, *, input_info: dict[str, Any], dim: int, **options: Any) -> nn.Module:
    """Build encoder ``name`` for a modality described by ``input_info``, with token width ``dim``.

    Raises :class:`ModelError` for an unknown name (listing the known ones), an encoder used for a
    kind it does not encode, an ``input_info`` without the keys its kind needs, or an option the
    encoder does not take (listing the ones it does).
    """
    entry = _entry(name)
    kind = input_info.get("kind") if isinstance(input_info, dict) else None
    if kind not in KINDS:
        raise ModelError(
            f"encoder '{name}': input_info must be a dict with 'kind' one of {', '.join(KINDS)}; "
            f"got {input_info!r}"
        )
    if kind not in entry.kinds:
        raise ModelError(
            f"encoder '{name}' encodes {'/'.join(entry.kinds)} inputs, not {kind}; "
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
    accepted = _keyword_options(entry.factory)
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ModelError(
            f"encoder '{name}' has no option {', '.join(repr(u) for u in unknown)}; "
            f"its options are: {', '.join(accepted) or '(none)'}"
        )
    return entry.factory(input_info, dim, **options)


def _entry(name: str) -> _Entry:
    if name not in _ENCODERS:
        raise ModelError(f"unknown encoder '{name}'; known encoders: {', '.join(list_encoders())}")
    return _ENCODERS[name]


def _keyword_options(factory: Callable[..., nn.Module]) -> list[str]:
    """Names of the keyword-only parameters of an encoder's constructor (its options)."""
    signature = inspect.signature(factory)
    return [
        p.name for p in signature.parameters.values() if p.kind is inspect.Parameter.KEYWORD_ONLY
    ]
