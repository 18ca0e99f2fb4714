"""Prediction heads and their losses: the public entry point.

Each target kind builds its own head (:mod:`polymodal.targets`, one file per kind); the base
classes live in :mod:`polymodal.targets.head`. Build a head with :func:`create_head` from a
``target_info`` dict (made by the data layer, ``Preprocessor.target_info``)::

    head = create_head("melanoma", {"kind": "binary", "n_outputs": 1, ...}, in_dim=256)
    logits = head(features)                      # (B,) or (B, K) as the kind says
    loss = head.loss(logits, target, target_mask)
    head.predict(logits)                         # {"probability": (B,)}
"""

from __future__ import annotations

from polymodal.targets import Head, PerSampleHead, create_head, masked_weighted_mean

__all__ = ["Head", "PerSampleHead", "create_head", "masked_weighted_mean"]
