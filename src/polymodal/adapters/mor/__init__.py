"""MoR adapters (Mixture of Low-varied-Ranks, EI paper): experts of several ranks and a router."""

from polymodal.adapters.mor.config import MoRConfig
from polymodal.adapters.mor.layer import MixtureOfRanks, MoRLinear

__all__ = ["MixtureOfRanks", "MoRConfig", "MoRLinear"]
