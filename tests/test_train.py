"""``python -m diffcps_ray.train``: a tiny run writes a checkpoint, progress and
summary.json; bad input ends with one plain sentence and exit status 2."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from diffcps_ray.cli import run_main
from diffcps_ray.data.generate import generate_dataset
from diffcps_ray.data.shards import write_shards
from diffcps_ray.train import main, parse_overrides, parse_value

TASK = "pointmaze-umaze"


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("train-data")
    write_shards(generate_dataset(TASK, 600, seed=1), TASK, root, "generated")
    return root


@pytest.mark.slow
def test_one_run_writes_checkpoint_progress_and_summary(ray_session, data_root, tmp_path, capsys):
    out = tmp_path / "run"
    argv = [
        "--task", TASK, "--data-root", str(data_root), "--out", str(out), "--iterations", "3",
        "--set", "gradient_steps_per_iteration=4", "--set", "batch_size=16",
        "--set", "eval_interval=2", "--set", "eval_episodes=1", "--set", "kappa=0.07",
    ]  # fmt: skip
    assert run_main(main, argv) == 0
    printed = capsys.readouterr().out
    assert "iter 3/3" in printed and "final score" in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["task"] == TASK
    assert summary["settings"]["kappa"] == 0.07
    assert summary["num_gradient_steps"] == 12
    # Evaluated at iteration 2 and (3 is not a multiple of 2) once more at the end.
    assert summary["num_evaluations"] == 2
    assert math.isfinite(summary["final_score"]) and math.isfinite(summary["best_score"])
    assert summary["best_score"] >= summary["final_score"]
    assert (out / "checkpoint" / "rllib_checkpoint.json").is_file()
    rows = [json.loads(line) for line in (out / "progress.jsonl").read_text().splitlines()]
    assert [row["training_iteration"] for row in rows] == [1, 2, 3]
    assert math.isfinite(rows[-1]["learner"]["critic_loss"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set", "kapa=1"], "no such setting (did you mean 'kappa'?)"),
        (["--set", "kappa=-1"], "kappa must be positive"),
        (["--set", "lambda_clip=101"], "must not exceed lambda_max"),
        (["--set", "kappa"], "--set expects KEY=VALUE"),
        (["--iterations", "0"], "expected at least 1"),
    ],
)
def test_bad_input_is_one_sentence(data_root, tmp_path, capsys, extra, message):
    argv = ["--task", TASK, "--data-root", str(data_root), "--out", str(tmp_path), *extra]
    assert run_main(main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and "\n" not in err


def test_missing_data_says_how_to_make_it(tmp_path):
    """Run as a real command: no traceback, exit status 2, the command to run."""
    result = subprocess.run(
        [sys.executable, "-m", "diffcps_ray.train", "--task", "hopper-medium-v2",
         "--data-root", str(tmp_path), "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "python -m diffcps_ray.data convert --d4rl" in result.stderr
    assert not (tmp_path / "out").exists()


def test_set_values_are_typed():
    assert parse_value("3") == 3 and parse_value("3e-4") == 3e-4 and parse_value("0.5") == 0.5
    assert parse_value("true") is True and parse_value("None") is None
    assert parse_value("cql_antmaze") == "cql_antmaze"
    assert parse_overrides(["max_q_backup=false", "eval_interval=5"]) == {
        "max_q_backup": False, "eval_interval": 5,
    }  # fmt: skip
