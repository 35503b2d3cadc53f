"""``python -m diffcps_ray.evaluate``: scores of a train run and of a sweep's best policy,
a video with the expected frames, and bad input answered with one sentence, nothing written."""

from __future__ import annotations

import ctypes.util
import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from diffcps_ray.cli import run_main
from diffcps_ray.evaluate import main, standard_error
from diffcps_ray.policy.core import POLICY_FILE
from tests.conftest import POLICY_TASK

ROOT = Path(__file__).resolve().parents[1]


def _evaluate(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "diffcps_ray.evaluate", *args], cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})},
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def _tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def _check_scores(done: subprocess.CompletedProcess) -> dict:
    assert done.returncode == 0, done.stderr[-3000:]
    last = json.loads(done.stdout.strip().splitlines()[-1])
    assert last["task"] == POLICY_TASK and last["episodes"] == 2
    assert math.isfinite(last["normalized_score"]) and math.isfinite(last["normalized_score_se"])
    assert math.isfinite(last["episode_return_mean"]) and 0.0 <= last["success_rate"] <= 1.0
    # People read the same numbers above the JSON; progress went to stderr while it ran.
    assert f"{POLICY_TASK}: normalised score" in done.stdout and "return" in done.stdout
    assert f"{POLICY_TASK}: 2/2 episodes done" in done.stderr
    return last


@pytest.mark.slow
def test_evaluates_a_train_run(trained_run: Path) -> None:
    last = _check_scores(_evaluate(str(trained_run), "--episodes", "2", "--json"))
    assert last["source"]["kind"] == "train" and last["source"]["iteration"] == 2


@pytest.mark.slow
def test_evaluates_the_best_policy_of_a_smoke_sweep(smoke_sweep: Path) -> None:
    last = _check_scores(_evaluate(str(smoke_sweep), "--episodes", "2", "--seed", "3",
                                   "--json"))
    assert last["source"]["phase"] == "confirm" and last["seed"] == 3


def _rendering_available() -> str | None:
    probe = subprocess.run(
        [sys.executable, "-c", "from diffcps_ray.policy.video import check_rendering; "
         "check_rendering()"],
        cwd=ROOT, env={**os.environ, "MUJOCO_GL": "egl"}, capture_output=True, text=True,
        timeout=120, check=False,
    )  # fmt: skip
    return None if probe.returncode == 0 else probe.stderr.strip().splitlines()[-1]


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".mp4", ".gif"])
def test_video_has_a_frame_per_reset_and_step(trained_run: Path, tmp_path: Path,
                                               suffix: str) -> None:
    reason = _rendering_available()
    if reason:
        pytest.skip(f"MuJoCo cannot render offscreen with EGL here: {reason}")
    import imageio.v3 as iio

    video = tmp_path / f"episodes{suffix}"
    done = _evaluate(str(trained_run), "--episodes", "2", "--video", str(video),
                     "--video-steps", "12", "--json", env={"MUJOCO_GL": "egl"})
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])["video"]
    # Two episodes cut at 12 steps (PointMaze episodes run 300): 2 x (1 reset + 12 steps).
    assert report == {"path": str(video), "episodes": 2, "frames": 26, "fps": report["fps"]}
    frames = iio.imread(video, index=None, **({"plugin": "pillow"} if suffix == ".gif" else {}))
    assert frames.shape[0] == 26 and frames.shape[-1] == 3
    assert frames.std() > 1.0  # a picture of the maze, not a blank frame
    assert _tree(tmp_path) == {video.name}  # no temporary file left behind


@pytest.mark.slow
def test_no_gl_backend_is_one_sentence_and_writes_nothing(trained_run: Path,
                                                          tmp_path: Path) -> None:
    if ctypes.util.find_library("OSMesa"):
        pytest.skip("OSMesa is installed here, so MUJOCO_GL=osmesa would render.")
    video = tmp_path / "episodes.mp4"
    done = _evaluate(str(trained_run), "--episodes", "2", "--video", str(video),
                     env={"MUJOCO_GL": "osmesa"})
    assert done.returncode == 2
    err = done.stderr.strip()
    assert err.startswith("error: Cannot render video") and "\n" not in err
    assert "MUJOCO_GL=osmesa" in err and "MUJOCO_GL=egl" in err
    assert _tree(tmp_path) == set()


def _one_sentence(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert run_main(main, argv) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert err.startswith("error: ") and "\n" not in err, err
    assert captured.out == ""
    return err.removeprefix("error: ")


def test_a_path_that_is_no_run_is_one_sentence(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("not a run")
    video = tmp_path / "v.mp4"
    err = _one_sentence(capsys, [str(tmp_path), "--json", "--video", str(video)])
    assert err == (
        f"{tmp_path} is not a run, experiment or policy directory: it has no policy.json, "
        "experiment.json, summary.json or checkpoint."
    )
    assert _tree(tmp_path) == {"notes.txt"}


@pytest.mark.slow
def test_a_newer_policy_format_is_one_sentence(trained_run: Path, tmp_path: Path,
                                               capsys) -> None:
    newer = tmp_path / "policy"
    shutil.copytree(trained_run / "policy", newer)
    meta = json.loads((newer / POLICY_FILE).read_text())
    meta["format_version"] = 2
    (newer / POLICY_FILE).write_text(json.dumps(meta))
    before = _tree(tmp_path)
    err = _one_sentence(capsys, [str(newer), "--video", str(tmp_path / "v.mp4")])
    assert err.startswith(f"{newer} was written in policy format 2 by a newer diffcps-ray")
    assert _tree(tmp_path) == before


@pytest.mark.slow
def test_a_task_the_experiment_lacks_is_one_sentence(smoke_sweep: Path, tmp_path: Path,
                                                     capsys) -> None:
    before = _tree(smoke_sweep)
    err = _one_sentence(capsys, [str(smoke_sweep), "--task", "hopper-medium-v2",
                                 "--video", str(tmp_path / "v.mp4")])
    assert err == f"{smoke_sweep} has no task 'hopper-medium-v2'; it has {POLICY_TASK}."
    assert _tree(smoke_sweep) == before and _tree(tmp_path) == set()


@pytest.mark.slow
def test_a_video_name_without_a_known_format_is_one_sentence(trained_run: Path,
                                                             tmp_path: Path, capsys) -> None:
    err = _one_sentence(capsys, [str(trained_run), "--video", str(tmp_path / "v.avi")])
    assert err == f"--video {tmp_path / 'v.avi'}: the file must end in .mp4 or .gif."
    err = _one_sentence(capsys, [str(trained_run), "--video", str(tmp_path / "no" / "v.mp4")])
    assert "does not exist" in err
    assert _tree(tmp_path) == set()


def test_standard_error_uses_the_sample_spread() -> None:
    # Two episodes scoring 0 and 100: population std 50, sample std 70.7, SE 50.
    assert standard_error(50.0, 2) == pytest.approx(50.0)
    assert standard_error(0.0, 1) is None
