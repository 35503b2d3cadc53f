"""The DiffCPS paper's headline numbers, to print beside ours.

Source: He et al., "DiffCPS: Diffusion Model based Constrained Policy Search for Offline
Reinforcement Learning", Table 1 (column "DiffCPS (ours)"): D4RL normalised score,
best evaluation over the run (best-of-run), mean +- std over 5 seeds, copied from the
paper's table (docs/method.md lists the same means).

The authors' AntMaze runs used D4RL's v0 datasets; our registry also has v2 (fixed
timeouts). Both names map to the paper's number, and the report says when a v2 task is
compared with a v0 number.
"""

from __future__ import annotations

from dataclasses import dataclass

PAPER_SOURCE = (
    "He et al., DiffCPS (Diffusion Model based Constrained Policy Search), Table 1: "
    "D4RL normalised score, best-of-run, mean ± std over 5 seeds"
)


@dataclass(frozen=True)
class PaperNumber:
    """One cell of Table 1."""

    mean: float
    std: float
    dataset_version: str  # the D4RL dataset version the paper ran on


_LOCOMOTION = {
    "halfcheetah-medium-v2": (71.0, 0.5),
    "hopper-medium-v2": (100.1, 3.5),
    "walker2d-medium-v2": (90.9, 1.6),
    "halfcheetah-medium-replay-v2": (50.5, 0.6),
    "hopper-medium-replay-v2": (101.1, 0.2),
    "walker2d-medium-replay-v2": (91.3, 0.7),
    "halfcheetah-medium-expert-v2": (100.3, 4.1),
    "hopper-medium-expert-v2": (112.1, 0.6),
    "walker2d-medium-expert-v2": (113.1, 1.8),
}

_ANTMAZE = {
    "antmaze-umaze": (97.4, 3.7),
    "antmaze-umaze-diverse": (87.4, 3.8),
    "antmaze-medium-play": (88.2, 2.2),
    "antmaze-medium-diverse": (87.8, 6.5),
    "antmaze-large-play": (65.6, 3.6),
    "antmaze-large-diverse": (63.6, 3.9),
}

# The paper's own suite averages (Table 1, "Average" rows).
PAPER_SUITE_AVERAGE = {"locomotion": 92.26, "antmaze": 81.67}


def _build_table() -> dict[str, PaperNumber]:
    table = {name: PaperNumber(m, s, "v2") for name, (m, s) in _LOCOMOTION.items()}
    for stem, (m, s) in _ANTMAZE.items():
        # Same paper number for both dataset versions; the paper ran v0.
        table[f"{stem}-v0"] = PaperNumber(m, s, "v0")
        table[f"{stem}-v2"] = PaperNumber(m, s, "v0")
    return table


PAPER_TABLE1: dict[str, PaperNumber] = _build_table()


def paper_number(task: str) -> PaperNumber | None:
    """Table 1's entry for a task name of our registry, or None (e.g. PointMaze)."""
    return PAPER_TABLE1.get(task)
