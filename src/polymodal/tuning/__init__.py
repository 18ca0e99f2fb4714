"""Hyperparameter search over a run config with Optuna (``polymodal tune``).

:func:`tune` runs the search; a search space is a YAML file of dotted run-config keys
(:mod:`polymodal.tuning.space`), with a default per fusion core
(:mod:`polymodal.tuning.defaults`); each trial is a fit pruned on its per-epoch validation
metric (:mod:`polymodal.tuning.pruning`). Optuna is the optional ``tune`` extra; the trials
run one after another, or as Ray Tune trials spread over a cluster
(:mod:`polymodal.tuning.ray_backend`, the ``ray`` extra).
"""

from polymodal.tuning.base_config import BaseConfig
from polymodal.tuning.defaults import default_space
from polymodal.tuning.space import ParamSpace, SearchSpace, load_space
from polymodal.tuning.study import TuneResult, study_target, tune

__all__ = [
    "BaseConfig",
    "ParamSpace",
    "SearchSpace",
    "TuneResult",
    "default_space",
    "load_space",
    "study_target",
    "tune",
]
