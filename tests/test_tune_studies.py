"""The per-task Optuna studies (tune/studies.py) across processes: a reopened journal
continues its proposals, and trials asked by a process that died are failed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from diffcps_ray.tune.record import TrialStatus
from diffcps_ray.tune.studies import StudyLocation, TaskStudy, sampler_seed

ROOT = Path(__file__).resolve().parents[1]


def _study(journal: Path, samples: int = 8) -> TaskStudy:
    return TaskStudy(StudyLocation("exp/task", journal=str(journal)), sampler_seed("s", "t"),
                     samples, {"kappa": 0.05, "lambda_clip": 0.01})


SPACE = {"kappa": (0.0167, 0.15), "lambda_clip": (0.001, 2.0)}


def _run_proposals(study: TaskStudy, indices: range) -> list[dict[str, float]]:
    """Propose ``indices`` in order, each told a score before the next is asked."""
    proposed = []
    for index in indices:
        params, number = study.propose(index, SPACE)
        proposed.append(params)
        study.tell(number, TrialStatus.TERMINATED, float(index))
    return proposed


def test_a_reopened_study_continues_its_proposals(tmp_path: Path) -> None:
    """Proposals 0-5 in one process equal 0-2, then a reopened journal's 3-5."""
    uninterrupted = _run_proposals(_study(tmp_path / "whole.journal"), range(6))
    resumed = _run_proposals(_study(tmp_path / "cut.journal"), range(3))
    # A new process after an interrupt reopens the journal.
    resumed += _run_proposals(_study(tmp_path / "cut.journal"), range(3, 6))
    assert resumed == uninterrupted
    assert uninterrupted[0] == {"kappa": 0.05, "lambda_clip": 0.01}  # the paper's first
    assert len({tuple(p.values()) for p in uninterrupted}) == 6


def test_trials_asked_after_the_last_save_are_failed_and_the_paper_point_kept(
        tmp_path: Path) -> None:
    """A process asks two trials and dies before the sweep saves them: the next process
    fails both (no constant-liar penalty forever) and still proposes the paper's point."""
    journal = tmp_path / "t.journal"
    code = ("from tests.test_tune_studies import _study, SPACE; from pathlib import Path\n"
            f"s = _study(Path({str(journal)!r})); s.propose(0, SPACE); s.propose(1, SPACE)\n"
            "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    study = _study(journal)
    assert study.forget_unknown(known=set()) == [0, 1]
    states = [t.state.name for t in study.study.trials]
    assert states == ["FAIL", "FAIL", "WAITING"]  # the paper's point, enqueued again
    params, _ = study.propose(0, SPACE)
    assert params == {"kappa": 0.05, "lambda_clip": 0.01}
