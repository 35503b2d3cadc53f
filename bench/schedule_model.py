"""What the sweep's order can reach on an ideal cluster: a discrete-event model (issue 11).

    python bench/schedule_model.py --suite antmaze --budget paper --slots 16 32 [--draws 200]
        [--drift 1.0]

No Ray and no processes: a trial starts the instant a slot frees and costs nothing to
start or stop, so the figures are the schedule's own. bench/cluster_sweep.py runs the real
sweep, whose figures add what starting trial processes costs (on a 2-core machine, tens of
seconds for 32 of them); the two side by side separate the schedule from the simulation.

What it models:
- each task's search as Tune's asynchronous ASHA runs it (tune/plan.py gives each task its
  own): at each rung (grace period x reduction factor^k below the search's iterations) a
  trial continues unless its score is below the (1 - 1/reduction factor) quantile of the
  scores recorded at that rung before it; the first trial at a rung always continues;
- scores: each search trial's quality is drawn from N(0, 1), plus ``drift`` x (its proposal
  index / num_samples) because a searcher that learns proposes better configs later (and
  later trials then pass more rungs), plus N(0, 0.5) noise at every rung;
- the plan's order (tune/plan.py ``SweepPlan.suggest``): when a slot frees, a confirmation
  seed of a task whose search has finished starts first; otherwise the search proposal of
  the task with the fewest proposals so far. A task's confirmation seeds can start only
  when all its search trials have ended. ``--order`` swaps in another order to compare:
  search-first (confirmation seeds only when no search proposal is left) or task-by-task
  (each task's search proposals before the next task's, confirmation first).
- the bound as bench/cluster_sweep.py computes it: max(total trial-iterations / slots,
  longest search trial + longest confirmation trial of a task).

Prints, per slot count, one JSON object: the mean utilization and makespan / bound over
``draws`` random draws, their 10th and 90th percentiles, the mean time by which every
search trial had started and the mean length of a search trial (both over the search's
iterations, to compare with a real sweep's).
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import random
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from diffcps_ray.tune.suites import Budget, load_suite  # noqa: E402

RUNG_NOISE = 0.5


@dataclass
class ModelTrial:
    task: int
    phase: str  # "search" | "confirm"
    start: float
    quality: float = 0.0


@dataclass
class ModelTask:
    proposed: int = 0
    ended_search: int = 0
    seeds_started: int = 0
    rungs: dict[int, list[float]] = field(default_factory=dict)


def rung_milestones(budget: Budget) -> list[int]:
    milestones, milestone = [], budget.grace_period
    while milestone < budget.search.iterations:
        milestones.append(milestone)
        milestone *= budget.reduction_factor
    return milestones


ORDERS = ("plan", "search-first", "task-by-task")


def simulate(budget: Budget, tasks: int, slots: int, drift: float, rng: random.Random,
             ordering: str = "plan") -> dict[str, float]:
    """One draw: ``ordering`` on ``slots`` slots; times in iterations."""
    milestones = rung_milestones(budget)
    search_t, confirm_t = budget.search.iterations, budget.confirm.iterations
    cutoff_q = 1.0 - 1.0 / budget.reduction_factor
    states = [ModelTask(rungs={m: [] for m in milestones}) for _ in range(tasks)]
    events: list[tuple[float, int, ModelTrial, int]] = []  # (time, order, trial, rung index)
    order = itertools.count()
    now, free, work, search_work = 0.0, slots, 0.0, 0.0
    longest = [[0.0, 0.0] for _ in range(tasks)]  # per task: longest search, confirmation
    last_search_start = 0.0

    def start_confirmation() -> bool:
        nonlocal free
        for index, state in enumerate(states):
            search_done = state.ended_search == budget.num_samples
            if search_done and state.seeds_started < budget.seeds:
                state.seeds_started += 1
                trial = ModelTrial(index, "confirm", now)
                heapq.heappush(events, (now + confirm_t, next(order), trial, -1))
                free -= 1
                return True
        return False

    def start_next() -> bool:
        if ordering != "search-first" and start_confirmation():
            return True
        if start_search():
            return True
        return ordering == "search-first" and start_confirmation()

    def start_search() -> bool:
        nonlocal free, last_search_start
        open_tasks = [i for i, s in enumerate(states) if s.proposed < budget.num_samples]
        if not open_tasks:
            return False
        # The plan's round-robin; "task-by-task" finishes proposing one task before the next.
        index = (open_tasks[0] if ordering == "task-by-task"
                 else min(open_tasks, key=lambda i: states[i].proposed))
        state = states[index]
        quality = rng.gauss(0.0, 1.0) + drift * state.proposed / budget.num_samples
        state.proposed += 1
        trial = ModelTrial(index, "search", now, quality)
        first_stop = milestones[0] if milestones else search_t
        heapq.heappush(events, (now + first_stop, next(order), trial, 0 if milestones else -1))
        free -= 1
        last_search_start = now
        return True

    while free and start_next():
        pass
    while events:
        now, _, trial, rung = heapq.heappop(events)
        if trial.phase == "search" and 0 <= rung < len(milestones):
            milestone = milestones[rung]
            recorded = states[trial.task].rungs[milestone]
            score = trial.quality + rng.gauss(0.0, RUNG_NOISE)
            # Tune's ASHA cutoff: numpy's percentile of the scores recorded before this one.
            stopped = bool(recorded) and score < np.quantile(recorded, cutoff_q)
            recorded.append(score)
            if not stopped:
                following = milestones[rung + 1] if rung + 1 < len(milestones) else search_t
                next_rung = rung + 1 if rung + 1 < len(milestones) else -1
                heapq.heappush(events, (trial.start + following, next(order), trial, next_rung))
                continue
        length = now - trial.start
        work += length
        free += 1
        state = states[trial.task]
        if trial.phase == "search":
            search_work += length
            longest[trial.task][0] = max(longest[trial.task][0], length)
            state.ended_search += 1
        else:
            longest[trial.task][1] = max(longest[trial.task][1], length)
        while free and start_next():
            pass
    bound = max(work / slots, max(search + confirm for search, confirm in longest))
    return {
        "utilization": work / (slots * now),
        "makespan_over_bound": now / bound,
        "last_search_start": last_search_start / search_t,
        "search_trial_length": search_work / (tasks * budget.num_samples * search_t),
    }


def summarise(draws: list[dict[str, float]], key: str) -> dict[str, float]:
    values = sorted(d[key] for d in draws)
    return {
        "mean": round(statistics.fmean(values), 3),
        "p10": round(values[len(values) // 10], 3),
        "p90": round(values[(9 * len(values)) // 10], 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="antmaze")
    parser.add_argument("--budget", default="paper")
    parser.add_argument("--slots", type=int, nargs="+", default=[16, 32])
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--drift", type=float, default=1.0,
                        help="how much better the searcher's last proposal is than its first, "
                             "in standard deviations of trial quality (default 1.0)")
    parser.add_argument("--order", choices=ORDERS, default="plan",
                        help="plan: the sweep's (confirmation first, search round-robin); "
                             "search-first: confirmation only when no search trial waits; "
                             "task-by-task: one task's search proposals before the next's")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.draws < 10 or min(args.slots) < 1:
        parser.error("--draws must be at least 10 and every --slots at least 1")
    suite = load_suite(args.suite)
    budget = suite.budget(args.budget)
    for slots in args.slots:
        rng = random.Random(args.seed)
        draws = [simulate(budget, len(suite.tasks), slots, args.drift, rng, args.order)
                 for _ in range(args.draws)]
        utilization = summarise(draws, "utilization")
        ratio = summarise(draws, "makespan_over_bound")
        print(json.dumps({
            "bench": "schedule_model",
            "suite": args.suite,
            "budget": args.budget,
            "slots": slots,
            "draws": args.draws,
            "drift": args.drift,
            "order": args.order,
            "utilization": utilization["mean"],
            "makespan_over_bound": ratio["mean"],
            "utilization_p10_p90": [utilization["p10"], utilization["p90"]],
            "makespan_over_bound_p10_p90": [ratio["p10"], ratio["p90"]],
            "last_search_start_over_search_length": summarise(draws, "last_search_start")["mean"],
            "mean_search_trial_over_search_length": summarise(draws, "search_trial_length")["mean"],
        }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
