"""The ready configs shipped with polymodal (``polymodal/configs``: run configs such as
``ham10000_cpu``, ``ablations/pb``, ``ei/mor``, and cohort specs such as ``ham10000``), found by
name in a checkout and in an installed wheel alike.

In a checkout ``src/polymodal/configs`` is a link to the repository's ``configs/`` folder;
the wheel carries the files themselves (package data).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml

from polymodal.errors import SpecError

SUFFIX = ".yaml"


def configs_folder() -> Path:
    """The folder of the ready configs."""
    return Path(str(resources.files("polymodal") / "configs"))


def ready_configs() -> dict[str, Path]:
    """``{name: path}`` of every ready config, the name being its path below the folder
    without ``.yaml`` (``ham10000_cpu``, ``ablations/pb``), sorted by name."""
    folder = configs_folder()
    paths = sorted(folder.rglob(f"*{SUFFIX}")) if folder.is_dir() else []
    return {p.relative_to(folder).as_posix().removesuffix(SUFFIX): p for p in paths}


def find_config(name: str) -> Path:
    """The ready config called ``name`` (``ham10000_cpu`` or ``ham10000_cpu.yaml``).

    Raises:
        SpecError: no ready config has that name; the message lists those that exist.
    """
    configs = ready_configs()
    key = name.removesuffix(SUFFIX)
    if key not in configs:
        raise SpecError(
            f"{name}: no ready config of that name; the ready configs are: "
            f"{', '.join(configs) or 'none (the package has no configs folder)'}"
        )
    return configs[key]


def config_kind(path: Path) -> str:
    """``'cohort spec'`` (it names a manifest) or ``'run config'``."""
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return "cohort spec" if isinstance(data, dict) and "manifest" in data else "run config"


def summary(path: Path) -> str:
    """The first line of the config's leading comment ('' without one)."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            return ""
        text = line.lstrip("#").strip()
        if text:
            return text
    return ""
