"""Nothing from a checkpoint or model file is ever executed.

A pickle payload (an object whose ``__reduce__`` writes a marker file when unpickled) is planted
in every path polymodal loads weights from: best.ckpt, last.ckpt, a checkpoint path recorded in
last.ckpt, ``fit --resume``, a distillation teacher and ``intervention_loss.init_from``. Each
load must refuse (or read the file without unpickling it), and the marker must never appear.
A scan of the sources keeps every ``torch.load`` at ``weights_only=True``.
"""

from __future__ import annotations

import ast
import json
import pickle
import shutil
from pathlib import Path

import pytest
import torch

from polymodal.errors import ModelError, PolymodalError
from polymodal.training.checkpoints import load_best_weights
from polymodal.training.distill import DistillationConfig
from training.conftest import tiny_cohort, tiny_config, tiny_run

REPO = Path(__file__).resolve().parents[2]


class Payload:
    """Unpickling this object writes ``marker``: proof that unpickling ran code."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return (exec, (f"open({self.marker!r}, 'w').write('code from a checkpoint ran')",))


@pytest.fixture()
def marker(tmp_path: Path) -> Path:
    path = tmp_path / "payload_ran"
    yield path
    assert not path.exists(), "a planted payload was executed"


def plant(path: Path, marker: Path) -> None:
    """A checkpoint-looking file (torch's zip format) whose state_dict is the payload."""
    torch.save({"state_dict": Payload(marker), "epoch": 0}, path)


def test_the_planted_payload_runs_when_unpickled_unsafely(tmp_path: Path) -> None:
    # The control: without weights_only the payload is live, so the tests below mean something.
    marker = tmp_path / "payload_ran"
    pickle.loads(pickle.dumps(Payload(marker)))
    assert marker.is_file()


@pytest.fixture(scope="module")
def spec_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_cohort(tmp_path_factory.getbasetemp())


@pytest.fixture()
def run_copy(tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> Path:
    """A private copy of the shared tiny run (2 epochs, checkpoints included)."""
    shared = tiny_run(tmp_path_factory.getbasetemp())
    out = Path(shutil.copytree(shared, tmp_path / "run", ignore=shutil.ignore_patterns("cache")))
    # last.ckpt names the shared run's checkpoints; the copy's own are the ones to resume from.
    last_path = out / "checkpoints" / "last.ckpt"
    last = torch.load(last_path, map_location="cpu", weights_only=True)
    for state in last["callbacks"].values():
        for key in ("best_model_path", "last_model_path", "kth_best_model_path", "dirpath"):
            if state.get(key):
                state[key] = str(out / "checkpoints" / Path(state[key]).name)
        if "best_k_models" in state:
            state["best_k_models"] = {
                str(out / "checkpoints" / Path(k).name): v
                for k, v in state["best_k_models"].items()
            }
    torch.save(last, last_path)
    return out


def _resume(spec_path: Path, out: Path):
    from polymodal.data.spec import load_spec
    from polymodal.training.fit import fit

    run = tiny_config("train.max_epochs=3")
    return fit(
        load_spec(spec_path),
        out,
        run,
        resume=True,
        progress=False,
    )


def test_a_planted_best_checkpoint_is_refused_on_resume(
    spec_path: Path, run_copy: Path, marker: Path
) -> None:
    plant(run_copy / "checkpoints" / "best.ckpt", marker)
    with pytest.raises(PolymodalError, match=r"best\.ckpt: not a checkpoint polymodal can load"):
        _resume(spec_path, run_copy)


def test_a_planted_last_checkpoint_is_refused_on_resume(
    spec_path: Path, run_copy: Path, marker: Path
) -> None:
    plant(run_copy / "checkpoints" / "last.ckpt", marker)
    with pytest.raises(PolymodalError, match=r"last\.ckpt: not a checkpoint polymodal can load"):
        _resume(spec_path, run_copy)


def test_a_checkpoint_path_outside_the_run_folder_is_refused_on_resume(
    spec_path: Path, run_copy: Path, marker: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "elsewhere.ckpt"
    plant(outside, marker)
    last_path = run_copy / "checkpoints" / "last.ckpt"
    last = torch.load(last_path, map_location="cpu", weights_only=True)
    for state in last["callbacks"].values():
        if "best_model_path" in state:
            state["best_model_path"] = str(outside)
    torch.save(last, last_path)
    with pytest.raises(PolymodalError, match=r"outside this run's .*checkpoints.*elsewhere\.ckpt"):
        _resume(spec_path, run_copy)


def test_the_best_checkpoint_is_read_without_unpickling_objects(
    run_copy: Path, marker: Path, tmp_path: Path
) -> None:
    checkpoints = run_copy / "checkpoints"
    assert set(load_best_weights(checkpoints / "best.ckpt", checkpoints))  # the real one loads
    plant(checkpoints / "best.ckpt", marker)
    with pytest.raises(PolymodalError, match="not a checkpoint polymodal can load safely"):
        load_best_weights(checkpoints / "best.ckpt", checkpoints)
    shutil.copy(run_copy / "checkpoints" / "last.ckpt", tmp_path / "copied.ckpt")
    with pytest.raises(PolymodalError, match="a checkpoint outside this run's"):
        load_best_weights(tmp_path / "copied.ckpt", checkpoints)


@pytest.fixture()
def planted_model_folder(run_copy: Path, marker: Path) -> Path:
    """A model folder whose weights file is a pickle payload, its checksums rewritten to match
    (anyone who can plant a file can rewrite checksums.json): the weights reader must refuse it."""
    from polymodal.checksums import write_checksums

    folder = run_copy / "model"
    plant(folder / "model.safetensors", marker)
    write_checksums(folder)
    return folder


def test_a_planted_teacher_is_refused(
    spec_path: Path, planted_model_folder: Path, tmp_path: Path
) -> None:
    from polymodal.data.spec import load_spec
    from polymodal.training.fit import fit

    run = tiny_config("train.max_epochs=1")
    with pytest.raises(ModelError, match=r"model\.safetensors: not a readable safetensors file"):
        fit(
            load_spec(spec_path),
            tmp_path / "student",
            run.model_copy(update={"distill": DistillationConfig(teacher=planted_model_folder)}),
            progress=False,
        )


def test_a_planted_init_from_folder_is_never_unpickled(
    planted_model_folder: Path, tmp_path: Path, marker: Path
) -> None:
    from polymodal.adapters.inject import CONFIG_FILE, WEIGHTS_FILE
    from polymodal.fusion import create_core
    from polymodal.training.adapter_source import init_core_adapters

    vit = {"img_size": 32, "embed_dim": 32, "depth": 2, "num_heads": 2}
    core = create_core(
        "intervention",
        modalities={"lesion": "image", "labs": "tabular"},
        dim=16,
        backbone="vit_tiny_patch16_224",
        backbone_options=vit,
    )
    # A model folder: read by load_model_folder (safetensors only).
    with pytest.raises(ModelError, match=r"model\.safetensors: not a readable safetensors file"):
        init_core_adapters(core, {"lesion": planted_model_folder})
    # An adapter folder: its weights are read by safetensors, which has no code to run.
    adapters = tmp_path / "adapters"
    adapters.mkdir()
    (adapters / CONFIG_FILE).write_text(json.dumps({"method": "mor"}))
    plant(adapters / WEIGHTS_FILE, marker)
    with pytest.raises(ModelError, match=r"adapter.*not a readable safetensors file"):
        init_core_adapters(core, {"lesion": adapters})


def _unsafe_loads(path: Path) -> list[str]:
    """``file:line`` of every torch.load without weights_only=True, and every other unpickling
    call (pickle.load(s), numpy.load with allow_pickle=True, yaml.load, pandas.read_pickle)."""
    found = []
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
            continue
        owner = node.func.value
        name = f"{owner.id if isinstance(owner, ast.Name) else '?'}.{node.func.attr}"
        keywords = {k.arg: k.value for k in node.keywords}

        def constant(key: str, keywords=keywords) -> object:
            value = keywords.get(key)
            return value.value if isinstance(value, ast.Constant) else None

        unsafe = (
            (name == "torch.load" and constant("weights_only") is not True)
            # numpy refuses pickled arrays unless allow_pickle is set.
            or (name == "np.load" and "allow_pickle" in keywords and constant("allow_pickle"))
            or name in {"yaml.load", "yaml.unsafe_load", "pd.read_pickle", "torch.jit.load"}
            or (name in {"pickle.load", "pickle.loads"} and "tests" not in path.parts)
        )
        if unsafe:
            found.append(f"{path.relative_to(REPO)}:{node.lineno} {name}")
    return found


def test_every_load_in_the_project_refuses_pickled_code() -> None:
    files = [p for folder in ("src", "tests", "bench") for p in (REPO / folder).rglob("*.py")]
    assert len(files) > 50
    unsafe = [hit for path in files for hit in _unsafe_loads(path)]
    assert unsafe == []
