"""Model folders written before the plug-in refactoring (issue 13) still load and predict alike.

The folders are written here file by file in the on-disk format of polymodal 0.1.0 as of
commit b3da9d0 (config.json, preprocessing.json, spec.yaml and the tensor names of
model.safetensors), not saved by today's code: a change of a JSON key, a ``kind`` string or a
parameter name breaks these tests even when saving and loading changed together. The expected
probabilities were computed by that commit's code from the same files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from polymodal.data.collate import collate_samples
from polymodal.data.dataset import CohortDataset
from polymodal.data.manifest import load_cohort
from polymodal.model_folder import load_model_folder

MANIFEST = """sample_id,split,age,crp,sex,label
a,train,50,1.0,m,1
b,train,60,2.5,f,0
c,train,,3.0,f,1
d,val,40,0.5,m,0
e,test,70,4.0,,1
"""

SPEC = """name: old-folder
manifest: manifest.csv
id_column: sample_id
split:
  column: split
  aliases: {}
targets:
  label:
    prompts:
    - Is the label positive?
    kind: binary
    column: label
    positive: '1'
modalities:
  labs:
    kind: tabular
    numeric:
    - age
    - crp
    categorical:
    - sex
    missing_values:
    - ''
    - NA
    - NaN
    - nan
    - unknown
    min_category_count: 1
exclude_columns: []
allow_outside_root: false
"""

PREPROCESSING = {
    "format": "polymodal-preprocessing",
    "version": 1,
    "polymodal_version": "0.1.0",
    "modalities": {
        "labs": {
            "config": {
                "kind": "tabular",
                "numeric": ["age", "crp"],
                "categorical": ["sex"],
                "missing_values": ["", "NA", "NaN", "nan", "unknown"],
                "min_category_count": 1,
            },
            "state": {
                "mean": [55.0, 2.1666666666666665],
                "std": [5.0, 0.8498365855987975],
                "vocabularies": {"sex": ["f", "m"]},
            },
        }
    },
    "targets": {
        "label": {
            "config": {
                "prompts": ["Is the label positive?"],
                "kind": "binary",
                "column": "label",
                "positive": "1",
                "negative": None,
                "class_weights": None,
            },
            "state": {"negative": "0"},
        }
    },
    "fingerprint": "9d324f5551d24c1daa6c53b7d3bdeec4",
}

INPUT_INFOS = {
    "labs": {"kind": "tabular", "numeric": ["age", "crp"], "categorical": {"sex": 4}},
}
TARGET_INFOS = {
    "label": {
        "classes": ["0", "1"],
        "class_weights": None,
        "bins": None,
        "mean": None,
        "std": None,
        "kind": "binary",
        "n_outputs": 1,
        "prompts": ["Is the label positive?"],
    }
}

ENCODER_AND_HEAD = {
    "encoders.labs.numeric_weight": (2, 8),
    "encoders.labs.numeric_bias": (2, 8),
    "encoders.labs.missing_embedding": (3, 8),
    "encoders.labs.feature_embedding": (3, 8),
    "encoders.labs.category_embedding.weight": (4, 8),
    "heads.label.proj.weight": (1, 8),
    "heads.label.proj.bias": (1,),
}


def _block(prefix: str, q: int, hidden: int) -> dict[str, tuple[int, ...]]:
    """A pre-LN block's tensors: attention with inner width ``q``, feed-forward ``hidden``."""
    return {
        f"{prefix}.attn_norm.weight": (8,),
        f"{prefix}.attn_norm.bias": (8,),
        f"{prefix}.attn.to_q.weight": (q, 8),
        f"{prefix}.attn.to_kv.weight": (2 * q, 8),
        f"{prefix}.attn.to_out.weight": (8, q),
        f"{prefix}.attn.to_out.bias": (8,),
        f"{prefix}.ff_norm.weight": (8,),
        f"{prefix}.ff_norm.bias": (8,),
        f"{prefix}.ff.proj_in.weight": (hidden, 8),
        f"{prefix}.ff.proj_in.bias": (hidden,),
        f"{prefix}.ff.proj_out.weight": (8, 32),
        f"{prefix}.ff.proj_out.bias": (8,),
    }


