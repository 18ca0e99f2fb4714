"""How many tensors of a frozen image backbone did `fit` change? (issue 12, item 1)

Compares the backbone tensors of a fitted model folder with the backbone as the encoder builds it
from the same options (e.g. the packaged ImageNet EfficientNet-Lite0): a frozen backbone must come
out of training bit-identical, BatchNorm running statistics and batch counters included.

    polymodal demo-data /tmp/demo
    polymodal fit /tmp/demo/spec.yaml -o /tmp/frozen_run --core single --epochs 1 \\
        --set 'model.core_options={modality: lesion}' \\
        --set "model.encoders.lesion={name: image_timm, options: {backbone: efficientnet_lite0, \\
               pretrained: 'package:efficientnet-lite0', freeze: all}}"
    python bench/frozen_backbone_drift.py /tmp/frozen_run/model lesion

prints the number of backbone tensors that differ, by kind (weights, running means, running
variances, batch counters), and exits 1 when any differs.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import torch
from safetensors.torch import load_file

from polymodal.encoders import create_encoder


def changed_backbone_tensors(model_dir: Path, modality: str) -> tuple[int, Counter[str]]:
    """(backbone tensors in the folder, count of changed ones per tensor kind)."""
    config = json.loads((model_dir / "config.json").read_text())
    encoder_config = config["model"]["encoders"][modality]
    built = create_encoder(
        encoder_config["name"],
        input_info=config["input_infos"][modality],
        dim=config["model"]["dim"],
        **encoder_config.get("options", {}),
    )
    initial = built.backbone.state_dict()
    prefix = f"encoders.{modality}.backbone."
    saved = {
        k[len(prefix) :]: v
        for k, v in load_file(model_dir / "model.safetensors").items()
        if k.startswith(prefix)
    }
    changed: Counter[str] = Counter()
    for name, tensor in saved.items():
        if not torch.equal(tensor, initial[name]):
            changed[name.rsplit(".", 1)[-1]] += 1
    return len(saved), changed


def main() -> int:
    model_dir, modality = Path(sys.argv[1]), sys.argv[2]
    total, changed = changed_backbone_tensors(model_dir, modality)
    print(
        f"{model_dir}: {sum(changed.values())} of {total} backbone tensors differ from the "
        f"initial backbone {dict(changed)}"
    )
    return 1 if changed else 0


if __name__ == "__main__":
    raise SystemExit(main())
