"""Former home of the layers shared by the fusion cores, now in :mod:`polymodal.layers`.

Kept only for ``training/modulation.py``'s ``masked_mean`` import; new code imports
:mod:`polymodal.layers.pooling` (and :mod:`polymodal.fusion.streams` for the stream helpers).
"""

from polymodal.layers.pooling import masked_mean

__all__ = ["masked_mean"]
