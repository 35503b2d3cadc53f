"""Which search trial a task confirms (tune/selection.py): the top score, unless it does not
beat the paper's config beyond the evaluation's noise, or the noise cannot be told."""

from __future__ import annotations

from diffcps_ray.tune.record import Phase, TrialRow, TrialStatus
from diffcps_ray.tune.selection import pick_best, select

PAPER = {"kappa": 0.05, "lambda_clip": 0.0}


def _row(kappa: float, lambda_clip: float, score: float | None, status: str = "TERMINATED",
         score_std: float | None = 20.0, episodes: int | None = 10) -> TrialRow:
    return TrialRow(phase=Phase.SEARCH, task="t", trial_id=f"{kappa}-{lambda_clip}-{score}",
                    path="sweep/x", kappa=kappa, lambda_clip=lambda_clip, seed=0,
                    status=TrialStatus(status), score=score, score_std=score_std,
                    eval_episodes=episodes)


def test_a_searched_config_must_beat_the_papers_beyond_evaluation_noise() -> None:
    # 10 episodes with a spread of 20 points: each score +-6.3, their difference +-8.9,
    # so a searched config needs a lead of 2 x 8.9 = 17.9 points.
    paper_row = _row(0.05, 0.0, 60.0)
    close = _row(0.2, 1.5, 75.0)
    chosen = select([paper_row, close, _row(0.1, 0.5, 40.0)], PAPER)
    assert chosen.chosen is paper_row
    assert chosen.reason == (
        "kept the paper's config: the top trial led it by 15.0 points, less than 2 standard "
        "errors of the difference (17.9)"
    )
    assert chosen.kept_paper
    clear = _row(0.2, 1.5, 80.0)
    assert select([paper_row, clear], PAPER).chosen is clear
    assert not select([paper_row, clear], PAPER).kept_paper
    # The paper's trial must have run as long as the top one.
    stopped = _row(0.05, 0.0, 74.0, status="STOPPED_EARLY")
    assert select([stopped, close], PAPER).chosen is close
    assert select([], PAPER).chosen is None


def test_a_lead_measured_on_one_episode_does_not_replace_the_paper() -> None:
    """One episode has no spread to estimate: a lead of any size is not beyond noise."""
    paper_row = _row(0.05, 0.0, 10.0, score_std=None, episodes=1)
    lucky = _row(0.3, 1.0, 95.0, score_std=None, episodes=1)
    chosen = select([paper_row, lucky], PAPER)
    assert chosen.chosen is paper_row
    assert "fewer than two episodes" in chosen.reason
    # The same with a spread recorded under ddof 0 (0 for one episode), as before.
    zero_spread = _row(0.3, 1.0, 95.0, score_std=0.0, episodes=1)
    assert select([_row(0.05, 0.0, 10.0, score_std=0.0, episodes=1), zero_spread],
                  PAPER).chosen.kappa == 0.05


def test_pick_best_prefers_full_length_trials() -> None:
    rows = [_row(0.1, 0.1, 90.0, "STOPPED_EARLY"), _row(0.2, 0.1, 70.0),
            _row(0.3, 0.1, 99.0, "ERROR"), _row(0.4, 0.1, None)]
    assert pick_best(rows).score == 70.0
    assert pick_best([_row(0.1, 0.1, None, "ERROR")]) is None
