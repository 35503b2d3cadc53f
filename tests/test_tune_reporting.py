"""What a sweep prints and records (issue 13): the lambda_clip trials run with, the
experiment's own directory, no Ray start-up warnings, and TensorBoard event files that
tensorboard's own reader parses. One real smoke sweep serves all of the end-to-end checks.
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from diffcps_ray.cli import run_main
from diffcps_ray.errors import ConfigError
from diffcps_ray.tune import cli as tune_cli
from diffcps_ray.tune.console import best_trial_line
from diffcps_ray.tune.tracking import check_loggers, logger_callbacks

ROOT = Path(__file__).resolve().parents[1]
# Each is the start of a warning a sweep used to print (Ray 2.60).
UNWANTED = (
    "PYTHON worker processes have been started",  # raylet: worker start-up concurrency
    "Token authentication is",  # enabled by default / disabled: RAY_AUTH_MODE unset
    "DataContext",  # Ray Data's deprecated DataContext settings
    "/tmp/ray/session_",  # Tune's staging directory in place of the experiment's own
)


# --- without Ray ---------------------------------------------------------------------------


def test_the_best_trial_line_shows_the_lambda_clip_the_trial_runs_with() -> None:
    config = {"task": "pointmaze-umaze", "kappa": 0.05, "lambda_clip": 0.001, "seed": 0,
              "run": {"lambda_clip_zero_below": 0.001}}
    result = {"evaluation": {"normalized_score": 41.26}}
    line = best_trial_line("abc", config, result)
    assert line == ("Current best trial: abc (task pointmaze-umaze, kappa 0.05, lambda_clip 0, "
                    "seed 0): score 41.3")
    config["lambda_clip"] = 0.2
    assert "lambda_clip 0.2," in best_trial_line("abc", config, {})
    assert best_trial_line("abc", config, {}).endswith(": no score yet")


def test_loggers_always_include_tunes_csv_and_json_loggers() -> None:
    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback, TBXLoggerCallback

    plain = logger_callbacks([])
    assert [type(c) for c in plain] == [CSVLoggerCallback, JsonLoggerCallback]
    # A repeated --logger adds its callback once.
    with_tb = logger_callbacks(["tensorboard", "tensorboard"])
    assert [type(c) for c in with_tb][2:] == [TBXLoggerCallback]


@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_a_missing_tracker_package_is_one_sentence_naming_the_extra(
    name: str, tmp_path: Path, capsys
) -> None:
    if importlib.util.find_spec(name) is not None:
        pytest.skip(f"{name} is installed here")
    with pytest.raises(ConfigError, match=rf"pip install 'diffcps-ray\[{name}\]'"):
        check_loggers([name])
    argv = ["--logger", name, "--storage", str(tmp_path / "runs"),
            "--data-root", str(tmp_path / "data")]
    assert run_main(tune_cli.main, argv) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: --logger {name} needs the {name} package: pip install 'diffcps-ray[{name}]' "
        f"(or pip install -e '.[{name}]' in a checkout)."
    )
    # Stopped before generating data or starting the experiment.
    assert not (tmp_path / "runs").exists() and not (tmp_path / "data").exists()


# --- the session's smoke sweep (tests/conftest.py, run with --logger tensorboard) -----------


def _trial_dirs(experiment: Path) -> list[Path]:
    return sorted(p.parent for p in experiment.glob("*/*/params.json"))


@pytest.mark.slow
def test_the_sweep_prints_none_of_rays_start_up_warnings(smoke_sweep_run) -> None:
    done, experiment = smoke_sweep_run
    output = done.stdout + done.stderr
    for text in UNWANTED:
        assert text not in output, f"{text!r} in the sweep's output"
    assert f"Experiment directory: {experiment}/sweep" in done.stdout


@pytest.mark.slow
def test_the_table_shows_the_lambda_clip_trials_run_with(smoke_sweep_run) -> None:
    done, experiment = smoke_sweep_run
    manifest = json.loads((experiment / "experiment.json").read_text())
    # The paper's point comes first: lambda_clip 0, sampled as its range's floor.
    paper = next(r for r in manifest["trials"] if r["phase"] == "search"
                 and r["lambda_clip"] == 0.0)
    params = json.loads((experiment / paper["path"] / "params.json").read_text())
    assert params["lambda_clip"] > 0  # sampled: the floor
    last = (experiment / paper["path"] / "result.json").read_text().splitlines()[-1]
    assert json.loads(last)["lambda_clip"] == 0.0  # what it ran with

    # Each table has its own header; the lambda_clip column appears with the first result.
    shown, columns = set(), []
    for line in done.stdout.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| Trial name"):
            columns = cells
        elif line.startswith("| ") and paper["trial_id"] in line and "lambda_clip" in columns:
            shown.add(cells[columns.index("lambda_clip")])
    assert shown - {""} == {"0"}, shown  # "": a pending row under a later header
    best_lines = [line for line in done.stdout.splitlines()
                  if line.startswith("Current best trial:")]
    assert best_lines and all("lambda_clip" in line for line in best_lines)
    assert not any(f"lambda_clip {params['lambda_clip']:g}" in line for line in best_lines)


@pytest.mark.slow
def test_tensorboard_event_files_hold_the_score_kappa_lambda_and_losses(smoke_sweep_run) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    _, experiment = smoke_sweep_run
    trials = _trial_dirs(experiment)
    assert {t.name.split("_")[0] for t in trials} == {"search", "confirm"}
    for trial in trials:
        (events,) = trial.glob("events.out.tfevents.*")
        reader = EventAccumulator(str(events))
        reader.Reload()
        tags = set(reader.Tags()["scalars"])
        for tag in ("evaluation/normalized_score", "evaluation/best_normalized_score",
                    "kappa", "lambda_clip", "learners/default_policy/lambda",
                    "learners/default_policy/critic_loss",
                    "learners/default_policy/diffusion_loss",
                    "learners/default_policy/actor_loss"):
            assert f"ray/tune/{tag}" in tags, (trial, tag)
        scores = [e.value for e in reader.Scalars("ray/tune/evaluation/normalized_score")]
        last = json.loads((trial / "result.json").read_text().splitlines()[-1])
        assert math.isclose(scores[-1], last["evaluation"]["normalized_score"], rel_tol=1e-5)
        params = json.loads((trial / "params.json").read_text())
        assert reader.Scalars("ray/tune/kappa")[-1].value == pytest.approx(params["kappa"])


_PRIVATE_RAY = """
import ray
from diffcps_ray.tune.ray_start import ray_init_settings

ray.init(address="local", num_cpus=1, **ray_init_settings(None, 1))
print(ray.get(ray.remote(lambda: __import__("os").environ["RAY_AUTH_MODE"]).remote()))
ray.shutdown()
"""


@pytest.mark.slow
def test_a_local_ray_uses_a_token_and_writes_nothing_into_home(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(HOME=str(home), OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", _PRIVATE_RAY], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["token"]  # workers run with token authentication on
    assert not (home / ".ray").exists()  # no ~/.ray/auth_token for `ray start` to find later
