"""One registry for every family of plug-ins: target kinds, modality kinds, encoders, fusion cores
and training plugins (the timm pattern, once).

A family makes one :class:`Registry`; each unit registers itself under a name, with optional
metadata, and the rest of polymodal asks the registry::

    CORES = Registry("fusion core", config_key="model.core")

    @CORES.register("mean")
    class MeanCore(nn.Module): ...

    CORES.names()                         # ['mean', ...]
    CORES.get("mean")                     # the class
    CORES.create("mean", dim=64)          # checks the keyword-only options first

Every lookup of an unknown name and every unknown option raises the family's error class
(a :class:`~polymodal.errors.PolymodalError`, so the CLI prints it and exits 2) with a message
that lists the valid names or options and says which config key to change.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Generic, TypeVar

from polymodal.errors import ModelError, PolymodalError

T = TypeVar("T")


@dataclass(frozen=True)
class Entry(Generic[T]):
    """One registered unit: its name, the object (class or factory) and free-form metadata."""

    name: str
    obj: T
    meta: Mapping[str, Any] = field(default_factory=dict)


class Registry(Generic[T]):
    """Name → unit for one family of plug-ins.

    Args:
        family: what the units are, for messages ("fusion core", "target kind").
        config_key: where a user names a unit ("model.core", "targets.<name>.kind"), for messages.
        error: the error class raised for an unknown name or option.
    """

    def __init__(
        self, family: str, *, config_key: str = "", error: type[PolymodalError] = ModelError
    ) -> None:
        self.family = family
        self.config_key = config_key
        self.error = error
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, **meta: Any) -> Callable[[T], T]:
        """Decorator: register the decorated class or factory as ``name`` with ``meta``.

        Registering a different object under a taken name is a programming error (ValueError);
        registering the same object again (a module imported twice) is a no-op.
        """
        if not name or not isinstance(name, str):
            raise ValueError(f"a {self.family} needs a non-empty string name, got {name!r}")

        def decorate(obj: T) -> T:
            old = self._entries.get(name)
            if old is not None and old.obj is not obj:
                raise ValueError(f"a {self.family} named {name!r} is already registered")
            self._entries[name] = Entry(name=name, obj=obj, meta=MappingProxyType(dict(meta)))
            return obj

        return decorate

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, name: str) -> Entry[T]:
        """The entry for ``name``; the family's error, listing the known names, if there is none."""
        if name not in self._entries:
            where = f" Set {self.config_key} to one of them." if self.config_key else ""
            known = ", ".join(self.names()) or "(none registered)"
            raise self.error(
                f"unknown {self.family} {name!r}; known {self.family}s: {known}.{where}"
            )
        return self._entries[name]

    def get(self, name: str) -> T:
        """The class or factory registered as ``name``."""
        return self.entry(name).obj

    def meta(self, name: str) -> Mapping[str, Any]:
        """The metadata ``name`` was registered with (read-only)."""
        return self.entry(name).meta

    def options(self, name: str, *, exclude: tuple[str, ...] = ()) -> list[str]:
        """The keyword-only parameters of ``name``'s constructor: the options a user may set."""
        return keyword_options(self.get(name), exclude=exclude)

    def check_options(
        self, name: str, options: Mapping[str, Any], *, exclude: tuple[str, ...] = ()
    ) -> None:
        """Raise the family's error naming every option ``name`` does not accept (and the ones it
        does)."""
        accepted = self.options(name, exclude=exclude)
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise self.error(
                f"{self.family} {name!r} has no option {', '.join(map(repr, unknown))}; "
                f"it accepts: {', '.join(accepted) or 'no options'}"
            )

    def create(self, name: str, /, *args: Any, **options: Any) -> Any:
        """Build ``name`` with positional ``args`` and keyword ``options`` after checking the
        options against its keyword-only parameters."""
        self.check_options(name, options)
        return self.get(name)(*args, **options)

    def items(self) -> list[tuple[str, T]]:
        """(name, object) for every registered unit, sorted by name."""
        return [(n, self._entries[n].obj) for n in self.names()]


def keyword_options(factory: Callable[..., Any], *, exclude: tuple[str, ...] = ()) -> list[str]:
    """Names of the keyword-only parameters of ``factory`` (a class: its ``__init__``)."""
    return [
        p.name
        for p in inspect.signature(factory).parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name not in exclude
    ]
