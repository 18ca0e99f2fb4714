"""Every registered training plugin, the way timm tests every model: parametrized over
``PLUGINS``, each from its own example, with no hand-kept list here."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from polymodal.data.spec import load_spec
from polymodal.errors import PolymodalError, SpecError
from polymodal.model_folder import load_model_folder
from polymodal.training import fit as fit_module
from polymodal.training.fit import fit
from polymodal.training.plugins import PLUGINS, PluginParts
from polymodal.training.resume import check_resume_config
from polymodal.training.run_config import RunConfig, load_run_config

from .conftest import tiny_config

NAMES = PLUGINS.names()


def as_overrides(fragment: dict[str, Any]) -> list[str]:
    """``--set`` overrides for a run-config fragment (JSON values are YAML)."""
    overrides = []
    for section, values in fragment.items():
        if not values:
            overrides.append(f"{section}={{}}")
        overrides += [f"{section}.{key}={json.dumps(value)}" for key, value in values.items()]
    return overrides


def test_the_registry_has_the_built_in_plugins_and_each_is_a_section() -> None:
    assert {"distill", "modulation", "intervention_loss", "ema"} <= set(NAMES)
    for name in NAMES:
        field = RunConfig.model_fields[name]
        assert PLUGINS.get(name).config in field.annotation.__args__
        assert field.default is None and field.description == PLUGINS.get(name).summary


@pytest.mark.parametrize("name", NAMES)
def test_a_plugin_section_round_trips_through_run_json(name: str, tmp_path: Path) -> None:
    run = load_run_config(None, as_overrides(PLUGINS.get(name).example(tmp_path / "model")))
    section = getattr(run, name)
    assert isinstance(section, PLUGINS.get(name).config)
    record = json.loads(json.dumps(run.record()))
    assert record[name] == section.model_dump(mode="json")
    again = RunConfig.model_validate(record)
    assert again == run and again.record() == record
    assert name not in load_run_config(None).record()  # absent unless set


@pytest.mark.parametrize("name", NAMES)
def test_an_unknown_key_of_a_plugin_names_the_valid_ones(name: str) -> None:
    with pytest.raises(SpecError, match=rf"{name}\.no_such_key: unknown key") as err:
        load_run_config(None, [f"{name}.no_such_key=1"])
    for key in PLUGINS.get(name).config.model_fields:
        assert key in str(err.value)


def test_an_unknown_section_names_every_plugin() -> None:
    with pytest.raises(SpecError, match="distil: unknown section") as err:
        load_run_config(None, ["distil.teacher=x"])
    assert all(name in str(err.value) for name in ["model", "train", *NAMES])


@pytest.mark.parametrize("name", NAMES)
def test_each_plugin_trains_a_tiny_fit_and_is_recorded(
    name: str, cohort_spec_path: Path, run_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    plugin = PLUGINS.get(name)
    built: list[PluginParts] = []

    def recording_build(config, context):
        built.append(original(config, context))
        return built[-1]

    original = plugin.build
    monkeypatch.setattr(plugin, "build", recording_build)
    example = plugin.example(run_dir / "model")
    run = tiny_config("train.max_epochs=1", "train.cache=false", *as_overrides(example))
    out = tmp_path / name
    result = fit(load_spec(cohort_spec_path), out, run, progress=False)

    (parts,) = built
    assert parts.modules or parts.callbacks or parts.after_export  # the plugin joined the fit
    recorded = json.loads((out / "run.json").read_text())
    assert recorded[name] == getattr(run, name).model_dump(mode="json")
    assert load_model_folder(result.model_dir).config.core == run.model.core
    # The training checkpoint holds the plugin's own parameters, never the model folder.
    assert result.epochs_run == 1


def test_train_ema_decay_of_earlier_run_configs_is_the_ema_section() -> None:
    assert load_run_config(None, ["train.ema_decay=0.9"]).ema.decay == 0.9
    assert load_run_config(None, ["train.ema_decay=null"]).ema is None
    with pytest.raises(SpecError, match=r"train\.ema_decay and ema are both set"):
        load_run_config(None, ["train.ema_decay=0.9", "ema.decay=0.5"])


@pytest.mark.parametrize("decay", [None, 0.9])
def test_a_run_started_with_train_ema_decay_may_resume(decay, tmp_path: Path) -> None:
    today = load_run_config(None, [] if decay is None else [f"ema.decay={decay}"]).record()
    earlier = {k: v for k, v in today.items() if k != "ema"}
    earlier["train"] = {**today["train"], "ema_decay": decay}
    (tmp_path / "run.json").write_text(json.dumps(earlier))
    check_resume_config(tmp_path / "run.json", today)  # no difference
    other = load_run_config(None, ["ema.decay=0.5"]).record()
    with pytest.raises(PolymodalError, match="ema"):
        check_resume_config(tmp_path / "run.json", other)


def test_no_function_of_fit_is_longer_than_80_lines() -> None:
    tree = ast.parse(Path(fit_module.__file__).read_text())
    lengths = {
        node.name: node.end_lineno - node.lineno + 1
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef)
    }
    assert max(lengths.values()) <= 80, lengths
