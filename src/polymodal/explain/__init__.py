"""Which data elements drove a prediction: occlusion and attention rollout (M3FM, methods.md §2.2).

* :func:`explain_model` runs a model folder over a manifest and ranks the elements (whole
  modalities, tabular fields, sentences, image / volume regions, series channels) of one task.
* :mod:`~polymodal.explain.elements`: what an element is and how it is removed (as real data
  goes missing).
* :mod:`~polymodal.explain.occlusion`: the change of the prediction without each element.
* :mod:`~polymodal.explain.rollout`: attention rollout for the fusion cores that declare it
  (:func:`rollout_cores` lists them); :mod:`~polymodal.explain.token_map` maps token shares to
  elements.
* :mod:`~polymodal.explain.overlay`: region relevance over images and volume slices (PNG).
"""

from polymodal.explain.elements import Element, occlusions, split_sentences, text_sentences
from polymodal.explain.explainer import ExplainResult, explain_model, resolve_task, summarize
from polymodal.explain.rollout import (
    modality_token_shares,
    recording_attention,
    rollout,
    rollout_cores,
    supports_rollout,
)

__all__ = [
    "Element",
    "ExplainResult",
    "explain_model",
    "modality_token_shares",
    "occlusions",
    "recording_attention",
    "resolve_task",
    "rollout",
    "rollout_cores",
    "split_sentences",
    "summarize",
    "supports_rollout",
    "text_sentences",
]
