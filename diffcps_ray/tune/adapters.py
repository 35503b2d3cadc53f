"""The sweep plan behind Tune's public interfaces: a Searcher, a Scheduler and a Stopper.

Tune pickles these three objects into the experiment (``tuner.pkl`` and the searcher's
snapshots) and unpickles them on ``Tuner.restore``, so they can hold no live driver. They
find it through ``driving(context)``: the one place a running sweep registers itself for
the duration of ``Tuner.fit``. The searcher's snapshots hold the plan as plain JSON data.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ray.tune.schedulers import FIFOScheduler, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.stopper import Stopper

from diffcps_ray.errors import last_line
from diffcps_ray.results import finite_number
from diffcps_ray.tune.plan import FINISHED, SweepContext, SweepPlan
from diffcps_ray.tune.record import CheckpointKind, CheckpointRef
from diffcps_ray.tune.store import ExperimentStore, trial_id_of
from diffcps_ray.tune.suites import METRIC, MODE


class Driver(SweepContext):
    """What the adapters need of the running sweep besides the plan's SweepContext."""

    plan: SweepPlan | None

    def attach(self, plan: SweepPlan) -> None: ...

    def trial_resources(self) -> dict[str, float]: ...


_driver: Driver | None = None


@contextmanager
def driving(driver: Driver) -> Iterator[None]:
    """Make ``driver`` the one the adapters talk to while a Tuner runs in this process."""
    global _driver
    previous, _driver = _driver, driver
    try:
        yield
    finally:
        _driver = previous


def current_driver() -> Driver | None:
    return _driver


def _plan() -> SweepPlan:
    """The plan of the running sweep: the one the searcher restored and attached.

    Tune pickles the searcher, the scheduler and the stopper separately, so after a
    restore they would not share one plan object.
    """
    if _driver is None or _driver.plan is None:
        raise RuntimeError("The sweep's Tune adapters ran outside adapters.driving(...).")
    return _driver.plan


class SweepSearcher(Searcher):
    """Tune's view of the plan: proposals, completions, and the state Tune snapshots."""

    def __init__(self, plan: SweepPlan) -> None:
        super().__init__(metric=METRIC, mode=MODE)
        self.plan = plan

    def __getstate__(self) -> dict[str, Any]:
        # tuner.pkl holds the searcher as first built; its state lives in the snapshots.
        state = dict(self.__dict__)
        state["plan"] = self.plan.to_state()
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.plan = SweepPlan.from_state(state["plan"])

    def set_search_properties(self, metric: str | None, mode: str | None, config: dict,
                              **spec: Any) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if _driver is not None and _driver.plan is None:  # restored without a snapshot
            _driver.attach(self.plan)
        proposal = self.plan.suggest(trial_id)
        return Searcher.FINISHED if proposal == FINISHED else proposal

    def on_trial_complete(self, trial_id: str, result: dict | None = None,
                          error: bool = False) -> None:
        self.plan.on_complete(trial_id, result, error)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "w") as f:
            json.dump(self.plan.to_state(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path) as f:
            self.plan = SweepPlan.from_state(json.load(f))
        if _driver is not None:
            _driver.attach(self.plan)


def error_message(trial: Any) -> str | None:
    """The last line of a failed trial's error file: our one-sentence error, where it is."""
    path = trial.error_file
    if not path or not os.path.isfile(path):
        return None
    with open(path, errors="replace") as f:
        return last_line(f.read())


def _nonzero(resources: dict[str, float]) -> dict[str, float]:
    return {key.upper(): float(value) for key, value in resources.items() if value}


class SweepScheduler(FIFOScheduler):
    """Per-task ASHA for search trials (the plan's rungs); other trials always continue.

    Trials start in the order the searcher proposed them (FIFO). A restored trial that
    has not started yet takes the resources the resumed sweep asks for.
    """

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True

    def on_trial_add(self, tune_controller: Any, trial: Any) -> None:
        if trial.status in ("PENDING", "PAUSED") and _driver is not None:
            resources = _driver.trial_resources()
            if _nonzero(trial.placement_group_factory.required_resources) != _nonzero(resources):
                trial.update_resources(resources)

    def on_trial_error(self, tune_controller: Any, trial: Any) -> None:
        # Tune calls this just before it tells the searcher; the plan keeps the message
        # for the record (the searcher only hears that the trial failed).
        _plan().note_error(trial.trial_id, error_message(trial))

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict) -> str:
        stop = _plan().on_result(trial.trial_id, result)
        return TrialScheduler.STOP if stop else TrialScheduler.CONTINUE

    def debug_string(self) -> str:
        return "Per-task ASHA (search) and FIFO (confirmation)."


