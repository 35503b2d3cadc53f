"""analysis.aggregate on hand-made experiment directories with hand-computed expectations."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from analysis import aggregate as aggregate_module
from analysis.aggregate import aggregate, main
from analysis.experiment import RESULT_COLUMNS, NotAnExperimentError, load_experiment
from analysis.stats import (
    SUITE_AVERAGE_LABEL,
    iqm_with_ci,
    mean_std,
    select_table_runs,
    suite_average,
    summarize_runs,
)
from diffcps_ray.cli import run_main
from diffcps_ray.errors import DiffCPSError
from tests.fake_experiment import FakeTrial, write_fake_experiment

REPS = 300  # bootstrap resamples: enough for a CI, quick on 2 cores

# Three seeds per task; per-iteration normalised scores chosen so that the final (last)
# and best-of-run (max) scores differ:
#   hopper-medium-v2  final 40 / 60 / 50, best-of-run 50 / 60 / 70 (seeds 0 / 1 / 2)
#   pointmaze-umaze   final 15 / 10 / 20, best-of-run 15 / 30 / 20
HOPPER = {0: [10.0, 50.0, 40.0], 1: [20.0, 30.0, 60.0], 2: [70.0, 20.0, 50.0]}
UMAZE = {0: [5.0, 15.0], 1: [30.0, 10.0], 2: [20.0, 20.0]}


def confirm_trials() -> list[FakeTrial]:
    trials = [FakeTrial("confirm", "hopper-medium-v2", s, 0.05, 0.0, v) for s, v in HOPPER.items()]
    trials += [FakeTrial("confirm", "pointmaze-umaze", s, 0.1, 0.3, v) for s, v in UMAZE.items()]
    return trials


def search_trials() -> list[FakeTrial]:
    """Two tasks x three configs; the (1.0, 1.0) trials were stopped early by ASHA."""
    trials = []
    for task in ("hopper-medium-v2", "pointmaze-umaze"):
        trials += [
            FakeTrial("search", task, 0, 0.05, 0.0, [10.0, 30.0, 45.0]),
            FakeTrial("search", task, 0, 0.2, 0.3, [20.0, 40.0, 35.0]),
            # The best single evaluation, but ASHA stopped it after one iteration.
            FakeTrial("search", task, 0, 1.0, 1.0, [90.0], status="STOPPED_EARLY"),
        ]
    return trials


@pytest.fixture
def experiment_dir(tmp_path: Path) -> Path:
    return write_fake_experiment(tmp_path / "exp", search_trials() + confirm_trials())


def table_row(table: pd.DataFrame, task: str) -> dict:
    return table[table["task"] == task].iloc[0].to_dict()


# --- statistics on known numbers ---------------------------------------------------------


def test_mean_and_sample_std_use_ddof_1() -> None:
    mean, std = mean_std([60.0, 70.0, 80.0])
    assert mean == pytest.approx(70.0)
    assert std == pytest.approx(10.0)  # sqrt((100 + 0 + 100) / (3 - 1))
    assert math.isnan(mean_std([42.0])[1])  # one seed: no std
    assert mean_std([1.0, float("nan"), 3.0]) == pytest.approx((2.0, math.sqrt(2.0)))


def test_iqm_equals_the_hand_computed_interquartile_mean() -> None:
    # 8 runs, 25% cut at each end -> the middle four: (3 + 4 + 5 + 6) / 4 = 4.5.
    point, low, high = iqm_with_ci([[1, 2, 3, 4, 5, 6, 7, 8]], reps=REPS)
    assert point == pytest.approx(4.5)
    assert low <= point <= high
    assert low >= 1 and high <= 8
    # 4 runs -> drop one at each end: (10 + 20) / 2 = 15.
    assert iqm_with_ci([[30, 0, 20, 10]], reps=REPS)[0] == pytest.approx(15.0)
    # Two tasks x four runs form rliable's (runs x tasks) matrix; the IQM pools all eight.
    assert iqm_with_ci([[1, 2, 3, 4], [5, 6, 7, 8]], reps=REPS)[0] == pytest.approx(4.5)


def test_iqm_with_unequal_run_counts_pools_all_runs() -> None:
    # A failed seed leaves 3 runs on one task and 5 on the other: pooled 1..8 -> 4.5.
    point, low, high = iqm_with_ci([[1, 2, 3], [4, 5, 6, 7, 8]], reps=REPS)
    assert point == pytest.approx(4.5)
    assert low <= point <= high


def test_iqm_bootstrap_is_reproducible_and_leaves_numpy_global_rng_alone() -> None:
    np.random.seed(123)
    expected_next = np.random.rand()
    np.random.seed(123)
    first = iqm_with_ci([[3, 9, 1, 7, 4]], reps=REPS, seed=5)
    second = iqm_with_ci([[3, 9, 1, 7, 4]], reps=REPS, seed=5)
    assert first == second
    assert np.random.rand() == expected_next


def test_suite_average_is_the_mean_of_task_means() -> None:
    assert suite_average([50.0, 15.0]) == pytest.approx(32.5)


# --- the experiment directory -> tables ---------------------------------------------------


def test_final_and_best_of_run_per_task_and_suite_average(experiment_dir: Path) -> None:
    analysis = aggregate_module.analyse(load_experiment(experiment_dir), reps=REPS)
    runs = analysis.table_runs.set_index(["task", "seed"])
    # Per seed: final = last evaluation, best-of-run = max over the run.
    assert runs.loc[("hopper-medium-v2", 0), "final_score"] == 40.0
    assert runs.loc[("hopper-medium-v2", 0), "best_score"] == 50.0
    assert runs.loc[("pointmaze-umaze", 1), "final_score"] == 10.0
    assert runs.loc[("pointmaze-umaze", 1), "best_score"] == 30.0
    assert analysis.sources == {"hopper-medium-v2": "confirm", "pointmaze-umaze": "confirm"}

    hopper = table_row(analysis.table, "hopper-medium-v2")
    assert hopper["n_seeds"] == 3
    assert hopper["final_mean"] == pytest.approx(50.0)  # (40 + 60 + 50) / 3
    assert hopper["final_std"] == pytest.approx(10.0)  # ddof=1
    assert hopper["best_mean"] == pytest.approx(60.0)  # (50 + 60 + 70) / 3
    assert hopper["best_std"] == pytest.approx(10.0)
    # Three runs: trim_mean(0.25) cuts int(0.75) = 0 runs, so the IQM is the mean.
    assert hopper["final_iqm"] == pytest.approx(50.0)
    assert hopper["final_iqm_ci_low"] <= 50.0 <= hopper["final_iqm_ci_high"]
    assert (hopper["kappa"], hopper["lambda_clip"]) == (0.05, 0.0)
    assert hopper["paper_best_mean"] == pytest.approx(100.1)
    assert hopper["paper_best_std"] == pytest.approx(3.5)

    umaze = table_row(analysis.table, "pointmaze-umaze")
    assert umaze["final_mean"] == pytest.approx(15.0)  # (15 + 10 + 20) / 3
    assert umaze["final_std"] == pytest.approx(5.0)  # sqrt((0 + 25 + 25) / 2)
    assert umaze["best_mean"] == pytest.approx(65.0 / 3)  # (15 + 30 + 20) / 3
    # Deviations -20/3, 25/3, -5/3: squares sum to 1050/9 = 350/3; / (3 - 1) = 175/3.
    assert umaze["best_std"] == pytest.approx(math.sqrt(175.0 / 3))
    assert math.isnan(umaze["paper_best_mean"])  # not a D4RL task

    average = table_row(analysis.table, SUITE_AVERAGE_LABEL)
    assert average["final_mean"] == pytest.approx(32.5)  # (50 + 15) / 2
    assert average["best_mean"] == pytest.approx((60.0 + 65.0 / 3) / 2)
    # Per-seed task averages 27.5, 35, 35 -> sample std sqrt(37.5 / 2).
    assert average["final_std"] == pytest.approx(math.sqrt(18.75))
    # IQM pools the six runs: final 10 15 20 40 50 60 -> drop 10 and 60 -> 31.25.
    assert average["final_iqm"] == pytest.approx(31.25)
    # best-of-run 15 20 30 50 60 70 -> drop 15 and 70 -> 40.
    assert average["best_iqm"] == pytest.approx(40.0)
    assert average["final_iqm_ci_low"] <= 31.25 <= average["final_iqm_ci_high"]
    assert math.isnan(average["paper_best_mean"])  # the paper has no pointmaze number


def test_final_scores_are_stated_with_their_noise_and_against_the_behaviour(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = write_fake_experiment(
        tmp_path / "exp", confirm_trials(), behaviour_scores={"pointmaze-umaze": 12.0}
    )
    assert main([str(run_dir), "--reps", str(REPS)]) == 0
    printed = capsys.readouterr().out.splitlines()
    # Fake evaluations: 10 episodes with a spread of 5 points -> 5 / sqrt(10) = 1.6 per seed.
    # hopper 40 / 60 / 50: std 10, standard error 10 / sqrt(3) = 5.8; no behaviour known.
    hopper = (
        "hopper-medium-v2: final normalised score 50.0 +- 5.8 (mean +- standard error over "
        "3 seeds, 10 evaluation episodes each; evaluation noise +-1.6 per seed)."
    )
    # umaze 15 / 10 / 20: standard error 5 / sqrt(3) = 2.9; 3 points over 12 = 1.0 of them.
    umaze = (
        "pointmaze-umaze: final normalised score 15.0 +- 2.9 (mean +- standard error over "
        "3 seeds, 10 evaluation episodes each; evaluation noise +-1.6 per seed), 3.0 points "
        "above the data's behaviour policy (12.0): 1.0 standard errors."
    )
    assert printed[:2] == [hopper, umaze]
    report = (run_dir / "analysis" / "report.md").read_text()
    assert f"- {hopper}\n- {umaze}\n" in report
    assert load_experiment(run_dir).behaviour_scores == {"pointmaze-umaze": 12.0}


def test_search_only_experiment_reports_the_best_full_length_trial(tmp_path: Path) -> None:
    run_dir = write_fake_experiment(tmp_path / "exp", search_trials())
    summary = summarize_runs(load_experiment(run_dir))
    runs, sources = select_table_runs(summary)
    assert sources["hopper-medium-v2"] == "search (best trial)"
    picked = runs[runs["task"] == "hopper-medium-v2"].iloc[0]
    # 45 (final of the 3-iteration kappa=0.05 run) beats 35, and the 1-iteration 90 is
    # not preferred because ASHA stopped that trial early.
    assert (picked["kappa"], picked["final_score"], picked["best_score"]) == (0.05, 45.0, 45.0)


# --- files: tidy CSV, report, figures -----------------------------------------------------


def test_tidy_results_csv_has_one_row_per_reported_result(experiment_dir: Path) -> None:
    out = experiment_dir / "analysis"
    aggregate(experiment_dir, reps=REPS)
    results = pd.read_csv(out / "results.csv")
    assert list(results.columns) == RESULT_COLUMNS
    expected_rows = sum(len(t.scores) for t in search_trials() + confirm_trials())
    assert len(results) == expected_rows
    row = results[
        (results["task"] == "hopper-medium-v2")
        & (results["phase"] == "confirm")
        & (results["seed"] == 1)
        & (results["iteration"] == 2)
    ].iloc[0]
    assert row["suite"] == "pointmaze"
    assert row["kappa"] == 0.05 and row["lambda_clip"] == 0.0
    assert row["num_gradient_steps"] == 2000
    assert row["normalized_score"] == 30.0
    assert row["normalized_score_std"] == 5.0
    assert row["episode_return_mean"] == 60.0  # the fake's return is 2 x score
    assert row["best_normalized_score"] == 30.0
    assert row["evaluation_episodes"] == 10


def test_outputs_layout_figures_and_report(experiment_dir: Path) -> None:
    out = experiment_dir / "analysis"
    aggregate(experiment_dir, reps=REPS)
    for name in (
        "results.csv",
        "report.md",
        "tables/results.md",
        "tables/results.csv",
        "tables/runs.csv",
        "tables/search.csv",
        "tables/search.md",
    ):
        assert (out / name).is_file(), name
    for figure in ("learning_curves", "sensitivity", "performance_profile"):
        data = (out / "figures" / f"{figure}.png").read_bytes()
        assert data.startswith(b"\x89PNG"), figure
    report = (out / "report.md").read_text()
    assert "best-of-run" in report and "final" in report
    assert "python -m diffcps_ray.tune --suite pointmaze --budget smoke" in report
    assert "100.1 ± 3.5" in report  # the paper's hopper-medium number beside ours
    assert "kappa=0.05, lambda_clip=0" in report
    assert "| evaluation episodes per evaluation | confirm: 10; search: 10 |" in report
    # Every relative link in the report points at a file that exists.
    for link in re.findall(r"\]\(([^)]+)\)", report):
        assert (out / link).is_file(), link
    # Nothing is left behind beside the output.
    assert not [p for p in experiment_dir.iterdir() if p.name.startswith(".analysis")]


def test_failed_and_missing_trials_are_reported_not_crashed_on(tmp_path: Path) -> None:
    trials = [
        *confirm_trials(),
        FakeTrial("confirm", "hopper-medium-v2", 3, 0.05, 0.0, [99.0, 1.0], status="ERROR",
                  write_error_file=True, error="Trial stopped: learners/critic_loss became nan."),
        FakeTrial("confirm", "hopper-medium-v2", 4, 0.05, 0.0, [], write_results=False),
        FakeTrial("confirm", "pointmaze-umaze", 3, 0.1, 0.3, [], write_dir=False,
                  status="INTERRUPTED"),
    ]
    run_dir = write_fake_experiment(tmp_path / "exp", trials)
    # A torn last line (a crash mid-write) in one good trial.
    manifest = json.loads((run_dir / "experiment.json").read_text())
    torn = run_dir / manifest["trials"][0]["path"] / "result.json"
    torn.write_text(torn.read_text() + '{"training_iteration": 4, "evalu')

    analysis = aggregate(run_dir, reps=REPS)
    hopper = table_row(analysis.table, "hopper-medium-v2")
    assert hopper["n_seeds"] == 3  # the ERROR run and the run without results are left out
    assert hopper["final_mean"] == pytest.approx(50.0)
    results = pd.read_csv(run_dir / "analysis" / "results.csv")
    assert len(results[results["seed"] == 3]) == 2  # the failed run's results are kept here
    report = (run_dir / "analysis" / "report.md").read_text()
    section = report.split("## Missing or failed trials", 1)[1]
    assert "status ERROR: Trial stopped: learners/critic_loss became nan." in section
    assert "no result.json" in section
    assert "trial directory missing" in section
    assert "1 unreadable line(s)" in section
    assert "4 of 9 trial(s) had a problem" in section


def test_a_record_without_a_trial_status_is_refused_in_one_sentence(tmp_path: Path) -> None:
    trials = [FakeTrial("confirm", "pointmaze-umaze", 0, 0.1, 0.3, [5.0], write_error_file=True)]
    run_dir = write_fake_experiment(tmp_path / "exp", trials)
    manifest = json.loads((run_dir / "experiment.json").read_text())
    del manifest["trials"][0]["status"]
    (run_dir / "experiment.json").write_text(json.dumps(manifest))
    with pytest.raises(NotAnExperimentError, match=r"not a valid experiment record \(missing "
                                                   r"key 'status'\)\.$"):
        load_experiment(run_dir)


def test_an_older_record_format_says_what_to_do(tmp_path: Path) -> None:
    run_dir = write_fake_experiment(tmp_path / "exp", confirm_trials())
    manifest = json.loads((run_dir / "experiment.json").read_text())
    manifest["format_version"] = 2
    (run_dir / "experiment.json").write_text(json.dumps(manifest))
    with pytest.raises(NotAnExperimentError) as raised:
        load_experiment(run_dir)
    message = str(raised.value)
    assert "format 2" in message and "reads format 3" in message
    assert "run the sweep again with this version" in message
    assert len(message.splitlines()) == 1


def test_not_an_experiment_is_one_sentence_and_nonzero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "something.txt").write_text("hello")
    assert run_main(main, [str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "not an experiment directory" in err
    assert len(err.splitlines()) == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["something.txt"]  # nothing written

    assert run_main(main, [str(tmp_path / "absent")]) == 2
    assert "is not a directory" in capsys.readouterr().err

    (tmp_path / "experiment.json").write_text("{not json")
    with pytest.raises(DiffCPSError, match="not readable JSON"):
        load_experiment(tmp_path)


def test_a_failure_while_writing_leaves_the_previous_output(
    experiment_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = experiment_dir / "analysis"
    aggregate(experiment_dir, reps=REPS)
    before = (out / "report.md").read_text()

    def broken(*_args: object, **_kwargs: object) -> bool:
        raise RuntimeError("disk full")

    from analysis import plots

    monkeypatch.setattr(plots, "plot_sensitivity", broken)
    with pytest.raises(RuntimeError):
        aggregate(experiment_dir, reps=REPS)
    assert (out / "report.md").read_text() == before
    assert [p.name for p in experiment_dir.iterdir() if p.name.startswith(".")] == []

    fresh = experiment_dir.parent / "fresh"
    with pytest.raises(RuntimeError):
        aggregate(experiment_dir, fresh, reps=REPS)
    assert not fresh.exists()


def test_fake_experiment_writes_tune_format(experiment_dir: Path) -> None:
    manifest = json.loads((experiment_dir / "experiment.json").read_text())
    assert manifest["format_version"] == 3
    entry = manifest["trials"][0]
    # The contract's keys (docs/interfaces.md) plus what the tune command adds.
    assert {"phase", "task", "trial_id", "path", "kappa", "lambda_clip", "seed",
            "status"} <= set(entry)
    assert entry["path"] == f"sweep/search_{entry['trial_id']}"
    trial_dir = experiment_dir / entry["path"]
    lines = (trial_dir / "result.json").read_text().splitlines()
    first = json.loads(lines[0])
    assert first["training_iteration"] == 1 and first["trial_id"] == entry["trial_id"]
    assert isinstance(first["config"], dict) and isinstance(first["evaluation"], dict)
    params = (trial_dir / "params.json").read_text()
    assert params == json.dumps(json.loads(params), indent=2, sort_keys=True)
    progress = pd.read_csv(trial_dir / "progress.csv")
    assert "evaluation/normalized_score" in progress.columns


def test_analysis_does_not_import_ray() -> None:
    code = (
        "import sys, analysis.aggregate, analysis.plots, analysis.stats;"
        "assert not [m for m in sys.modules if m == 'ray' or m.startswith('ray.')]"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[1])


def test_stopped_early_search_trials_are_not_problems(experiment_dir: Path) -> None:
    experiment = load_experiment(experiment_dir)
    stopped = [t for t in experiment.trials if t.status == "STOPPED_EARLY"]
    assert len(stopped) == 2 and all(t.usable and not t.problems for t in stopped)


def test_only_fresh_evaluations_count_between_carried_forward_results(tmp_path: Path) -> None:
    # Evaluations every 2 iterations: scores 30 (it. 2), 80 (it. 4), 50 (it. 6); the odd
    # iterations carry the last one forward, iteration 1 has NaN.
    trial = FakeTrial("confirm", "pointmaze-umaze", 1, 0.1, 0.3, [30.0, 80.0, 50.0],
                      eval_interval=2)
    run_dir = write_fake_experiment(tmp_path / "exp", [trial])
    experiment = load_experiment(run_dir)
    results = experiment.results.set_index("iteration")
    assert len(results) == 6
    assert list(results["evaluated"]) == [False, True, False, True, False, True]
    assert math.isnan(results.loc[1, "normalized_score"])
    assert results.loc[3, "normalized_score"] == 30.0  # carried forward
    run = summarize_runs(experiment).iloc[0]
    assert (run["final_score"], run["best_score"], run["iterations"]) == (50.0, 80.0, 6)


def test_the_tune_commands_recorded_best_trial_is_used(tmp_path: Path) -> None:
    run_dir = write_fake_experiment(tmp_path / "exp", search_trials())
    manifest = json.loads((run_dir / "experiment.json").read_text())
    # Pretend the tune command picked the kappa=0.2 trial for pointmaze-umaze.
    chosen = next(t for t in manifest["trials"]
                  if t["task"] == "pointmaze-umaze" and t["kappa"] == 0.2)
    manifest["phases"]["search"]["tasks"]["pointmaze-umaze"]["best"] = {
        k: chosen[k] for k in ("trial_id", "path", "kappa", "lambda_clip", "score")
    }
    (run_dir / "experiment.json").write_text(json.dumps(manifest))
    analysis = aggregate_module.analyse(load_experiment(run_dir), reps=REPS)
    best = analysis.search_best.set_index("task")
    assert best.loc["pointmaze-umaze", "kappa"] == 0.2
    assert best.loc["hopper-medium-v2", "kappa"] == 0.05  # recorded best = the rule's pick


def test_ablation_phase_gets_its_own_table(tmp_path: Path) -> None:
    trials = [
        FakeTrial("ablation", "pointmaze-umaze", seed, 0.1, 0.3, scores, variant={"T": t})
        for t, runs in ((5, {1: [10.0, 20.0], 2: [30.0, 40.0]}), (15, {1: [50.0, 5.0]}))
        for seed, scores in runs.items()
    ]
    run_dir = write_fake_experiment(tmp_path / "exp", trials)
    analysis = aggregate(run_dir, reps=REPS)
    ablation = analysis.ablation.set_index("variant")
    assert ablation.loc["T=5", "final_mean"] == pytest.approx(30.0)  # (20 + 40) / 2
    assert ablation.loc["T=5", "final_std"] == pytest.approx(math.sqrt(200.0))
    assert ablation.loc["T=15", "best_mean"] == pytest.approx(50.0)
    assert ablation.loc["T=15", "final_mean"] == pytest.approx(5.0)
    assert (run_dir / "analysis" / "tables" / "ablation.csv").is_file()
    assert "## Ablation" in (run_dir / "analysis" / "report.md").read_text()


def test_experiments_with_nothing_finished_still_get_a_report(tmp_path: Path) -> None:
    # The tune command writes experiment.json before any trial has finished.
    empty = write_fake_experiment(tmp_path / "empty", [])
    assert aggregate(empty, reps=REPS).table.empty
    assert "no table" in (empty / "analysis" / "report.md").read_text()

    failed = write_fake_experiment(
        tmp_path / "failed",
        [FakeTrial("search", "pointmaze-umaze", 0, 0.1, 0.3, [1.0], status="ERROR",
                   error="Trial stopped: boom.")],
    )
    analysis = aggregate(failed, reps=REPS)
    assert analysis.table.empty and analysis.summary.empty
    report = (failed / "analysis" / "report.md").read_text()
    assert "No finished run, so no row: pointmaze-umaze" in report
    assert "Trial stopped: boom." in report
    assert len(pd.read_csv(failed / "analysis" / "results.csv")) == 1


def test_best_search_trial_when_every_trial_was_stopped_early(tmp_path: Path) -> None:
    trials = [
        FakeTrial("search", "pointmaze-umaze", 0, 0.1, 0.3, [5.0, 25.0], status="STOPPED_EARLY"),
        FakeTrial("search", "pointmaze-umaze", 0, 0.2, 0.3, [40.0], status="STOPPED_EARLY"),
    ]
    run_dir = write_fake_experiment(tmp_path / "exp", trials)
    manifest = json.loads((run_dir / "experiment.json").read_text())
    manifest["phases"]["search"]["tasks"]["pointmaze-umaze"]["best"] = None
    (run_dir / "experiment.json").write_text(json.dumps(manifest))
    analysis = aggregate_module.analyse(load_experiment(run_dir), reps=REPS)
    # As the tune command's pick_best: with no full-length trial, all of them are ranked.
    assert analysis.search_best.iloc[0]["final_score"] == 40.0


def _files(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_ctrl_c_while_the_report_is_written_leaves_the_previous_report(tmp_path: Path) -> None:
    """A real SIGINT once the writing has begun: the report directory is the previous one
    whole (exit 130), or the new one whole if the writing won the race; never a mix, and
    no hidden leftovers beside it."""
    import os
    import signal
    import time

    run_dir = write_fake_experiment(tmp_path / "exp", search_trials() + confirm_trials())
    out = tmp_path / "report"
    aggregate(run_dir, out, reps=50, rollout_episodes=0)
    before = _files(out)
    root = Path(__file__).resolve().parents[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "analysis.aggregate", str(run_dir), "--out", str(out),
         "--reps", "60", "--rollout-episodes", "0"],
        cwd=root, env={**os.environ, "PYTHONPATH": str(root), "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert process.stdout is not None
    lines = []
    deadline = time.monotonic() + 120
    for line in process.stdout:
        lines.append(line)
        if line.startswith("[aggregate] writing"):
            process.send_signal(signal.SIGINT)
            break
        assert time.monotonic() < deadline, "".join(lines)
    output = "".join(lines) + process.stdout.read()
    code = process.wait(timeout=120)
    after = _files(out)
    if code == 130:
        assert after == before, output
    else:
        assert code == 0 and after.keys() == before.keys(), output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp", "report"], (code, output)
