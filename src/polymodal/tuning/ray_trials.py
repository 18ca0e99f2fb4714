"""The two ends of a search's trial on Ray Tune: the trainable a Ray worker runs, and the searcher
in the driver that keeps the Optuna study.

A Ray trial runs the same :class:`~polymodal.tuning.objective.Objective` as an Optuna trial,
handed a :class:`RayTrial` in place of an Optuna trial: the values are the ones the driver's
:class:`StudySearch` drew from the study, and each epoch's validation score goes to Ray
(``tune.report``), whose scheduler stops a poor trial. When the fit ends the trial reports once
more, with its outcome. :class:`StudySearch` (Ray's ``OptunaSearch`` on the study in
``OUT/study.db``) turns the reports back into what the Optuna backend records: per-epoch
intermediate values, the best epoch's score, the state (complete, pruned or failed) and the
trial's user attributes (its folder, why it failed).

Only imported once Ray is known to be installed (:func:`polymodal.tuning.ray_backend.require_ray`).
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from collections.abc import Callable
from typing import Any

from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from polymodal.errors import PolymodalError
from polymodal.tuning.objective import Objective
from polymodal.tuning.space import SearchSpace
from polymodal.tuning.study import trial_failures

# The keys of a trial's reports. SCORE is the metric both the searcher and the scheduler read
# (so every report has it); EPOCH is the Optuna step and the scheduler's time, and only the
# per-epoch reports have it; OUTCOME is in the last report only.
SCORE = "score"
EPOCH = "epoch"
OUTCOME = "outcome"
USER_ATTRS = "user_attrs"
# The study's trial number, added to the values a Ray trial gets: its folder is trials/NNN.
NUMBER = "optuna_trial_number"


class RayTrial:
    """What :class:`Objective` and :class:`~polymodal.tuning.pruning.ReportToTrial` ask of an
    Optuna trial, inside a Ray trial.

    Args:
        config: the values :class:`StudySearch` drew (``{dotted key: value}``) and ``NUMBER``.
    """

    def __init__(self, config: dict[str, Any]) -> None:
        self.number = int(config[NUMBER])
        self.params = {key: value for key, value in config.items() if key != NUMBER}
        self.user_attrs: dict[str, Any] = {}
        self.last_epoch: int | None = None

    def suggest_float(self, name: str, *args: Any, **kwargs: Any) -> Any:
        return self.params[name]

    suggest_int = suggest_float
    suggest_categorical = suggest_float

    def set_user_attr(self, key: str, value: Any) -> None:
        self.user_attrs[key] = value

    def report(self, value: float, step: int) -> None:
        """One epoch's validation score, to Ray's searcher and scheduler."""
        self.last_epoch = step
        tune.report({SCORE: value, EPOCH: step, USER_ATTRS: json.dumps(self.user_attrs)})

    def should_prune(self) -> bool:
        # Ray's scheduler stops the trial itself, at the report it decides on.
        return False


def run_trial(config: dict[str, Any], objective: Objective, workdir: str) -> None:
    """The Ray Tune trainable: fit one trial in ``workdir`` and report its outcome.

    ``workdir`` is the folder the search was started in: relative paths (``-o``, ``-c``, a
    ``--set`` file) mean there what they mean to the driver, not in the folder Ray gives the
    trial. A trial whose values build no valid run (or that runs out of GPU memory) reports
    ``failed`` with why, as the Optuna backend records it; the search goes on.
    """
    trial = RayTrial(config)
    try:
        _enter(workdir)
        score = objective(trial)
    except trial_failures() as err:
        trial.user_attrs.setdefault("error", str(err).splitlines()[0])
        outcome, score = "failed", math.nan
    else:
        outcome = "complete"
    tune.report({SCORE: score, OUTCOME: outcome, USER_ATTRS: json.dumps(trial.user_attrs)})


def _enter(workdir: str) -> None:
    try:
        os.chdir(workdir)
    except OSError:
        raise PolymodalError(
            f"{workdir} (where polymodal tune was started) is not a folder on {platform.node()}: "
            "the cohort, the configs and the search folder must be at the same paths on every "
            "machine of the cluster"
        ) from None


class StudySearch(OptunaSearch):
    """Ray's ``OptunaSearch`` on the study of a search, recording trials as the Optuna backend
    does.

    Args:
        space: drawn with the study's sampler (a define-by-run search space).
        study: the search's study (for ``after_trial``).
        storage, sampler: the study's storage and sampler; metric (``SCORE``) and ``mode``.
        deadline: ``time.monotonic()`` after which no new trial starts (``--timeout``).
        after_trial: called with the frozen trial once the study has recorded it.
    """

    def __init__(
        self,
        space: SearchSpace,
        study: Any,
        *,
        storage: Any,
        sampler: Any,
        mode: str,
        deadline: float | None = None,
        after_trial: Callable[[Any], None] | None = None,
    ) -> None:
        super().__init__(
            space.suggest,
            metric=SCORE,
            mode=mode,
            sampler=sampler,
            storage=storage,
            study_name=study.study_name,
        )
        self.study = study
        self.deadline = deadline
        self.after_trial = after_trial
        self._reported: dict[str, set[int]] = {}

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            return Searcher.FINISHED
        config = super().suggest(trial_id)
        if isinstance(config, dict):
            config[NUMBER] = self._ot_trials[trial_id].number
        return config

    def on_trial_result(self, trial_id: str, result: dict[str, Any]) -> None:
        # OptunaSearch reports at Ray's iteration count; the Optuna backend's step is the epoch.
        if EPOCH in result:
            self._report(trial_id, result)

    def on_trial_complete(
        self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False
    ) -> None:
        """Record the trial: complete with its best epoch's score, failed (with why), or pruned
        (Ray's scheduler stopped it; its last report is the epoch it stopped on)."""
        ot_trial = self._ot_trials.get(trial_id)
        if ot_trial is None:  # stopped before it was given values
            return
        result = result or {}
        for key, value in json.loads(result.get(USER_ATTRS, "{}")).items():
            ot_trial.set_user_attr(key, value)
        if EPOCH in result:
            self._report(trial_id, result)
        outcome = result.get(OUTCOME)
        told = {SCORE: result[SCORE]} if outcome == "complete" else None
        super().on_trial_complete(trial_id, told, error=error or outcome == "failed")
        if self.after_trial is not None:
            self.after_trial(self.study.trials[ot_trial.number])

    def _report(self, trial_id: str, result: dict[str, Any]) -> None:
        epoch = int(result[EPOCH])
        reported = self._reported.setdefault(trial_id, set())
        if epoch not in reported:
            self._ot_trials[trial_id].report(float(result[SCORE]), step=epoch)
            reported.add(epoch)

    def save_to_dir(self, checkpoint_dir: str, session_str: str = "default") -> None:
        """Nothing: the study in ``OUT/study.db`` is the search's state, and a rerun of the
        search continues it (Ray's experiment checkpoint is not used)."""
