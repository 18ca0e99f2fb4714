"""One trial of a search: draw the values, fit the run config they give, return its best
validation score.

A trial is an ordinary :func:`polymodal.training.fit.fit` into ``OUT/trials/NNN/`` (the trial's
number), with :class:`~polymodal.tuning.pruning.ReportToTrial` among its callbacks. Its score is
the fit's best epoch's monitored metric, which fit computes on the validation split; the
objective never reads the test split (fit builds its datasets from ``train`` and ``val`` only).
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from polymodal.data.manifest import Cohort
from polymodal.data.spec import CohortSpec
from polymodal.errors import PolymodalError
from polymodal.training.fit import fit
from polymodal.tuning.base_config import BaseConfig
from polymodal.tuning.pruning import ReportToTrial
from polymodal.tuning.space import SearchSpace


def trial_folder(out: Path, number: int) -> Path:
    """``OUT/trials/NNN``: where trial ``number`` fits."""
    return Path(out) / "trials" / f"{number:03d}"


@dataclass
class Objective:
    """``objective(trial) -> score`` for ``study.optimize``.

    Args:
        spec, cohort: the cohort (loaded once, shared by the trials).
        base: the run config the trials start from.
        space: what each trial draws.
        out: the search folder.
        monitor: the validation metric the study optimises (every trial's fit must select on it).
        extra: overrides every trial gets but ``best.yaml`` does not (the shared sample cache).
    """

    spec: CohortSpec
    cohort: Cohort
    base: BaseConfig
    space: SearchSpace
    out: Path
    monitor: str
    extra: list[str] = field(default_factory=list)

    def __call__(self, trial: Any) -> float:
        try:
            return self._score(trial)
        except PolymodalError as err:
            # Values that build no valid model (a width the core's heads do not divide, …):
            # the study records the trial as failed, with why, and goes on.
            trial.set_user_attr("error", str(err).splitlines()[0])
            raise

    def _score(self, trial: Any) -> float:
        values = self.space.suggest(trial)
        folder = trial_folder(self.out, trial.number)
        trial.set_user_attr("folder", str(folder.relative_to(self.out)))
        run = self.base.load(values, self.extra)
        try:
            result = fit(
                self.spec,
                folder,
                run,
                cohort=self.cohort,
                progress=False,
                callbacks=[ReportToTrial(trial, self.monitor)],
            )
        finally:
            # The model folder keeps the best epoch's weights; the checkpoints (only there to
            # resume a fit) would double every trial's size on disk.
            shutil.rmtree(folder / "checkpoints", ignore_errors=True)
        if result.monitor != self.monitor:
            raise PolymodalError(
                f"trial {trial.number} selected on {result.monitor}, the study on {self.monitor}; "
                "train.monitor cannot be searched"
            )
        if result.best_score is None:
            raise PolymodalError(f"trial {trial.number}: {self.monitor} was never finite")
        return result.best_score
