"""The default search space of a base run config: its core's space plus its plugins' weights.

The spaces ship as package data under ``polymodal/tuning/spaces/``: ``<core>.yaml`` per fusion
core (``generic.yaml`` for a core without one) and ``plugins.yaml``, whose keys join for the
training-plugin sections the base config has. Copy one as the start of a ``--space`` file.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from polymodal.training.plugins import PLUGINS
from polymodal.training.run_config import RunConfig
from polymodal.tuning.space import SearchSpace, parse_space


def spaces_folder() -> Path:
    """The folder of the shipped space files."""
    return Path(str(resources.files("polymodal.tuning") / "spaces"))


def default_space(run: RunConfig) -> tuple[SearchSpace, list[Path]]:
    """The space ``polymodal tune`` searches without ``--space``, and the files it came from."""
    folder = spaces_folder()
    core_file = folder / f"{run.model.core}.yaml"
    if not core_file.is_file():
        core_file = folder / "generic.yaml"
    absent = {name for name in PLUGINS.names() if getattr(run, name) is None}
    plugins_file = folder / "plugins.yaml"
    space = _read(core_file).merged(_read(plugins_file).without_sections(absent))
    return space, [core_file, plugins_file]


def _read(path: Path) -> SearchSpace:
    return parse_space(yaml.safe_load(path.read_text()), str(path))
