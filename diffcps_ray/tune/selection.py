"""Which search trial a task confirms: the top score, unless it does not beat the paper's
config beyond the evaluation's noise. Pure functions over experiment rows; no Ray.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from diffcps_ray.tune.record import TrialRow, TrialStatus

SELECTION_MARGIN_SE = 2.0
"""A searched config replaces the paper's only if it scores this many standard errors of
the difference above it: with 10 evaluation episodes (+-12 points, docs/pointmaze.md),
picking the top score alone is a coin flip between close trials."""


TOP_SCORE = "the top-scoring trial"  # the reason when the top trial is chosen


@dataclass(frozen=True)
class Selection:
    """The chosen trial (None: no successful trial) and why it was chosen."""

    chosen: TrialRow | None
    reason: str

    @property
    def kept_paper(self) -> bool:
        """The paper's config was kept over a higher-scoring one (``reason`` says why)."""
        return self.chosen is not None and self.reason != TOP_SCORE


def pick_best(rows: list[TrialRow]) -> TrialRow | None:
    """The best trial by its last score, preferring trials that ran the full length."""
    scored = [r for r in rows if r.status != TrialStatus.ERROR and r.score is not None]
    full = [r for r in scored if r.status == TrialStatus.TERMINATED]
    pool = full or scored
    return max(pool, key=lambda r: r.score) if pool else None


def evaluation_se(row: TrialRow) -> float | None:
    """The standard error of a trial's last evaluation: sample spread / sqrt(episodes).

    None with fewer than two episodes, where the spread cannot be estimated.
    """
    if row.score_std is None or row.eval_episodes is None or row.eval_episodes < 2:
        return None
    return row.score_std / math.sqrt(row.eval_episodes)


def _is_paper(row: TrialRow, paper: dict[str, float]) -> bool:
    values = {"kappa": row.kappa, "lambda_clip": row.lambda_clip}
    return all(values.get(k) is not None
               and math.isclose(values[k], v, rel_tol=1e-6, abs_tol=1e-12)
               for k, v in paper.items())


def select(rows: list[TrialRow], paper: dict[str, float]) -> Selection:
    """The top-scoring trial, or the paper's config's trial when the top one does not lead
    it by ``SELECTION_MARGIN_SE`` standard errors of the difference.

    ``paper``: the paper's kappa and lambda_clip as trials run them. The paper's trial is
    kept when it ran as long as the top one and the lead is within the margin, or when the
    noise cannot be estimated (an evaluation of fewer than two episodes): a lead that
    cannot be told from noise does not replace the paper's config.
    """
    best = pick_best(rows)
    if best is None:
        return Selection(None, "no successful search trial")
    matches = [r for r in rows if r.status == best.status and r.score is not None
               and _is_paper(r, paper)]
    if not matches or best in matches:
        return Selection(best, TOP_SCORE)
    paper_row = max(matches, key=lambda r: r.score)
    errors = [evaluation_se(best), evaluation_se(paper_row)]
    lead = best.score - paper_row.score
    if None in errors:
        return Selection(paper_row, (
            f"kept the paper's config: the top trial led it by {lead:.1f} points, but "
            f"evaluations of fewer than two episodes cannot tell that from noise"))
    margin = SELECTION_MARGIN_SE * math.hypot(*errors)
    if lead >= margin:
        return Selection(best, TOP_SCORE)
    return Selection(paper_row, (
        f"kept the paper's config: the top trial led it by {lead:.1f} points, less than "
        f"{SELECTION_MARGIN_SE:g} standard errors of the difference ({margin:.1f})"))
