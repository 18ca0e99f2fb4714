"""On the multitask demo cohort, ``explain`` finds the element the generator planted.

The generator documents it (:data:`polymodal.datasets.demo_multitask.INFORMATIVE_ELEMENT`): the
``cardiac`` task depends mostly on the lab ``ldl``. A small model trained on two of the cohort's
tasks (``cardiac`` and ``fev1``) over its labs and clinical sentences is asked about ``cardiac``
alone (``--task``), and ``ldl`` must come first among every tabular field and clinical sentence.
The CT volume and the note play no part in the cardiac rule apart from chest pain, and are left
out to keep the test fast.
"""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from polymodal.data.spec import load_spec
from polymodal.datasets.demo_multitask import INFORMATIVE_ELEMENT, make_multitask_cohort
from polymodal.explain import explain_model
from polymodal.training.fit import fit
from polymodal.training.run_config import load_run_config

torch.set_num_threads(1)


def test_the_planted_element_ranks_first_for_its_task(tmp_path: Path) -> None:
    spec_path = make_multitask_cohort(tmp_path / "cohort", n=600, seed=1, volume_size=16)
    spec = yaml.safe_load(spec_path.read_text())
    spec["modalities"] = {m: spec["modalities"][m] for m in ("labs", "clinical")}
    spec["targets"] = {t: spec["targets"][t] for t in ("cardiac", "fev1")}
    small = spec_path.parent / "spec_labs_clinical.yaml"
    small.write_text(yaml.safe_dump(spec))
    run = load_run_config(
        None,
        [
            "model.core=concat",
            "model.dim=16",
            "model.encoders.clinical={options: {depth: 1, heads: 2}}",
            "train.max_epochs=12",
            "train.batch_size=32",
            "train.lr=5e-3",
            "train.warmup_epochs=0",
            "train.early_stopping_patience=null",
        ],
    )
    out = tmp_path / "run"
    fit(load_spec(small), out, run, progress=False)
    task = INFORMATIVE_ELEMENT["target"]
    result = explain_model(
        out / "model", spec_path.parent / "manifest.csv", task, method="occlusion", max_samples=60
    )
    cohort = result.cohort
    elements = cohort[cohort["kind"].isin(["field", "sentence"])].sort_values("rank")
    planted = f"{INFORMATIVE_ELEMENT['modality']}.{INFORMATIVE_ELEMENT['column']}"
    assert elements["element"].iloc[0] == planted, elements.head(5)
