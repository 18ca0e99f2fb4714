"""What a search leaves beside its study: ``OUT/tune.md`` (every trial) and ``OUT/best.yaml``
(the best trial's run config, ready for ``polymodal fit -c``). Both are rewritten after every
trial, so an interrupted search still has them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from polymodal.tuning.base_config import BaseConfig
from polymodal.tuning.space import tidy


@dataclass(frozen=True)
class SearchSetup:
    """What a search was: its cohort, base config, space, and the metric it optimises."""

    cohort: str
    base: BaseConfig
    space_source: str
    monitor: str
    direction: str  # "maximize" or "minimize"


def complete_trials(study: Any) -> list[Any]:
    import optuna

    return [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]


def write_summary(study: Any, out: Path, setup: SearchSetup) -> Path | None:
    """Write ``OUT/tune.md`` and, once a trial has completed, ``OUT/best.yaml`` (returned)."""
    best = study.best_trial if complete_trials(study) else None
    (Path(out) / "tune.md").write_text(_markdown(study, setup, best))
    if best is None:
        return None
    header = [
        f"polymodal tune: trial {best.number} of study {study.study_name!r} on {setup.cohort}",
        f"{setup.monitor} = {best.value:.4g} on the validation split (the best of "
        f"{len(complete_trials(study))} complete trials)",
        "Train it: polymodal fit SPEC -c best.yaml -o RUN",
    ]
    path = Path(out) / "best.yaml"
    values = {key: tidy(value) for key, value in best.params.items()}
    path.write_text(setup.base.as_yaml(values, header))
    return path


def _markdown(study: Any, setup: SearchSetup, best: Any) -> str:
    counts: dict[str, int] = {}
    for trial in study.trials:
        counts[trial.state.name.lower()] = counts.get(trial.state.name.lower(), 0) + 1
    base = str(setup.base.path) if setup.base.path else "the defaults"
    sets = "".join(f" `--set {s}`" for s in setup.base.overrides)
    lines = [
        f"# polymodal tune: {study.study_name}",
        "",
        f"Cohort {setup.cohort}; base run config {base}{sets}; search space {setup.space_source}.",
        f"Trials are scored on **{setup.monitor}** ({setup.direction}), the best epoch's value "
        "on the validation split; the test split is not read.",
        f"Trials: {len(study.trials)} ({', '.join(f'{n} {s}' for s, n in counts.items())}).",
        "",
    ]
    if best is not None:
        lines += [
            f"Best: trial {best.number}, {setup.monitor} = {best.value:.4g}; its run config is "
            "`best.yaml` (`polymodal fit SPEC -c best.yaml -o RUN`), its model folder "
            f"`{best.user_attrs.get('folder', '?')}/model`.",
            "",
        ]
    return "\n".join(lines + _table(study, setup.monitor)) + "\n"


def _table(study: Any, monitor: str) -> list[str]:
    """One row per trial: state, score, epochs reported, the drawn values, seconds, note."""
    keys = list(dict.fromkeys(k for t in study.trials for k in t.params))
    header = ["trial", "state", monitor, "epochs", *keys, "seconds", "note"]
    rows = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for trial in study.trials:
        seconds = trial.duration.total_seconds() if trial.duration is not None else None
        cells = [
            trial.number,
            trial.state.name.lower(),
            _cell(trial.value),
            len(trial.intermediate_values),
            *(_cell(trial.params.get(k)) for k in keys),
            _cell(seconds),
            trial.user_attrs.get("error", "").replace("|", "\\|"),
        ]
        rows.append("| " + " | ".join(str(c) for c in cells) + " |")
    return rows


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.4g}" if isinstance(value, float) else str(value)
