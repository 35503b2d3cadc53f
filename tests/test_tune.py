"""The sweep's suites, CLI checks and trial-config bridge (no Ray started here)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from diffcps_ray.algorithm.config import DiffCPSSettings
from diffcps_ray.errors import ConfigError, MissingDataError
from diffcps_ray.tune.suites import (
    SETTINGS_FIELDS,
    SearchRange,
    list_suites,
    load_suite,
)
from diffcps_ray.tune.trainable import first_nonfinite

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", list_suites())
def test_every_suite_loads_and_its_paper_point_is_in_range(name: str) -> None:
    suite = load_suite(name)
    assert suite.tasks
    for task in suite.tasks.values():
        settings = DiffCPSSettings.for_task(task.name, **task.overrides)
        for key, search_range in task.search.items():
            assert search_range.paper == getattr(settings, SETTINGS_FIELDS[key])
            assert search_range.low <= search_range.first_point <= search_range.high
    for budget in suite.budgets.values():
        assert budget.search.iterations % budget.search.eval_interval == 0


def test_the_expected_suites_exist() -> None:
    names = set(list_suites())
    assert {"pointmaze", "antmaze", "locomotion"} <= names
    assert {"ablation-T", "ablation-lambda-clip", "ablation-freq"} <= names


@pytest.mark.parametrize("name", ["locomotion", "antmaze"])
def test_paper_budgets_follow_the_authors_protocol(name: str) -> None:
    """1000 steps per epoch, the epochs and evaluation episodes of the per-task table."""
    suite = load_suite(name)
    paper = suite.budget("paper")
    for task in suite.tasks.values():
        settings = DiffCPSSettings.for_task(task.name)
        for phase in (paper.search, paper.confirm):
            assert phase.steps_per_iteration == settings.steps_per_epoch == 1000
            assert phase.iterations == settings.num_epochs
            assert phase.eval_interval == settings.eval_interval_epochs == 50
            assert phase.eval_episodes == settings.eval_episodes
    assert paper.seeds == 5


def test_demo_budget_trains_past_the_behaviour_with_enough_episodes() -> None:
    """docs/pointmaze.md: ~10-12k steps to beat the behaviour; 50 episodes for +-5 noise."""
    demo = load_suite("pointmaze").budget("demo")
    assert demo.confirm.gradient_steps >= 12_000
    assert demo.confirm.eval_episodes >= 50


def test_zero_floor_runs_the_paper_zero_as_exactly_zero() -> None:
    search_range = SearchRange("lambda_clip", 0.001, 1.0, paper=0.0, zero_floor=True)
    assert search_range.first_point == 0.001
    assert search_range.effective_value(0.001) == 0.0
    assert search_range.effective_value(0.0011) == pytest.approx(0.0011)


def test_ablation_can_be_rebased_on_the_generated_suite() -> None:
    suite = load_suite("ablation-T", base_override="pointmaze")
    assert suite.is_ablation and suite.base == "pointmaze"
    # A re-based ablation runs on every task of its new base.
    assert list(suite.tasks) == list(load_suite("pointmaze").tasks)
    assert list(suite.tasks) == ["pointmaze-umaze", "pointmaze-medium"]
    assert suite.grid == {"T": [5, 15, 20]}


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(text)
    return path


GOOD = """
suite: NAME
data: {source: generate}
search:
  kappa: {factor: 3.0}
  lambda_clip: LAMBDA_CLIP
tasks:
  pointmaze-umaze: {}
budgets:
""" + "".join(
    f"""  {b}:
    transitions: 1000
    num_samples: 2
    grace_period: 1
    reduction_factor: 2
    search: {{iterations: 2, steps_per_iteration: 1, eval_interval: 1, eval_episodes: 1}}
    confirm: {{iterations: 2, steps_per_iteration: 1, eval_interval: 1, eval_episodes: 1}}
    seeds: 1
