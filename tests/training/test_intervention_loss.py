"""The Early Intervention loss plugin: the paper's formula, the router target, missing images."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from polymodal.errors import ModelError
from polymodal.fusion import create_core
from polymodal.heads import create_head
from polymodal.model import MultimodalModel
from polymodal.training.config import TrainConfig
from polymodal.training.intervention_loss import (
    InterventionLoss,
    InterventionLossConfig,
    router_soft_target,
    router_target,
)
from polymodal.training.module import PolymodalModule, TrainStep

DIM = 16
TINY_VIT = {
    "backbone": "vit_tiny_patch16_224",
    "backbone_options": {"img_size": 32, "embed_dim": 32, "depth": 2, "num_heads": 2},
}
DX = {"kind": "multiclass", "n_outputs": 3, "classes": ["a", "b", "c"]}


def make_module(
    targets: dict | None = None, config: InterventionLossConfig | None = None
) -> tuple[PolymodalModule, InterventionLoss]:
    torch.manual_seed(0)
    targets = targets or {"dx": DX}
    core = create_core(
        "intervention",
        modalities={"derm": "image", "clinical": "image"},
        dim=DIM,
        detach_branches=True,
        **TINY_VIT,
    )
    heads = nn.ModuleDict({t: create_head(t, info, in_dim=DIM) for t, info in targets.items()})
    model = MultimodalModel(nn.ModuleDict(), core, heads)
    plugin = InterventionLoss.from_config(
        config or InterventionLossConfig(), model=model, target_infos=targets
    )
    module = PolymodalModule(model, targets, TrainConfig(), steps_per_epoch=1, plugins=[plugin])
    return module, plugin


def make_batch(
    clinical: list[bool], labelled: list[bool], labels: list[int], seed: int = 1
) -> dict:
    g = torch.Generator().manual_seed(seed)
    n = len(labels)
    return {
        "ids": [f"s{i}" for i in range(n)],
        "inputs": {
            "derm": {
                "pixels": torch.randn(n, 1, 3, 32, 32, generator=g),
                "view_mask": torch.ones(n, 1, dtype=torch.bool),
            },
            "clinical": {
                "pixels": torch.randn(n, 1, 3, 32, 32, generator=g),
                "view_mask": torch.ones(n, 1, dtype=torch.bool),
            },
        },
        "available": {"derm": torch.ones(n, dtype=torch.bool), "clinical": torch.tensor(clinical)},
        "targets": {"dx": torch.tensor(labels)},
        "target_mask": {"dx": torch.tensor(labelled)},
    }


def run_step(module: PolymodalModule, plugin: InterventionLoss, batch: dict):
    model = module.model
    encoded, availability = model.encode(batch)
    outputs = model.fuse(encoded, availability)
    terms = plugin.training_loss(module, batch, TrainStep(encoded, availability, outputs))
    return outputs, terms


def test_router_target_follows_the_priors() -> None:
    losses = torch.tensor([[0.5, 100.0], [0.5, 600.0], [2.0, 1.0], [0.1, 0.2]])
    both = torch.ones(4, 2, dtype=torch.bool)
    # π = (1, 0.001): the last branch wins unless its loss is over 1000× the first's.
    assert router_target(losses, both, torch.tensor([1.0, 0.001])).tolist() == [1, 0, 1, 1]
    # Equal priors: simply the branch with the lower loss.
    assert router_target(losses, both, torch.tensor([1.0, 1.0])).tolist() == [0, 0, 1, 0]
    # An absent branch is never the target, whatever its loss.
    only_first = torch.tensor([[True, False]] * 4)
    assert router_target(losses, only_first, torch.tensor([1.0, 0.001])).tolist() == [0] * 4


def test_the_loss_is_the_papers_formula_on_a_complete_batch() -> None:
    module, plugin = make_module()
    labels = torch.tensor([0, 2, 1, 2])
    batch = make_batch([True] * 4, [True] * 4, labels.tolist())
    outputs, terms = run_step(module, plugin, batch)
    branches = outputs["auxiliary"]
    head = module.model.heads["dx"]
    s2 = {m: head(branches["branch_features"][m]) for m in ("derm", "clinical")}
    s1 = {m: plugin.reference_heads[m]["dx"](branches["reference_cls"][m]) for m in s2}
    w = branches["router_weights"]  # (B, 2)
    # The head is affine and w sums to 1: the fused logits are Σ_m w_m · s²_m.
    fused = w[:, :1] * s2["derm"] + w[:, 1:] * s2["clinical"]
    assert torch.allclose(outputs["logits"]["dx"], fused, atol=1e-5)
    per_sample = torch.stack([F.cross_entropy(s2[m], labels, reduction="none") for m in s2], 1)
    r_star = (per_sample * torch.tensor([1.0, 0.001])).argmin(dim=1)
    expected = {
        "ei/first": 0.3 * sum(F.cross_entropy(s1[m], labels) for m in s1),
        "ei/second": 1.0 * sum(F.cross_entropy(s2[m], labels) for m in s2),
        "ei/route": 0.1 * F.nll_loss(w.log(), r_star),
    }
    assert set(terms) == set(expected)
    for name, value in expected.items():
        assert torch.allclose(terms[name], value, atol=1e-6), name
    # The official quirk: the probabilities go into cross_entropy as if they were logits.
    quirk = InterventionLossConfig(route_probabilities_as_logits=True)
    module, plugin = make_module(config=quirk)
    quirk_outputs, _ = run_step(module, plugin, batch)
    quirk_terms = plugin.terms(module.model, batch, quirk_outputs["auxiliary"])
    assert torch.allclose(quirk_terms["ei/route"], 0.1 * F.cross_entropy(w, r_star), atol=1e-6)


def test_router_soft_target_is_the_share_of_labels_each_branch_wins() -> None:
    # (B=2, M=2, K=3 labels): sample 0: branch 0 best on labels 0 and 1, branch 1 on label 2.
    losses = torch.tensor([[[0.1, 0.2, 0.9], [0.5, 0.6, 0.3]], [[0.1, 0.1, 0.1], [0.9, 0.9, 0.9]]])
    both = torch.ones(2, 2, dtype=torch.bool)
    soft = router_soft_target(losses, both, torch.tensor([1.0, 1.0]))
    assert torch.allclose(soft, torch.tensor([[2 / 3, 1 / 3], [1.0, 0.0]]))
    # The priors apply per label, and an absent branch wins nothing.
    assert torch.allclose(
        router_soft_target(losses, both, torch.tensor([1.0, 0.001])), torch.tensor([[0, 1.0]] * 2)
    )
    only_second = torch.tensor([[False, True]] * 2)
    assert torch.allclose(
        router_soft_target(losses, only_second, torch.tensor([1.0, 1.0])),
        torch.tensor([[0, 1.0]] * 2),
    )


def test_a_multilabel_target_supervises_the_router_with_soft_targets() -> None:
    findings = {"kind": "multilabel", "n_outputs": 3, "classes": ["abnormal", "acl", "meniscus"]}
    module, plugin = make_module({"knee": findings}, InterventionLossConfig(priors={"clinical": 1}))
    y = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 0], [0, 1, 1]], dtype=torch.float32)
    batch = make_batch([True] * 4, [True] * 4, [0] * 4)
    batch["targets"], batch["target_mask"] = {"knee": y}, {"knee": torch.ones(4, dtype=torch.bool)}
    outputs, terms = run_step(module, plugin, batch)
    branches = outputs["auxiliary"]
    head = module.model.heads["knee"]
    s2 = {m: head(branches["branch_features"][m]) for m in ("derm", "clinical")}
    per_label = torch.stack(
        [F.binary_cross_entropy_with_logits(s2[m], y, reduction="none") for m in s2], dim=1
    )  # (B, M, C)
    won = F.one_hot(per_label.argmin(dim=1), 2).float().mean(dim=1)  # (B, M)
    w = branches["router_weights"]
    expected = 0.1 * -(won * w.log()).sum(dim=1).mean()
    assert torch.allclose(terms["ei/route"], expected, atol=1e-6)
    assert torch.allclose(
        terms["ei/second"],
        sum(F.binary_cross_entropy_with_logits(s2[m], y) for m in s2),
        atol=1e-6,
    )
    # The official quirk with soft targets stays finite.
    quirk = InterventionLossConfig(route_probabilities_as_logits=True, priors={"clinical": 1})
    module, plugin = make_module({"knee": findings}, quirk)
    _, terms = run_step(module, plugin, batch)
    assert torch.isfinite(terms["ei/route"])


def test_missing_images_and_labels_leave_their_terms() -> None:
    module, plugin = make_module()
    labels = [0, 2, 1, 2, 0]
    clinical = [True, False, True, True, False]
    labelled = [True, True, False, True, True]
    batch = make_batch(clinical, labelled, labels)
    outputs, terms = run_step(module, plugin, batch)
    branches = outputs["auxiliary"]
    head = module.model.heads["dx"]
    y = torch.tensor(labels)
    derm_rows, clinical_rows = [0, 1, 3, 4], [0, 3]  # labelled, and with that image
    s2_derm = head(branches["branch_features"]["derm"])
    s2_clinical = head(branches["branch_features"]["clinical"])
    second = F.cross_entropy(s2_derm[derm_rows], y[derm_rows]) + F.cross_entropy(
        s2_clinical[clinical_rows], y[clinical_rows]
    )
    assert torch.allclose(terms["ei/second"], second, atol=1e-6)
    # Router supervision: only labelled samples with both images (rows 0 and 3).
    w = branches["router_weights"][clinical_rows]
    per_sample = torch.stack(
        [
            F.cross_entropy(s2_derm[clinical_rows], y[clinical_rows], reduction="none"),
            F.cross_entropy(s2_clinical[clinical_rows], y[clinical_rows], reduction="none"),
        ],
        dim=1,
    )
    r_star = (per_sample * torch.tensor([1.0, 0.001])).argmin(dim=1)
    assert torch.allclose(terms["ei/route"], 0.1 * F.nll_loss(w.log(), r_star), atol=1e-6)
    # A batch with one image per sample leaves the router nothing to learn: exactly 0.
    single = make_batch([False] * 3, [True] * 3, [0, 1, 2])
    _, terms = run_step(module, plugin, single)
    assert terms["ei/route"].item() == 0.0


def test_the_extra_terms_train_what_the_detached_fused_loss_cannot() -> None:
    module, plugin = make_module()
    batch = make_batch([True] * 4, [True] * 4, [0, 1, 2, 1])
    outputs, terms = run_step(module, plugin, batch)
    total, _ = module.model.loss(batch, outputs)
    (total + sum(terms.values())).backward()
    core = module.model.core
    for part in (core.intervention, core.branch_heads, core.router, plugin.reference_heads):
        assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    # Every adapter of both passes of both images learns (pass 1 through s¹ and the tokens).
    adapters = {n: p for n, p in core.backbone.named_parameters() if p.requires_grad}
    assert {n for n, p in adapters.items() if p.grad is None} == set()
    assert any("ref_clinical" in n for n in adapters) and any("tgt_derm" in n for n in adapters)


def test_mm_weight_scales_the_models_own_task_loss() -> None:
    module, plugin = make_module(config=InterventionLossConfig(mm_loss_weight=0.25))
    batch = make_batch([True] * 4, [True] * 4, [0, 1, 2, 1])
    outputs, terms = run_step(module, plugin, batch)
    task, _ = module.model.loss(batch, outputs)
    assert torch.allclose(task + terms["ei/mm_extra"], 0.25 * task)


@pytest.mark.parametrize(
    ("targets", "config", "message"),
    [
        ({"y": {"kind": "regression"}}, InterventionLossConfig(), "multiclass and multilabel"),
        ({"dx": DX}, InterventionLossConfig(priors={"ct": 1.0}), r"priors names \['ct'\]"),
    ],
)
def test_unsupported_setups_are_model_errors(targets: dict, config, message: str) -> None:
    with pytest.raises(ModelError, match=message):
        make_module(targets, config)


def test_another_core_is_refused() -> None:
    core = create_core("concat", modalities={"derm": "image"}, dim=DIM)
    model = MultimodalModel(nn.ModuleDict(), core, nn.ModuleDict())
    with pytest.raises(ModelError, match=r"needs model\.core: intervention"):
        InterventionLoss.from_config(InterventionLossConfig(), model=model, target_infos={})
