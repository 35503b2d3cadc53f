"""Every command's --help and bad-flag sentences (issue 13): the same flag names for the
same things, help on every flag without reStructuredText markup, and one sentence with
exit status 2 for a bad flag or a number that is not finite.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from analysis import aggregate
from diffcps_ray import cli, toy, train
from diffcps_ray.data import __main__ as data_cli
from diffcps_ray.envs import reference_scores
from diffcps_ray.tune import cli as tune_cli

ROOT = Path(__file__).resolve().parents[1]

# name -> (main, parser factory, argv prefix that selects the (sub)command)
COMMANDS: dict[str, tuple[Callable, Callable[[], argparse.ArgumentParser], list[str]]] = {
    "data": (data_cli.main, data_cli.build_parser, []),
    "data generate": (data_cli.main, data_cli.build_parser, ["generate"]),
    "data convert": (data_cli.main, data_cli.build_parser, ["convert"]),
    "data inspect": (data_cli.main, data_cli.build_parser, ["inspect"]),
    "train": (train.main, train.build_parser, []),
    "tune": (tune_cli.main, tune_cli.build_parser, []),
    "toy": (toy.main, toy.build_parser, []),
    "aggregate": (aggregate.main, aggregate._parser, []),
    "reference_scores": (reference_scores.main, reference_scores.build_parser, []),
}
MODULES = {
    "data": "diffcps_ray.data",
    "train": "diffcps_ray.train",
    "tune": "diffcps_ray.tune",
    "toy": "diffcps_ray.toy",
    "aggregate": "analysis.aggregate",
}
REQUIRED = {
    "data": ["inspect", "DIR"],
    "data generate": ["--task", "pointmaze-umaze", "--data-root", "DIR"],
    "data convert": ["--d4rl", "FILE", "--task", "hopper-medium-v2", "--data-root", "DIR"],
    "data inspect": ["DIR"],
    "train": ["--task", "pointmaze-umaze", "--data-root", "DIR", "--out", "OUT"],
    "aggregate": ["RUN_DIR"],
}
FLOAT_TYPES = (cli.finite_float, cli.non_negative_float, cli.positive_float)
RST_MARKUP = ("``", ":func:", ":class:", ":mod:", ":meth:", ":ref:", ".. ")


def _parser_of(name: str) -> argparse.ArgumentParser:
    _, factory, prefix = COMMANDS[name]
    parser = factory()
    for word in prefix:
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = sub.choices[word]
    return parser


def _options(name: str) -> list[argparse.Action]:
    return [
        action for action in _parser_of(name)._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
    ]


def _one_sentence(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and lines[0].endswith("."), err
    return lines[0]


@pytest.mark.parametrize("name", COMMANDS)
def test_help_explains_every_flag_in_plain_text(name: str, capsys) -> None:
    main, _, prefix = COMMANDS[name]
    with pytest.raises(SystemExit) as exited:
        main([*prefix, "--help"])
    assert exited.value.code == 0
    text = capsys.readouterr().out
    assert text.startswith("usage: python -m ")
    for markup in RST_MARKUP:
        assert markup not in text, f"{name} --help shows {markup!r}"
    for action in _options(name):
        assert action.help, f"{name}: {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize("name", COMMANDS)
def test_an_unknown_flag_is_one_sentence(name: str, capsys) -> None:
    main, _, prefix = COMMANDS[name]
    # With the required arguments given, the unknown flag is the only error.
    argv = [*prefix, *REQUIRED.get(name, []), "--no-such-flag"]
    assert cli.run_main(main, argv) == 2
    line = _one_sentence(capsys.readouterr().err)
    assert "--no-such-flag" in line and line.endswith("(see --help).")


@pytest.mark.parametrize("name", COMMANDS)
def test_every_number_flag_refuses_nan_and_inf(name: str, capsys) -> None:
    main, _, prefix = COMMANDS[name]
    floats = [a for a in _options(name) if a.type in FLOAT_TYPES]
    # Plain float would let nan and inf through; every fractional flag uses cli's types.
    assert not [a.dest for a in _options(name) if a.type is float]
    for action in floats:
        flag = action.option_strings[0]
        for text in ("nan", "inf", "-inf"):
            assert cli.run_main(main, [*prefix, f"{flag}={text}"]) == 2
            line = _one_sentence(capsys.readouterr().err)
            assert f"expected a finite number, got '{text}'" in line, line


def test_the_commands_with_fractional_flags_are_covered() -> None:
    with_floats = {n for n in COMMANDS if any(a.type in FLOAT_TYPES for a in _options(n))}
    assert with_floats == {"train", "tune", "toy"}


@pytest.mark.parametrize("name", ["data generate", "data convert", "train", "tune"])
def test_the_data_root_has_one_flag_name(name: str) -> None:
    (action,) = [a for a in _options(name) if a.dest == "data_root"]
    assert action.option_strings[0] == "--data-root"


def test_the_old_data_root_spelling_still_works() -> None:
    parser = data_cli.build_parser()
    old = parser.parse_args(["generate", "--task", "pointmaze-umaze", "--out", "here"])
    new = parser.parse_args(["generate", "--task", "pointmaze-umaze", "--data-root", "here"])
    assert old.data_root == new.data_root == Path("here")


def test_gpus_per_trial_and_per_learner_are_one_idea() -> None:
    parser = tune_cli.build_parser()
    assert parser.parse_args(["--gpus-per-trial", "0.5"]).gpus_per_trial == 0.5
    assert parser.parse_args(["--gpus-per-learner", "0.5"]).gpus_per_trial == 0.5
    tune_flag = next(a for a in _options("tune") if a.dest == "gpus_per_trial")
    train_flag = next(a for a in _options("train") if a.dest == "gpus_per_learner")
    assert tune_flag.option_strings[0] == train_flag.option_strings[0] == "--gpus-per-learner"
    assert "learner" in tune_flag.help and "trial" in tune_flag.help


@pytest.mark.parametrize(("name", "counts"), [("data generate", "simulator steps"),
                                              ("toy", "gradient steps")])
def test_steps_says_what_it_counts(name: str, counts: str) -> None:
    (steps,) = [a for a in _options(name) if "--steps" in a.option_strings]
    assert counts in steps.help


def test_negative_gpus_are_refused_before_anything_runs(tmp_path: Path, capsys) -> None:
    argv = ["--gpus-per-trial", "-1", "--storage", str(tmp_path / "runs")]
    assert cli.run_main(tune_cli.main, argv) == 2
    line = _one_sentence(capsys.readouterr().err)
    assert "--gpus-per-learner/--gpus-per-trial: expected 0 or more, got -1" in line
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", MODULES)
def test_the_installed_entry_points_answer_a_bad_flag_with_one_sentence(name: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    args = REQUIRED.get(name, [])
    done = subprocess.run(
        [sys.executable, "-m", MODULES[name], *args, "--no-such-flag"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "--no-such-flag" in _one_sentence(done.stderr)


@pytest.mark.parametrize("text", ["nan", "inf"])
def test_train_set_refuses_non_finite_settings(text: str, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    argv = ["--task", "pointmaze-umaze", "--data-root", str(tmp_path), "--out", str(out),
            "--set", f"kappa={text}"]
    assert cli.run_main(train.main, argv) == 2
    assert _one_sentence(capsys.readouterr().err) == (
        f"error: kappa must be a finite number, got {text}."
    )
    assert not out.exists()


# --- bad input that used to end in a traceback (issue 19) -----------------------------------


def _run(module: str, *args: str, env: dict[str, str] | None = None,
         timeout: int = 60) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


def _refused(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 2, done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-2000:]
    return _one_sentence(done.stderr)


@pytest.mark.parametrize("device", ["foo", "cuda:99"])
def test_evaluate_refuses_a_device_this_machine_lacks(device: str, tmp_path: Path) -> None:
    line = _refused(_run("diffcps_ray.evaluate", str(tmp_path), "--device", device))
    assert line.startswith("error: python -m diffcps_ray.evaluate: argument --device: ")
    assert repr(device) in line or f"no {device} device" in line


# Nothing listens on port 1; Ray alone would retry it for minutes (the timeout says we don't).
UNREACHABLE = "127.0.0.1:1"


def test_tune_with_an_unreachable_address_stops_before_data_and_ray(tmp_path: Path) -> None:
    done = _run("diffcps_ray.tune", "--suite", "pointmaze", "--budget", "smoke",
                "--tasks", "pointmaze-umaze", "--data-root", str(tmp_path / "data"),
                "--storage", str(tmp_path / "runs"), "--address", UNREACHABLE, timeout=30)
    line = _refused(done)
    assert line.startswith(f"error: --address {UNREACHABLE}: no Ray cluster answers at ")
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()


def test_train_with_an_unreachable_address_stops_before_anything_runs(tmp_path: Path) -> None:
    done = _run("diffcps_ray.train", "--task", "pointmaze-umaze", "--data-root",
                str(tmp_path / "data"), "--out", str(tmp_path / "out"), "--address",
                UNREACHABLE, timeout=30)
    assert _refused(done).startswith(f"error: --address {UNREACHABLE}: no Ray cluster answers")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("url", "reason"), [
    ("foo", "Could not parse SQLAlchemy URL"),
    ("sqlite:////no/such/directory/studies.db", "unable to open database file"),
])
def test_tune_refuses_an_optuna_storage_it_cannot_open(url: str, reason: str,
                                                       tmp_path: Path) -> None:
    done = _run("diffcps_ray.tune", "--suite", "pointmaze", "--budget", "smoke",
                "--tasks", "pointmaze-umaze", "--data-root", str(tmp_path / "data"),
                "--storage", str(tmp_path / "runs"), "--optuna-storage", url, timeout=30)
    line = _refused(done)
    assert line.startswith(f"error: --optuna-storage {url} cannot be opened (")
    assert reason in line
    assert not (tmp_path / "data").exists() and not (tmp_path / "runs").exists()
