"""One persisted Optuna study per task: where it lives, how it proposes, how it resumes.

By default each task's study is a journal file inside the experiment directory
(``optuna/<task>.journal``): Optuna's journal storage appends one line per event and locks
the file with ``open(O_EXCL)``, which works on the NFS-style shared file systems a cluster
mounts, and needs no database server. ``--optuna-storage URL`` puts every study in a
database instead (sqlite:///..., postgresql://...). Either way ``optuna.load_study`` and
optuna-dashboard open a study from what experiment.json records
(``phases.search.tasks[task].optuna_storage`` and ``study_name``). For an experiment on a
URI (s3://...), the journals live in a local mirror that ``JournalMirror`` uploads.

Proposals: TPE with the paper's point first, random start-up trials scaled to the budget
(Optuna's default of 10 would leave a 16-trial search only 6 model-guided proposals) and
the constant liar on, so that trials proposed while others are still running do not all
land on the same point. The sampler is seeded per proposal, from the task's seed and the
proposal's index, so a resumed search continues where it stopped: a sampler seeded once
per process would replay its first draws after every resume and propose configs again.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import shutil
from dataclasses import dataclass
from typing import Any

from diffcps_ray.tune.record import TrialStatus

JOURNAL_DIR = "optuna"
# Optuna's record of an enqueued trial's fixed parameters (Study.enqueue_trial).
_ENQUEUED = "fixed_params"


def sampler_seed(suite: str, task: str) -> int:
    """A stable per-task seed for Optuna's sampler (Python's hash() is salted per process)."""
    return int.from_bytes(hashlib.sha256(f"{suite}/{task}".encode()).digest()[:4], "little")


def proposal_seed(task_seed: int, index: int) -> int:
    """The sampler's seed for the ``index``-th proposal of a task's search."""
    digest = hashlib.sha256(f"{task_seed}/{index}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def startup_trials(num_samples: int) -> int:
    """Random proposals before TPE models the scores: a quarter of the budget, 2 to 10."""
    return max(2, min(10, num_samples // 4))


@dataclass(frozen=True)
class StudyLocation:
    """Where one task's study lives: ``url`` (an RDB URL) or ``journal`` (a local path)."""

    study_name: str
    url: str | None = None
    journal: str | None = None

    def storage(self) -> Any:
        if self.url:
            return self.url
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend, JournalFileOpenLock

        os.makedirs(os.path.dirname(self.journal), exist_ok=True)
        # The open(O_EXCL) lock works where symlinks do not (some shared file systems).
        backend = JournalFileBackend(self.journal, lock_obj=JournalFileOpenLock(self.journal))
        return JournalStorage(backend)