class PlanStopper(Stopper):
    """Stops each trial at its own budget (search and confirmation lengths differ)."""

    def __call__(self, trial_id: str, result: dict) -> bool:
        target = _plan().target_iterations(trial_id)
        return target is not None and int(result.get("training_iteration", 0)) >= target

    def stop_all(self) -> bool:
        return False


class _NoTuneRestoreHint(logging.Filter):
    """Drops Tune's own "Resume experiment with: Tuner.restore(...)" after an interrupt:
    the sweep prints the one command that continues it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Tuner.restore(" not in record.getMessage()


@contextmanager
def tune_fit_guards() -> Iterator[None]:
    """Around ``Tuner.fit``: our resume hint only, and our SIGINT handler back afterwards.

    Tune installs its own SIGINT handler for the fit and leaves it installed when the fit
    ends normally: a Ctrl-C during the policy export would then only set Tune's flag.
    """
    tune_logger = logging.getLogger("ray.tune.tune")
    hint_filter = _NoTuneRestoreHint()
    tune_logger.addFilter(hint_filter)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main_thread else None
    try:
        yield
    finally:
        tune_logger.removeFilter(hint_filter)
        if main_thread and previous is not None:
            signal.signal(signal.SIGINT, previous)


def checkpoint_config() -> Any:
    """Keep the latest checkpoint (to resume) and the best-scoring one (to export).

    Tune orders checkpoints only by a top-level result key; the trainable reports
    ``CHECKPOINT_SCORE``: the evaluation score where the checkpoint's iteration was
    evaluated, NaN elsewhere (Tune ranks NaN lowest), so the kept best is the argmax of
    the evaluated checkpoints. Tune always keeps the latest one besides.
    """
    from ray import tune

    from diffcps_ray.tune.trainable import CHECKPOINT_SCORE

    return tune.CheckpointConfig(
        num_to_keep=1, checkpoint_score_attribute=CHECKPOINT_SCORE,
        checkpoint_score_order=MODE, checkpoint_at_end=True,
    )


def can_restore(experiment_uri: str) -> bool:
    from ray import tune

    return tune.Tuner.can_restore(experiment_uri)


def restore(experiment_uri: str, trainable: Any) -> Any:
    from ray import tune

    return tune.Tuner.restore(
        experiment_uri,
        trainable=trainable,
        resume_unfinished=True,
        # Errored trials failed for good (NaN, or out of retries): don't rerun them.
        resume_errored=False,
    )


# --- Tune's results -> the record's checkpoints --------------------------------------------


def kept_checkpoints(results: Any, store: ExperimentStore) -> dict[
        str, tuple[str | None, dict[CheckpointKind, CheckpointRef | None]]]:
    """Per trial id: its one-line error and its best and final kept checkpoints.

    ``best``: the kept checkpoint with the highest evaluation score at its own iteration
    (tune/adapters.py checkpoint_config); ``final``: the latest one (Tune's
    ``Result.checkpoint``, with the trial's last result).
    """
    from diffcps_ray.tune.trainable import CHECKPOINT_SCORE

    kept: dict[str, tuple[str | None, dict[CheckpointKind, CheckpointRef | None]]] = {}
    for result in results:
        trial_id = trial_id_of(Path(result.path).name)
        # Ray wraps the trial's exception; its last line holds our sentence.
        error = None if result.error is None else (
            last_line(str(result.error)) or type(result.error).__name__)

        def ref(checkpoint: Any, metrics: dict) -> CheckpointRef:
            return CheckpointRef(store.relative(checkpoint.path),
                                 int(metrics.get("training_iteration", 0) or 0),
                                 finite_number(metrics.get(CHECKPOINT_SCORE)))

        scored = [ref(checkpoint, metrics) for checkpoint, metrics
                  in (result.best_checkpoints or []) if checkpoint is not None]
        scored = [item for item in scored if item.score is not None]
        checkpoints: dict[CheckpointKind, CheckpointRef | None] = {
            CheckpointKind.BEST: max(scored, key=lambda item: item.score) if scored else None,
            CheckpointKind.FINAL: None if result.checkpoint is None
            else ref(result.checkpoint, result.metrics or {}),
        }
        kept[trial_id] = (error, checkpoints)
    return kept
