"""A search space: which run-config keys a search varies, and over what values.

A space file is YAML, one dotted run-config key (as ``--set`` takes it) per entry::

    train.lr:                   {type: float, low: 1.0e-4, high: 3.0e-3, log: true}
    model.dim:                  {type: categorical, choices: [64, 128, 256]}
    model.core_options.depth:   {type: int, low: 1, high: 4}
    model.modality_dropout:     {type: float, low: 0.0, high: 0.5, step: 0.05}

``float`` and ``int`` draw from ``[low, high]`` (``log: true`` on a log scale, ``step`` on a
grid); ``categorical`` picks one of ``choices`` (numbers, strings, booleans, null, or lists).
Whether a key exists in the run config is checked against the base config
(:func:`polymodal.tuning.base_config.BaseConfig.check_space`), not here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, model_validator

from polymodal.errors import SpecError


class ParamSpace(BaseModel):
    """The values one run-config key may take."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["float", "int", "categorical"]
    low: float | None = Field(None, description="Lower bound (float, int), inclusive.")
    high: float | None = Field(None, description="Upper bound (float, int), inclusive.")
    log: bool = Field(False, description="Draw on a log scale (float, int; low > 0).")
    step: float | None = Field(None, gt=0, description="Grid step (float, int); not with log.")
    choices: list[Any] | None = Field(None, min_length=1, description="Categorical values.")

    @model_validator(mode="after")
    def _fits_its_type(self) -> ParamSpace:
        if self.type == "categorical":
            if self.choices is None:
                raise ValueError("a categorical parameter needs 'choices'")
            if self.low is not None or self.high is not None or self.log:
                raise ValueError("a categorical parameter takes 'choices' only, not low/high/log")
            return self
        if self.choices is not None:
            raise ValueError(f"{self.type!r} takes low/high, not 'choices'; use 'categorical'")
        if self.low is None or self.high is None:
            raise ValueError(f"type {self.type!r} needs 'low' and 'high'")
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) is above high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError(f"log: true needs low > 0 (got {self.low})")
        if self.log and self.step is not None:
            raise ValueError("log and step cannot be combined")
        if self.type == "int" and not all(
            float(v).is_integer() for v in (self.low, self.high, self.step or 1)
        ):
            raise ValueError("an int parameter needs whole-number low, high and step")
        return self

    def extremes(self) -> list[Any]:
        """The values that bound this parameter (every choice; low and high): each must give a
        valid run config."""
        if self.type == "categorical":
            return list(self.choices or [])
        cast = int if self.type == "int" else float
        return [cast(self.low), cast(self.high)]

    def suggest(self, trial: Any, key: str) -> Any:
        """Draw this parameter's value for an Optuna ``trial`` under the name ``key``."""
        if self.type == "categorical":
            return trial.suggest_categorical(key, self.choices)
        if self.type == "int":
            step = int(self.step or 1)
            return trial.suggest_int(key, int(self.low), int(self.high), step=step, log=self.log)
        return tidy(trial.suggest_float(key, self.low, self.high, step=self.step, log=self.log))


class SearchSpace(RootModel[dict[str, ParamSpace]]):
    """``{dotted run-config key: ParamSpace}``, in file order."""

    def names(self) -> list[str]:
        """The dotted run-config keys searched, in file order."""
        return list(self.root)

    def suggest(self, trial: Any) -> dict[str, Any]:
        """One value per key, drawn for ``trial``: ``{dotted key: value}``."""
        return {key: param.suggest(trial, key) for key, param in self.root.items()}

    def without_sections(self, sections: set[str]) -> SearchSpace:
        """The space less the keys under any of ``sections`` (e.g. absent plugin sections)."""
        return SearchSpace({k: p for k, p in self.root.items() if k.split(".")[0] not in sections})

    def merged(self, other: SearchSpace) -> SearchSpace:
        """This space with ``other``'s keys added (``other`` wins on a shared key)."""
        return SearchSpace({**self.root, **other.root})

    def record(self) -> dict[str, Any]:
        """The space as JSON values (as a space file would hold it)."""
        return {k: p.model_dump(exclude_defaults=True) for k, p in self.root.items()}


def tidy(value: Any) -> Any:
    """A drawn float as a run config would hold it: 0.35 rather than the 0.35000000000000003
    that ``low + k·step`` gives (12 significant digits; other values as they are)."""
    return float(f"{value:.12g}") if isinstance(value, float) else value


def load_space(path: Path) -> SearchSpace:
    """Read and check a space file.

    Raises:
        SpecError: the file is missing or not YAML, or an entry is not a valid parameter; the
            message names the file, the key and the field.
    """
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: search space file not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise SpecError(f"{path}: not valid YAML: {err}") from None
    if not isinstance(data, dict) or not data:
        raise SpecError(
            f"{path}: expected a mapping of dotted run-config keys to parameters, e.g. "
            "'train.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}'"
        )
    return parse_space(data, str(path))


def parse_space(data: dict[str, Any], where: str) -> SearchSpace:
    """A :class:`SearchSpace` from a space file's mapping; errors name ``where`` and the key."""
    try:
        return SearchSpace.model_validate(data)
    except ValidationError as err:
        lines = [f"{where}: not a valid search space:"]
        for error in err.errors():
            loc = [str(p) for p in error["loc"]]
            key, field = loc[0] if loc else "", ".".join(loc[1:])
            if error["type"] == "extra_forbidden":
                fields = ", ".join(ParamSpace.model_fields)
                lines.append(f"  {key}: unknown field {field!r}; a parameter takes: {fields}")
            else:
                message = error["msg"].removeprefix("Value error, ")
                lines.append(f"  {key}{'.' + field if field else ''}: {message}")
        raise SpecError("\n".join(lines)) from None