class TaskStudy:
    """A task's study, proposing with a sampler seeded by each proposal's index."""

    def __init__(self, location: StudyLocation, seed: int, num_samples: int,
                 paper_point: dict[str, float]) -> None:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self.seed = seed
        self.num_samples = num_samples
        self.study = optuna.create_study(
            study_name=location.study_name, storage=location.storage(),
            sampler=self._sampler(0), direction="maximize", load_if_exists=True,
        )
        if not self.study.trials:
            self.study.enqueue_trial(paper_point)

    def _sampler(self, index: int) -> Any:
        import optuna

        return optuna.samplers.TPESampler(
            seed=proposal_seed(self.seed, index),
            n_startup_trials=startup_trials(self.num_samples), constant_liar=True,
            multivariate=True,
        )

    def propose(self, index: int,
                distributions: dict[str, tuple[float, float]]) -> tuple[dict[str, float], int]:
        """The ``index``-th proposal (log-uniform ranges): its params and trial number."""
        import optuna

        self.study.sampler = self._sampler(index)
        trial = self.study.ask(fixed_distributions={
            name: optuna.distributions.FloatDistribution(low, high, log=True)
            for name, (low, high) in distributions.items()
        })
        return dict(trial.params), trial.number

    def tell(self, number: int, status: TrialStatus, score: float | None) -> None:
        """A proposal's ending: failed, complete with its score, or pruned without one."""
        import optuna

        if status == TrialStatus.ERROR:
            state, value = optuna.trial.TrialState.FAIL, None
        elif score is None:
            state, value = optuna.trial.TrialState.PRUNED, None
        else:
            state, value = optuna.trial.TrialState.COMPLETE, score
        self.study.tell(number, value, state=state, skip_if_finished=True)

    def forget_unknown(self, known: set[int]) -> list[int]:
        """Fail the running trials the sweep does not know; returns their numbers.

        ``study.ask`` writes at once, the sweep's plan only at Tune's next save: after a
        hard kill, trials asked in between stay RUNNING in the study, and the constant
        liar would keep penalising their region. An orphaned enqueued trial (the paper's
        point) is enqueued again, so that it is still proposed.
        """
        import optuna

        orphans = [t for t in self.study.get_trials(deepcopy=False,
                                                    states=(optuna.trial.TrialState.RUNNING,))
                   if t.number not in known]
        for trial in orphans:
            self.study.tell(trial.number, state=optuna.trial.TrialState.FAIL,
                            skip_if_finished=True)
            if _ENQUEUED in trial.system_attrs:
                self.study.enqueue_trial(dict(trial.system_attrs[_ENQUEUED]))
        return [t.number for t in orphans]


class JournalMirror:
    """For an experiment on a URI store: journals in a local mirror, copied up and down.

    Optuna's journal needs a file system with locks; an object store has none.
    """

    def __init__(self, store: Any, tasks: list[str]) -> None:
        self.store = store
        self.tasks = tasks

    @property
    def remote(self) -> bool:
        return "://" in self.store.uri

    def local_dir(self) -> str:
        if not self.remote:
            return os.path.join(self.store.uri, JOURNAL_DIR)
        digest = hashlib.sha256(self.store.uri.encode()).hexdigest()[:16]
        return os.path.join(os.path.expanduser("~/.cache/diffcps-ray/optuna"), digest)

    def _pairs(self) -> list[tuple[str, str]]:
        if not self.remote:
            return []
        return [(os.path.join(self.local_dir(), f"{task}.journal"),
                 posixpath.join(self.store.fs_path, JOURNAL_DIR, f"{task}.journal"))
                for task in self.tasks]

    def upload(self) -> None:
        import pyarrow.fs

        for local, remote in self._pairs():
            if os.path.isfile(local):
                self.store.filesystem.create_dir(posixpath.dirname(remote), recursive=True)
                pyarrow.fs.copy_files(local, remote,
                                      source_filesystem=pyarrow.fs.LocalFileSystem(),
                                      destination_filesystem=self.store.filesystem)

    def download(self) -> None:
        import pyarrow.fs

        for local, remote in self._pairs():
            info = self.store.filesystem.get_file_info(remote)
            if info.type == pyarrow.fs.FileType.File:
                os.makedirs(os.path.dirname(local), exist_ok=True)
                if os.path.exists(local):
                    shutil.copyfile(local, local + ".previous")
                pyarrow.fs.copy_files(remote, local, source_filesystem=self.store.filesystem,
                                      destination_filesystem=pyarrow.fs.LocalFileSystem())


def check_storage_url(url: str) -> None:
    """Stop with one sentence unless Optuna can open ``--optuna-storage URL`` (before Ray)."""
    from diffcps_ray.errors import ConfigError, first_line

    try:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        optuna.storages.RDBStorage(url).remove_session()
    except Exception as reason:  # sqlalchemy's parse and connect errors, a missing driver
        raise ConfigError(
            f"--optuna-storage {url} cannot be opened ({first_line(reason).rstrip('.')}); give a "
            "database URL such as sqlite:///studies.db or postgresql://user@host/db."
        ) from None
