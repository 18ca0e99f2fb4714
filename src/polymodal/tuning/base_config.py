"""The run config a search starts from, and each trial's config: the base with its values.

The base is what ``polymodal fit`` would read (a run config file and ``--set`` overrides); a
trial's values are more dotted overrides on top, so every trial, and the best one written as
``best.yaml``, is checked by :func:`polymodal.training.run_config.load_run_config` exactly like a
hand-written run config.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from polymodal.errors import PolymodalError, SpecError
from polymodal.fusion.registry import CORES
from polymodal.training.plugins import PLUGINS
from polymodal.training.run_config import RunConfig, apply_override, load_run_config
from polymodal.tuning.space import SearchSpace


def dotted(key: str, value: Any) -> str:
    """``key=value`` as ``--set`` takes it: the value written as YAML (``1.0e-05``, not the
    ``1e-05`` that YAML would read as a string)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6).strip()
    return f"{key}={text.removesuffix('...').strip()}"


@dataclass(frozen=True)
class BaseConfig:
    """A run config file (optional) and dotted overrides: the search's starting point."""

    path: Path | None = None
    overrides: tuple[str, ...] = ()

    def load(
        self, values: dict[str, Any] | None = None, extra: list[str] | None = None
    ) -> RunConfig:
        """The base with ``values`` (``{dotted key: value}``) and ``extra`` overrides applied.

        Raises:
            SpecError: the result is not a valid run config (the message names the key), or
                its fusion core does not take one of its ``core_options``.
        """
        sets = [dotted(k, v) for k, v in (values or {}).items()]
        run = load_run_config(self.path, [*self.overrides, *sets, *(extra or [])])
        try:
            CORES.check_options(
                run.model.core, run.model.core_options, exclude=("modalities", "dim")
            )
        except PolymodalError as err:
            raise SpecError(f"model.core_options: {err}") from None
        if run.train.devices != 1 or run.train.num_nodes != 1:
            # A trial's pruning stops one process; the other ranks of a multi-process fit would
            # wait for it forever.
            raise SpecError(
                f"train.devices={run.train.devices}, train.num_nodes={run.train.num_nodes}: "
                "polymodal tune fits every trial in one process on one device; set both to 1"
            )
        return run

    def check_space(self, space: SearchSpace, where: str) -> None:
        """Every key of ``space`` at each of its extreme values gives a valid run config.

        Raises:
            SpecError: naming ``where`` (the space file) and the first key that does not: a key
                the run config has not, a plugin section the base config lacks, or a value the
                run config refuses.
        """
        base = self.load()
        for key, param in space.root.items():
            section = key.split(".")[0]
            if section in PLUGINS.names() and getattr(base, section) is None:
                raise SpecError(
                    f"{where}: {key}: the base run config has no {section!r} section; add it "
                    f"(-c FILE or --set {section}.KEY=VALUE) or drop {key} from the space"
                )
            for value in param.extremes():
                try:
                    self.load({key: value})
                except SpecError as err:
                    reason = "; ".join(line.strip() for line in str(err).splitlines()[1:])
                    raise SpecError(
                        f"{where}: {key} = {value!r} is not a valid run config value: "
                        f"{reason or err}"
                    ) from None

    def as_yaml(self, values: dict[str, Any], header: list[str]) -> str:
        """The base config file's content with the overrides and ``values`` applied, as a run
        config YAML text (``header`` lines become comments on top)."""
        data: dict[str, Any] = {}
        if self.path is not None:
            data = yaml.safe_load(Path(self.path).read_text()) or {}
        for item in [*self.overrides, *(dotted(k, v) for k, v in values.items())]:
            apply_override(data, item)
        comments = "".join(f"# {line}\n" for line in header)
        return comments + yaml.safe_dump(data, sort_keys=False)
