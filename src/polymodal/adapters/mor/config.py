"""Configuration of MoR adapters (Mixture of Low-varied-Ranks, methods.md §3.2)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from polymodal.errors import ModelError

ROUTERS = ("relaxed", "softmax")


@dataclass
class MoRConfig:
    """MoR: y = W₀x + b + Σ_i g_i(x) · (α_i / r_i) · B_i A_i x, with a per-token router g.

    The defaults are the EI paper's: experts of ranks 2/4/8 with α = 4/8/16 (every scale α/r = 2)
    on ``mlp.fc1`` and ``mlp.fc2``, and the weight-relaxed router whose bypass slot is dropped so
    that Σ_i g_i ≤ 1. Serialised to ``adapter_config.json`` beside the weights.
    """

    method: ClassVar[str] = "mor"

    ranks: tuple[int, ...] = field(
        default=(2, 4, 8), metadata={"help": "rank r_i of each expert (one expert per entry)"}
    )
    alphas: tuple[float, ...] = field(
        default=(4.0, 8.0, 16.0),
        metadata={"help": "scale numerator α_i of each expert; the update is scaled by α_i / r_i"},
    )
    router: str = field(
        default="relaxed",
        metadata={
            "help": "'relaxed': softmax over K+1 logits with the bypass slot 0 dropped, so a token's "
            "expert weights sum to at most 1 (it can opt out of adaptation); 'softmax': softmax "
            "over the K experts, weights sum to 1"
        },
    )
    target_modules: tuple[str, ...] = field(
        default=("mlp.fc1", "mlp.fc2"),
        metadata={
            "help": "module-name suffixes to adapt (a module matches when its dotted name equals "
            "a pattern or ends with '.' + pattern), e.g. mlp.fc1, mlp.fc2, attn.qkv, attn.proj"
        },
    )
    split_qkv: bool = field(
        default=True,
        metadata={
            "help": "adapt a fused attention projection named 'qkv' as three MoR adapters (q, k, v: "
            "own experts and router each) rather than one adapter over the fused output"
        },
    )

    def __post_init__(self) -> None:
        self.ranks = tuple(int(r) for r in self.ranks)
        self.alphas = tuple(float(a) for a in self.alphas)
        self.target_modules = tuple(self.target_modules)
        if not self.ranks or any(r < 1 for r in self.ranks):
            raise ModelError(
                f"MoR ranks must be positive integers, one per expert, got {self.ranks}"
            )
        if len(self.alphas) != len(self.ranks):
            raise ModelError(
                f"MoR needs one alpha per expert: ranks {self.ranks} but alphas {self.alphas}"
            )
        if self.router not in ROUTERS:
            raise ModelError(f"MoR router must be one of {ROUTERS}, got {self.router!r}")
        if not self.target_modules:
            raise ModelError("MoR target_modules is empty; name at least one, e.g. 'mlp.fc1'")

    @property
    def scales(self) -> tuple[float, ...]:
        """α_i / r_i per expert."""
        return tuple(a / r for a, r in zip(self.alphas, self.ranks, strict=True))
