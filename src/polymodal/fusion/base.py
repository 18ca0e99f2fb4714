"""What every fusion core is, and what it can do: capabilities declared on the class.

The model, the explanations and the training plugins ask a core what it can do through this
interface; nothing outside ``fusion/`` looks for attributes or names a core. A core subclasses
:class:`FusionCore`, registers itself with :func:`~polymodal.fusion.registry.register_core` and
overrides the capabilities it has:

=========================== ===================================================================
``forward``                 ``(tokens, masks, available) -> (B, out_dim)``; every core.
``raw_inputs``              modality -> ``(value field, mask field)`` the core reads raw instead
                            of from an encoder (the model then builds no encoder for it).
``tasks``/``forward_tasks`` one feature per task, ``(B, T, out_dim)``; ``tasks`` is empty for a
                            core with one feature for every head.
``auxiliary_outputs``       the keys of what :meth:`forward_with_auxiliary` returns beside the
                            features (for a training plugin); the model puts them in its outputs
                            under ``"auxiliary"``.
``supports_rollout``        :meth:`rollout_relevance` explains a prediction by attention rollout;
                            :meth:`rollout_layers` are the attention layers it reads.
``takes_prompts``           :meth:`set_prompt` replaces a task's prompt at inference;
                            :meth:`prompt_parameter_names` embed the prompts.
``target_options``          options that default to something derived from the cohort's targets
                            (:meth:`options_from_targets`); dropped when a model is adapted to
                            new targets.
``init_adapters``           start the core's adapters from a single-modality model's (the caller
                            reads the model folder; a core never reads files).
``required_plugins``        training plugins without which this core would not train.
``example_options``         a tiny, fast configuration for the registry-wide tests.
``export_refusal``          why the core cannot be exported as a graph (``polymodal export``);
                            empty for a core that can.
=========================== ===================================================================

Streams: ``tokens[m]`` is ``(B, N_m, D)``, ``masks[m]`` is ``(B, N_m)`` bool (True = valid
token) and ``available[m]`` is ``(B,)`` bool; a modality absent from ``tokens`` is unavailable
for every sample.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from polymodal.errors import ModelError
from polymodal.layers.attention import Attention
from polymodal.layers.rollout import recorded_attention, rollout

Streams = dict[str, Tensor]


@dataclass(frozen=True)
class AdapterWeights:
    """A single-modality model's adapters, read by the caller for :meth:`FusionCore.init_adapters`.

    ``adapters`` and ``frozen`` are keyed by the backbone's module names (no wrapper prefix);
    ``frozen`` (the frozen backbone tensors they were trained on) may be empty when unknown;
    ``source`` says where they came from, for messages.
    """

    adapters: dict[str, Tensor]
    frozen: dict[str, Tensor]
    source: str


class FusionCore(nn.Module):
    """Base of every fusion core (see the module docstring for the capabilities).

    Args:
        modalities: modality name -> kind, in the order the core reads them.
        dim: token width D of every stream.

    Sets ``modalities`` (the names read, in order), ``modality_kinds``, ``dim`` and ``out_dim``
    (``dim`` until the core says otherwise).
    """

    #: The name the core is registered under (set by ``register_core``).
    core_name: ClassVar[str] = ""
    supports_rollout: ClassVar[bool] = False
    takes_prompts: ClassVar[bool] = False
    auxiliary_outputs: ClassVar[tuple[str, ...]] = ()
    target_options: ClassVar[tuple[str, ...]] = ()
    export_refusal: ClassVar[str] = ""
    raw_inputs: Mapping[str, tuple[str, str]] = MappingProxyType({})
    tasks: tuple[str, ...] = ()

    def __init__(self, *, modalities: Mapping[str, str], dim: int) -> None:
        super().__init__()
        self.modalities: tuple[str, ...] = tuple(modalities)
        self.modality_kinds = dict(modalities)
        self.dim = dim
        self.out_dim = dim

    # -- forward ---------------------------------------------------------------------------------

    def forward_with_auxiliary(
        self, tokens: Streams, masks: Streams, available: Streams
    ) -> tuple[Tensor, dict[str, Any]]:
        """``(features (B, out_dim), {key: value for key in auxiliary_outputs})``."""
        return self(tokens, masks, available), {}

    def forward_tasks(
        self, tokens: Streams, masks: Streams, available: Streams, tasks: Sequence[str]
    ) -> Tensor:
        """One feature per task, ``(B, T, out_dim)``, for a core with ``tasks``."""
        raise ModelError(f"fusion core {self.core_name!r} has no per-task features")

    # -- prompts and targets -----------------------------------------------------------------------

    def set_prompt(self, task: str, text: str | None) -> None:
        """Use ``text`` as ``task``'s prompt from now on; None restores the configured one."""
        raise ModelError(
            f"the fusion core {self.core_name!r} takes no task prompts; a task can be asked in "
            "other words only of a model whose core takes them (takes_prompts)"
        )

    def prompt_parameter_names(self) -> list[str]:
        """Names (in ``named_parameters()``) of the parameters that embed task prompts."""
        return []

    @classmethod
    def options_from_targets(cls, target_infos: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
        """Values of ``target_options`` for a cohort's targets (used where the config has none)."""
        return {}

    # -- training --------------------------------------------------------------------------------

    def init_adapters(self, modality: str, weights: AdapterWeights) -> list[str]:
        """Start ``modality``'s adapter sets from ``weights``; returns the sets initialised."""
        raise ModelError(f"the fusion core {self.core_name!r} has no adapters to initialise")

    def required_plugins(self) -> tuple[str, ...]:
        """Training plugins (run config sections) this core, as configured, cannot train without."""
        return ()

    # -- explanations ----------------------------------------------------------------------------

    def rollout_layers(self) -> list[Attention]:
        """The attention layers :meth:`rollout_relevance` reads, in the order it reads them."""
        return [block.attn for block in self.rollout_blocks()]

    def rollout_blocks(self) -> Sequence[nn.Module]:
        """Pre-LN blocks (each with ``attn``) whose sequence starts with the query token and ends
        with every modality's tokens; the default :meth:`rollout_relevance` reads them."""
        return ()

    def rollout_relevance(
        self,
        layout: Sequence[tuple[str, int]],
        batch_size: int,
        *,
        task: str | None = None,
        folded_tasks: Sequence[str] | None = None,
    ) -> Tensor:
        """Relevance of each input token to the output, ``(B, ΣN_m)`` in ``layout`` order.

        Call right after a forward inside :func:`~polymodal.layers.rollout.recording_attention`.

        Args:
            layout: ``(modality, N_m)`` of the streams the core received, in its order.
            batch_size: B.
            task: which task's sequence to read when the forward folded several tasks into the
                batch (``forward_tasks``).
            folded_tasks: the tasks of that forward, in order (default ``tasks``).
        """
        if not self.supports_rollout or not self.rollout_blocks():
            raise ModelError(
                f"the fusion core {self.core_name!r} does not support attention rollout: use "
                "--method occlusion"
            )
        attentions = [
            recorded_attention(block.attn, f"block {i}")
            for i, block in enumerate(self.rollout_blocks())
        ]
        folded = attentions[0].shape[0] // batch_size
        if folded > 1:
            # A per-task forward folds its T task sequences into the batch: row b·T + t.
            tasks = tuple(folded_tasks or self.tasks)
            if task not in tasks:
                raise ModelError(
                    f"attention rollout: the fusion core has no task {task!r}; its tasks: "
                    f"{', '.join(map(repr, tasks))}"
                )
            index = tasks.index(task)
            attentions = [a.unflatten(0, (batch_size, folded))[:, index] for a in attentions]
        total_tokens = sum(n for _, n in layout)
        row = rollout(attentions)[:, 0]  # (B, S): the query token's row
        return row[:, row.shape[1] - total_tokens :]

    # -- tests -----------------------------------------------------------------------------------

    @classmethod
    def example_modalities(cls) -> dict[str, str]:
        """Modalities (name -> kind) of a small example of this core."""
        return {"labs": "tabular", "note": "text", "vitals": "series"}

    @classmethod
    def example_options(cls) -> dict[str, Any]:
        """Options of a tiny, fast instance for the registry-wide tests."""
        return {}

    def example_stream(
        self, modality: str, batch_size: int, generator: torch.Generator
    ) -> tuple[Tensor, Tensor]:
        """A random stream ``(value, mask)`` of ``modality`` as the core reads it: tokens
        ``(B, 3, dim)`` and an all-valid mask unless the core reads the modality raw."""
        tokens = torch.randn(batch_size, 3, self.dim, generator=generator)
        return tokens, torch.ones(batch_size, 3, dtype=torch.bool)
