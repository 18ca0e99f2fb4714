"""MoR layers: several named Mixture-of-Low-varied-Ranks adapters around one frozen ``nn.Linear``.

A :class:`MoRLinear` keeps the frozen ``base_layer`` once and any number of named adapters beside
it; one of them (or none) is active per forward pass, the way PEFT layers work, so two passes
through the same backbone with different adapters share every frozen weight.

The module-level functions (``inject``, ``adapter_names``, ``select_adapter``, ``adapter_state``,
``adapter_parameters``, ``is_adapter_layer``) are what :mod:`polymodal.adapters.inject` calls; the
LoRA backend offers the same ones.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from polymodal.adapters.mor.config import MoRConfig
from polymodal.errors import ModelError


class MixtureOfRanks(nn.Module):
    """One MoR adapter for one linear map d_in → d_out: K low-rank experts and a per-token router.

    The K experts are stored stacked: ``lora_A`` holds the rows of every A_i (R = Σ r_i rows) and
    ``lora_B`` the columns of every B_i, so the whole mixture costs two matmuls.

    Args:
        in_features: d_in.
        out_features: d_out.
        config: ranks, alphas and router kind.

    Inputs:
        x: (..., d_in).

    Returns:
        (..., d_out), exactly zero at initialisation (B is zero).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        config: MoRConfig,
        *,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        factory = {"device": device, "dtype": dtype}
        total_rank = sum(config.ranks)
        self.relaxed = config.router == "relaxed"
        self.num_experts = len(config.ranks)
        self.lora_A = nn.Parameter(torch.empty(total_rank, in_features, **factory))
        self.lora_B = nn.Parameter(torch.zeros(out_features, total_rank, **factory))
        # The relaxed router has one more logit: the bypass slot, dropped after the softmax.
        self.router = nn.Linear(in_features, self.num_experts + int(self.relaxed), **factory)
        ranks = torch.tensor(config.ranks, device=device)
        # Which expert each of the R stacked rank slots belongs to, and that expert's α_i / r_i.
        self.register_buffer(
            "expert_of_slot",
            torch.repeat_interleave(torch.arange(self.num_experts, device=device), ranks),
            persistent=False,
        )
        self.register_buffer(
            "slot_scale",
            torch.repeat_interleave(torch.tensor(config.scales, **factory), ranks),
            persistent=False,
        )
        # kaiming-uniform(a=√5) depends only on fan_in = d_in, the same for every expert's A_i.
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))

    def gates(self, x: Tensor) -> Tensor:
        """Per-token expert weights g(x): (..., d_in) → (..., K); rows sum to ≤ 1 (relaxed) or 1."""
        probabilities = self.router(x).softmax(dim=-1)  # (..., K or K+1)
        return probabilities[..., 1:] if self.relaxed else probabilities

    def forward(self, x: Tensor) -> Tensor:
        low_rank = x @ self.lora_A.T  # (..., R)
        slot_weight = self.gates(x)[..., self.expert_of_slot] * self.slot_scale  # (..., R)
        return (low_rank * slot_weight) @ self.lora_B.T  # (..., d_out)


class MoRLinear(nn.Module):
    """A frozen ``nn.Linear`` plus named MoR adapters; ``active_adapter`` picks one (or None).

    With ``splits`` = 3 (a fused ``qkv`` projection) an adapter is three :class:`MixtureOfRanks`,
    one per output third (q, k, v), each with its own experts and router.

    Inputs:
        x: (..., d_in).

    Returns:
        (..., d_out): ``base_layer(x)`` plus the active adapter's update.
    """

    def __init__(self, base_layer: nn.Linear) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.mor_adapters = nn.ModuleDict()
        self.active_adapter: str | None = None

    @property
    def in_features(self) -> int:
        return self.base_layer.in_features

    @property
    def out_features(self) -> int:
        return self.base_layer.out_features

    def add_adapter(self, name: str, config: MoRConfig, splits: int = 1) -> None:
        """Create adapter ``name`` (zero update) with ``splits`` independent output slices."""
        if self.out_features % splits:
            raise ModelError(
                f"cannot split {self.out_features} outputs into {splits} equal parts for MoR; "
                "set split_qkv: false"
            )
        weight = self.base_layer.weight
        self.mor_adapters[name] = nn.ModuleList(
            MixtureOfRanks(
                self.in_features,
                self.out_features // splits,
                config,
                device=weight.device,
                dtype=weight.dtype,
            )
            for _ in range(splits)
        )

    def forward(self, x: Tensor) -> Tensor:
        output = self.base_layer(x)
        if self.active_adapter is None:
            return output
        adapter = self.mor_adapters[self.active_adapter]
        update = torch.cat([part(x) for part in adapter], dim=-1)  # (..., d_out)
        return output + update.to(output.dtype)


def is_adapter_layer(module: nn.Module) -> bool:
    return isinstance(module, MoRLinear)


def inject(model: nn.Module, module_names: list[str], config: MoRConfig, adapter_name: str) -> None:
    """Add MoR adapter ``adapter_name`` to each named ``nn.Linear`` (wrapping it once)."""
    for name in module_names:
        module = model.get_submodule(name)
        if not isinstance(module, MoRLinear):
            parent_name, _, child_name = name.rpartition(".")
            module = MoRLinear(module)
            setattr(model.get_submodule(parent_name), child_name, module)
        fused_qkv = config.split_qkv and name.rpartition(".")[2] == "qkv"
        module.add_adapter(adapter_name, config, splits=3 if fused_qkv else 1)


def adapter_names(layer: MoRLinear) -> list[str]:
    return list(layer.mor_adapters.keys())


def select_adapter(layer: MoRLinear, name: str | None) -> None:
    layer.active_adapter = name


def adapter_state(layer: MoRLinear, name: str) -> dict[str, Tensor]:
    """Adapter ``name``'s tensors under keys without the name (detached, sharing storage)."""
    return {key: tensor.detach() for key, tensor in layer.mor_adapters[name].state_dict().items()}


def adapter_parameters(layer: MoRLinear) -> Iterator[nn.Parameter]:
    """Parameters of every adapter of ``layer`` (not the frozen base layer)."""
    return layer.mor_adapters.parameters()
