"""Packaging: the ready configs are found by name (``polymodal configs``) in a checkout, and the
wheel carries them, with its version and SPDX licence metadata."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from polymodal.cli import app
from polymodal.errors import SpecError
from polymodal.ready_configs import find_config, ready_configs
from polymodal.training.run_config import load_run_config

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _repository_configs() -> set[str]:
    folder = REPO / "configs"
    return {p.relative_to(folder).as_posix().removesuffix(".yaml") for p in folder.rglob("*.yaml")}


def test_every_config_of_the_repository_is_a_ready_config() -> None:
    assert set(ready_configs()) == _repository_configs()
    assert {"ham10000_cpu", "ablations/pb", "ei/mor"} <= set(ready_configs())


def test_configs_lists_names_kinds_and_summaries() -> None:
    result = runner.invoke(app, ["configs"])
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines()}
    assert set(lines) == _repository_configs()
    assert "run config" in lines["ham10000_cpu"] and "HAM10000 on a CPU" in lines["ham10000_cpu"]
    assert "cohort spec" in lines["ham10000"]


def test_a_config_is_found_by_name_and_loads_as_a_run_config() -> None:
    result = runner.invoke(app, ["configs", "ham10000_cpu", "--path"])
    assert result.exit_code == 0, result.output
    path = Path(result.output.strip())
    assert path == find_config("ham10000_cpu.yaml")
    assert load_run_config(path).model.core == "synergy"
    text = runner.invoke(app, ["configs", "ablations/pb"]).output
    assert yaml.safe_load(text) == yaml.safe_load((REPO / "configs/ablations/pb.yaml").read_text())


def test_an_unknown_name_lists_the_ready_configs() -> None:
    with pytest.raises(SpecError, match=r"ham10000_gpus: no ready config .*ham10000_gpu"):
        find_config("ham10000_gpus")


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("setuptools_scm") is None,
    reason="setuptools-scm (a dev extra) is not installed: the wheel cannot be built offline",
)
def test_the_wheel_carries_the_configs_version_and_licence(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "configs", source / "configs")
    # symlinks=True keeps src/polymodal/configs the link to ../../configs it is in git.
    shutil.copytree(
        REPO / "src",
        source / "src",
        symlinks=True,
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    # No git metadata in the copy: the version git tags would give is pretended.
    env = {**os.environ, "SETUPTOOLS_SCM_PRETEND_VERSION": "1.2.3"}
    command = [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation"]
    built = subprocess.run(
        [*command, "-w", str(tmp_path / "dist"), "-q"],
        cwd=source,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("polymodal-1.2.3-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        metadata = archive.read("polymodal-1.2.3.dist-info/METADATA").decode()
    packaged = {
        n.removeprefix("polymodal/configs/").removesuffix(".yaml")
        for n in names
        if n.startswith("polymodal/configs/") and n.endswith(".yaml")
    }
    assert packaged == _repository_configs()
    assert "polymodal/py.typed" in names and "polymodal/cli/configs.py" in names
    assert "License-Expression: Apache-2.0" in metadata.splitlines()
    assert "Version: 1.2.3" in metadata.splitlines()


@pytest.mark.slow
@pytest.mark.skipif(
    importlib.util.find_spec("setuptools_scm") is None or not (REPO / ".git").exists(),
    reason="needs setuptools-scm and a git checkout",
)
def test_a_wheel_builds_from_a_git_checkout(tmp_path: Path) -> None:
    """With git metadata setuptools-scm lists every tracked file; the configs link among them
    must not reach the wheel as a file (the build failed: "can't copy src/polymodal/configs")."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True, timeout=120)
    command = [sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation"]
    built = subprocess.run(
        [*command, "-w", str(tmp_path / "dist"), "-q"],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = (tmp_path / "dist").glob("polymodal-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "polymodal/configs/ham10000_cpu.yaml" in names
    assert "polymodal/serve/static/page.js" in names