"""
    for b in ("smoke", "demo", "paper")
)


def _good(name: str, lambda_clip: str) -> str:
    return GOOD.replace("NAME", name).replace("LAMBDA_CLIP", lambda_clip)


def test_a_valid_file_loads_by_path(tmp_path: Path) -> None:
    text = _good("mine", "{low: 0.001, high: 1.0, zero_floor: true}")
    suite = load_suite(str(_write(tmp_path, "mine", text)))
    assert suite.tasks["pointmaze-umaze"].search["lambda_clip"].first_point == 0.001


@pytest.mark.parametrize(
    ("lambda_clip", "fragment"),
    [
        ("{low: 0.001, high: 1.0}", "zero_floor"),  # paper 0 outside a log range
        ("{low: 1.0, high: 0.1}", "0 < low < high"),
        ("{low: 0.001, high: 1.0, zero_floor: true, typo: 1}", "unknown key 'typo'"),
        ("{factor: 3.0}", "positive paper value"),
    ],
)
def test_bad_ranges_fail_with_one_sentence(tmp_path: Path, lambda_clip: str, fragment: str) -> None:
    path = _write(tmp_path, "bad", _good("bad", lambda_clip))
    with pytest.raises(ConfigError, match=fragment.replace("(", r"\(")) as info:
        load_suite(str(path))
    assert "\n" not in str(info.value)


GOOD_RANGE = "{low: 0.001, high: 1.0, zero_floor: true}"


@pytest.mark.parametrize(
    ("old", "new", "sentence"),
    [
        ("num_samples: 2", "num_samples: '2'", "budgets.smoke.num_samples must be an integer, "
         "got '2'."),
        ("num_samples: 2", "num_samples: 0", "budgets.smoke.num_samples must be at least 1, "
         "got 0."),
        ("budgets:", "budgets:\n  huge: {}", "unknown key 'huge' in budgets (allowed: demo, "
         "paper, smoke)."),
        ("source: generate", "source: minari", "data.source must be one of 'generate' or "
         "'d4rl', got 'minari'."),
        ("source: generate", "source: generate, seed: abc", "data.seed must be an integer, "
         "got 'abc'."),
        ("  kappa:", "  kapa:", "unknown key 'kapa' in search (allowed: 'kappa' or "
         "'lambda_clip')."),
        ("eval_episodes: 1}", "eval_episodes: 1, evals: 2}", "unknown key 'evals' in "
         "budgets.smoke.search (allowed: eval_episodes, eval_interval, iterations, "
         "steps_per_iteration)."),
        ("zero_floor: true", "zero_floor: 'yes'", "search.lambda_clip.zero_floor must be true "
         "or false, got 'yes'."),
        ("grace_period: 1", "grace_period: 3", "budgets.smoke: grace_period (3) exceeds the "
         "search phase's 2 iterations."),
        ("  pointmaze-umaze: {}", "  pointmaze-umaze: {overides: {}}", "unknown key "
         "'overides' in tasks.pointmaze-umaze (allowed: behaviour_score, overrides, search)."),
    ],
)
def test_a_bad_suite_file_names_the_file_key_and_allowed_values(
    tmp_path: Path, old: str, new: str, sentence: str
) -> None:
    text = _good("bad", GOOD_RANGE)
    assert old in text
    path = _write(tmp_path, "bad", text.replace(old, new, 1))
    with pytest.raises(ConfigError) as info:
        load_suite(str(path))
    assert str(info.value) == f"{path}: {sentence}"


def test_unknown_suite_budget_and_task_are_plain_errors() -> None:
    with pytest.raises(ConfigError, match="Unknown suite"):
        load_suite("no-such-suite")
    suite = load_suite("pointmaze")
    with pytest.raises(ConfigError, match="no budget"):
        suite.budget("huge")
    with pytest.raises(ConfigError, match="not in suite"):
        suite.select_tasks(["hopper-medium-v2"])


def _cli(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = {"HOME": str(home), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1",
           "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "diffcps_ray.tune", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def test_missing_d4rl_data_stops_before_ray_with_one_sentence(tmp_path: Path) -> None:
    result = _cli(
        "--suite", "locomotion", "--budget", "smoke", "--tasks", "hopper-medium-v2",
        "--data-root", str(tmp_path / "data"), "--storage", str(tmp_path / "runs"),
        home=tmp_path,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "hopper_medium-v2.hdf5" in lines[0]
    assert "python -m diffcps_ray.data convert" in lines[0]
    assert not (tmp_path / "runs").exists()  # stopped before Ray and before any output


def test_bad_flag_values_are_one_sentence(tmp_path: Path) -> None:
    result = _cli("--gpus-per-trial", "-1", home=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        "error: python -m diffcps_ray.tune: argument --gpus-per-learner/--gpus-per-trial: "
        "expected 0 or more, got -1 (see --help)."
    )
    result = _cli("--suite", "nope", "--storage", str(tmp_path), home=tmp_path)
    assert result.returncode == 2 and result.stderr.startswith("error: Unknown suite")


def test_missing_data_sentence_names_minari_for_antmaze(tmp_path: Path) -> None:
    from diffcps_ray.tune.data_prep import prepare_data

    suite = load_suite("antmaze")
    with pytest.raises(MissingDataError, match="D4RL/antmaze/umaze-v1") as info:
        prepare_data(suite, ["antmaze-umaze-v2"], tmp_path, None, log=lambda _: None)
    assert str(info.value).count(".hdf5") >= 2  # the file it wanted and the example command


def test_generated_data_is_reused_only_from_the_same_recipe(tmp_path: Path) -> None:
    import json

    from diffcps_ray.data.generate import GENERATOR_VERSION
    from diffcps_ray.tune.data_prep import prepare_data

    suite = load_suite("pointmaze")
    manifest_path = tmp_path / "pointmaze-umaze" / "manifest.json"

    def prepare(transitions: int) -> list[str]:
        lines: list[str] = []
        prepare_data(suite, ["pointmaze-umaze"], tmp_path, transitions, log=lines.append)
        return lines

    assert prepare(500)[0].startswith("Generating 500 transitions")
    source = json.loads(manifest_path.read_text())["source"]
    assert source["generator_version"] == GENERATOR_VERSION
    assert source["seed"] == suite.data_seed
    assert prepare(400) == []  # enough rows of this recipe: reused
    assert "replacing 500 rows" in prepare(600)[0]
    # Data of an older recipe is regenerated, not trained on.
    manifest = json.loads(manifest_path.read_text())
    manifest["source"]["generator_version"] = GENERATOR_VERSION - 1
    manifest_path.write_text(json.dumps(manifest))
    assert "older recipe" in prepare(600)[0]
    assert json.loads(manifest_path.read_text())["source"]["generator_version"] == (
        GENERATOR_VERSION
    )


def test_first_nonfinite_names_the_flattened_metric() -> None:
    result = {"learners": {"default_policy": {"critic_loss": 0.1, "actor_loss": math.inf}}}
    assert first_nonfinite(result) == ("learners/default_policy/actor_loss", math.inf)
    assert first_nonfinite({"a": {"b": 1.0}, "c": True}) is None


def test_bridge_builds_the_trials_diffcps_config() -> None:
    from diffcps_ray.tune.bridge import algorithm_config

    config = {
        "phase": "ablation", "task": "antmaze-large-play-v2", "kappa": 0.1,
        "lambda_clip": 0.001, "seed": 3, "settings": {"T": 15},
        "run": {"data_root": "/nowhere", "iterations": 4, "steps_per_iteration": 7,
                "eval_interval": 2,
                "eval_episodes": 4, "lambda_clip_zero_below": 0.001, "num_gpus": 0.0},
    }
    algo_config = algorithm_config(config)
    settings = algo_config.get_diffcps_settings()
    assert settings.T == 15 and settings.kappa == 0.1
    assert settings.lambda_clip == 0.0  # the floor runs as exactly 0
    assert settings.freq == 4 and settings.max_q_backup  # the task's table row is kept
    assert settings.eval_episodes == 4
    assert algo_config.resolved_gradient_steps == 7
    assert algo_config.resolved_eval_interval == 2
    assert algo_config.seed == 3 and algo_config.num_learners == 0


def test_argparse_errors_are_one_sentence_too(tmp_path: Path) -> None:
    result = _cli("--budget", "huge", home=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "invalid choice: 'huge'" in result.stderr