CROSS = "core.memory.layers.0.0"
FOLDERS = {
    # The prompt comes from the target's prompts: core_options has no task_prompts.
    "prompted": (
        {"depth": 1, "heads": 2, "prompt_buckets": 8, "num_registers": 1},
        {
            "core.registers": (1, 8),
            "core.modality_embedding": (1, 8),
            "core.word_embedding.weight": (8, 8),
            **_block("core.blocks.0", 8, 64),
            "core.norm.weight": (8,),
            "core.norm.bias": (8,),
        },
        [0.451290518, 0.4460636079, 0.4399120808, 0.4505848885, 0.4292803705],
    ),
    "synergy": (
        {
            "num_latents": 2,
            "depth": 1,
            "cross_dim_head": 4,
            "latent_heads": 1,
            "latent_dim_head": 4,
            "layout": "paper",
            "fusion_depth": 1,
            "fusion_heads": 2,
        },
        {
            "core.modality_embedding": (1, 8),
            "core.cls_token": (1, 1, 8),
            "core.memory.latents": (2, 8),
            f"{CROSS}.query_norm.weight": (8,),
            f"{CROSS}.query_norm.bias": (8,),
            f"{CROSS}.context_norm.weight": (8,),
            f"{CROSS}.context_norm.bias": (8,),
            f"{CROSS}.attn.to_q.weight": (4, 8),
            f"{CROSS}.attn.to_kv.weight": (8, 8),
            f"{CROSS}.attn.to_out.weight": (8, 4),
            f"{CROSS}.attn.to_out.bias": (8,),
            f"{CROSS}.ff_norm.weight": (8,),
            f"{CROSS}.ff_norm.bias": (8,),
            f"{CROSS}.ff.proj_in.weight": (64, 8),
            f"{CROSS}.ff.proj_in.bias": (64,),
            f"{CROSS}.ff.proj_out.weight": (8, 32),
            f"{CROSS}.ff.proj_out.bias": (8,),
            **_block("core.memory.layers.0.1.0", 4, 64),
            "core.latent_to_tokens.weight": (8, 8),
            "core.latent_to_tokens.bias": (8,),
            **_block("core.fusion.0", 8, 32),
            "core.norm.weight": (8,),
            "core.norm.bias": (8,),
        },
        [0.5181599259, 0.4987564683, 0.52020818, 0.5183785558, 0.5204008818],
    ),
}


def write_old_folder(root: Path, core: str) -> Path:
    """The model folder of ``core`` as polymodal 0.1.0 (b3da9d0) wrote it, and its cohort."""
    options, core_tensors, _ = FOLDERS[core]
    cohort = root / "cohort"
    cohort.mkdir(exist_ok=True)
    (cohort / "manifest.csv").write_text(MANIFEST)
    folder = root / core
    folder.mkdir()
    (folder / "spec.yaml").write_text(SPEC)
    (folder / "preprocessing.json").write_text(json.dumps(PREPROCESSING, indent=1))
    config = {
        "polymodal_version": "0.1.0",
        "model": {
            "core": core,
            "dim": 8,
            "core_options": options,
            "encoders": {},
            "modalities": None,
            "modality_dropout": 0.0,
        },
        "input_infos": INPUT_INFOS,
        "target_infos": TARGET_INFOS,
        "spec_base_dir": str(cohort),
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    generator = torch.Generator().manual_seed(0)
    shapes = {**ENCODER_AND_HEAD, **core_tensors}
    weights = {
        name: torch.randn(shapes[name], generator=generator) * 0.5 for name in sorted(shapes)
    }
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder


@pytest.mark.parametrize("core", list(FOLDERS))
def test_a_folder_written_before_the_refactoring_loads_and_predicts_as_before(
    core: str, tmp_path: Path
) -> None:
    loaded = load_model_folder(write_old_folder(tmp_path, core))
    dataset = CohortDataset(load_cohort(loaded.spec), loaded.preprocessor, None)
    batch = collate_samples([dataset[i] for i in range(len(dataset))])
    probability = loaded.model.predict(batch)["label"]["probability"]
    assert batch["ids"] == ["a", "b", "c", "d", "e"]
    expected = torch.tensor(FOLDERS[core][2])
    assert torch.allclose(probability, expected, atol=1e-6), probability.tolist()
