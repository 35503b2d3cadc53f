"""One persisted Optuna study per task: where it lives, how it samples, how it is reopened.

By default each task's study is a journal file inside the experiment directory
(``optuna/<task>.journal``): Optuna's journal storage appends one line per event and locks
the file with ``open(O_EXCL)``, which works on the NFS-style shared file systems a cluster
mounts, and needs no database server. ``--optuna-storage URL`` puts every study in a
database instead (sqlite:///..., postgresql://...). Either way ``optuna.load_study`` and
optuna-dashboard open a study from what experiment.json records
(``phases.search.tasks[task].optuna_storage`` and ``study_name``).

The sampler is TPE, seeded per task, with its random start-up trials scaled to the
budget's number of samples (Optuna's default of 10 would leave a 16-trial search only 6
model-guided proposals) and the constant liar on, so that trials proposed while others
are still running do not all land on the same point.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Any

JOURNAL_DIR = "optuna"


def sampler_seed(suite: str, task: str) -> int:
    """A stable per-task seed for Optuna's sampler (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(f"{suite}/{task}".encode()).digest()[:4], "little")


def startup_trials(num_samples: int) -> int:
    """Random proposals before TPE models the scores: a quarter of the budget, 2 to 10."""
    return max(2, min(10, num_samples // 4))


@dataclass(frozen=True)
class StudyLocation:
    """Where one task's study lives: ``url`` (an RDB URL) or ``journal`` (a local path)."""

    study_name: str
    url: str | None = None
    journal: str | None = None

    @property
    def recorded(self) -> str:
        """What experiment.json records as ``optuna_storage`` (set relative by the caller)."""
        return self.url if self.url else str(self.journal)

    def storage(self) -> Any:
        if self.url:
            return self.url
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        os.makedirs(os.path.dirname(self.journal), exist_ok=True)
        # The open(O_EXCL) lock works where symlinks do not (some shared file systems).
        backend = JournalFileBackend(self.journal, lock_obj=JournalFileOpenLock(self.journal))
        return JournalStorage(backend)


def open_study(location: StudyLocation, seed: int, num_samples: int,
               paper_point: dict[str, float]) -> Any:
    """Create the study, or load it when it exists; a new study gets the paper's point first."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=startup_trials(num_samples), constant_liar=True,
        multivariate=True,
    )
    study = optuna.create_study(
        study_name=location.study_name, storage=location.storage(), sampler=sampler,
        direction="maximize", load_if_exists=True,
    )
    if not study.trials:
        study.enqueue_trial(paper_point)
    return study


def check_storage_url(url: str) -> None:
    """Stop with one sentence unless Optuna can open ``--optuna-storage URL`` (before Ray)."""
    from diffcps_ray.errors import ConfigError

    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        optuna.storages.RDBStorage(url).remove_session()
    except Exception as reason:  # sqlalchemy's parse and connect errors, a missing driver
        first = (str(reason).strip().splitlines() or [type(reason).__name__])[0]
        raise ConfigError(
            f"--optuna-storage {url} cannot be opened ({first.rstrip('.')}); give a "
            "database URL such as sqlite:///studies.db or postgresql://user@host/db."
        ) from None
