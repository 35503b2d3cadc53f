"""bench/gpu_check.py on a CPU machine (its arguments, its refusal without CUDA, how it
finds and reads the CUDA tests), and files saved on a GPU loading where there is none."""

from __future__ import annotations

import ast
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch

from diffcps_ray.algorithm.agent import DiffCPSAgent
from diffcps_ray.algorithm.config import DiffCPSSettings
from diffcps_ray.policy.checkpoints import CHECKPOINT_POLICY_DIR, read_checkpoint
from diffcps_ray.policy.core import WEIGHTS_FILE, Policy, read_policy_dir

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "gpu_check.py"
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _script(*args: str, env: dict[str, str] | None = None,
            timeout: int = 120) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout, check=False)


# --- the script ---------------------------------------------------------------------------

def test_help_lists_the_options() -> None:
    done = _script("--help")
    assert done.returncode == 0, done.stderr
    for flag in ("--quick", "--budget-s", "--parts", "--cpu-rehearsal", "--keep"):
        assert flag in done.stdout
    for part in ("cuda_tests", "train_step", "sweep_whole_gpu", "sweep_shared_gpu",
                 "gpu_peak_memory_mb", "cpu_evaluation"):
        assert part in done.stdout


def test_an_unknown_part_is_refused_by_the_parser() -> None:
    done = _script("--parts", "nonsense")
    assert done.returncode == 2 and "invalid choice" in done.stderr


@no_cuda
def test_without_cuda_it_says_so_in_one_sentence_and_fails() -> None:
    # Also with the GPU hidden, as on a GPU machine with CUDA_VISIBLE_DEVICES empty.
    done = _script("--quick", env={"CUDA_VISIBLE_DEVICES": ""})
    assert done.returncode == 1
    assert done.stdout == ""
    message = done.stderr.strip()
    assert "\n" not in message and message.startswith("No CUDA device")
    assert message.endswith(".") and message.count(". ") == 0


def test_the_cuda_tests_are_found_by_their_skip_markers(tmp_path: Path) -> None:
    ids = _gpu_check().cuda_test_ids(ROOT / "tests")
    assert "tests/test_algorithm_agent.py::test_runs_on_cuda" in ids
    assert "tests/test_algorithm_device.py::test_training_steps_never_wait_for_the_gpu" in ids
    # neither a CPU test nor one skipped *with* CUDA (this file's no_cuda)
    assert "tests/test_algorithm_device.py::test_host_to_device_on_cpu_is_the_plain_conversion" \
        not in ids
    assert not [i for i in ids if i.startswith("tests/test_gpu_check.py")]
    # a module-level mark and a class carry over to their tests
    tests = tmp_path / "tests"
    tests.mkdir()
    (tests / "test_marked.py").write_text(textwrap.dedent("""
        import pytest, torch
        pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="cuda")
        def test_a(): pass
        class TestB:
            def test_c(self): pass
    """))
    (tests / "test_plain.py").write_text("def test_d(): pass\n")
    assert _gpu_check().cuda_test_ids(tests) == [
        "tests/test_marked.py::test_a", "tests/test_marked.py::TestB::test_c"]


def test_outcomes_are_read_from_a_real_pytest_report(tmp_path: Path) -> None:
    (tmp_path / "test_three.py").write_text(textwrap.dedent("""
        import pytest
        def test_passes(): pass
        def test_fails(): assert False
        @pytest.mark.skip(reason="no")
        def test_skipped(): pass
    """))
    report = tmp_path / "report.xml"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    f"--junitxml={report}", str(tmp_path / "test_three.py")],
                   cwd=tmp_path, capture_output=True, timeout=120, check=False)
    outcomes = {name.rsplit(".", 1)[-1]: v
                for name, v in _gpu_check().junit_outcomes(report).items()}
    assert outcomes == {"test_passes": "passed", "test_fails": "failed",
                        "test_skipped": "skipped"}


def test_a_part_that_raises_is_recorded_not_fatal(tmp_path: Path) -> None:
    gpu_check = _gpu_check()
    args = gpu_check.build_parser().parse_args(["--cpu-rehearsal"])
    args.cpu_rehearsal, args.device = True, "cpu"
    # The whole-GPU sweep never ran here: the parts that read it fail with a reason.
    for name in ("gpu_peak_memory_mb", "cpu_evaluation"):
        result = gpu_check.run_part(name, gpu_check.Clock(60), tmp_path, args)
        assert result["ok"] is False and result["error"] and result["seconds"] >= 0
    result = gpu_check.run_part("cuda_tests", gpu_check.Clock(1), tmp_path, args)
    assert result["ok"] is False and "skipped" in result["error"]


def test_the_sweep_suite_keeps_smoke_but_times_longer_iterations(tmp_path: Path) -> None:
    from diffcps_ray.tune.suites import load_suite

    suite = load_suite(str(_gpu_check().write_suite(tmp_path, 123)))
    smoke = suite.budgets["smoke"]
    assert smoke.search.steps_per_iteration == smoke.confirm.steps_per_iteration == 123
    assert smoke.search.iterations == 2



@pytest.mark.slow
def test_a_cpu_rehearsal_runs_a_sweep_and_scores_its_policy_without_a_gpu(
    tmp_path: Path,
) -> None:
    done = _script("--cpu-rehearsal", "--sweep-steps", "10", "--keep", str(tmp_path),
                   "--parts", "sweep_whole_gpu", "gpu_peak_memory_mb", "cpu_evaluation",
                   timeout=400)
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0, json.dumps(report)[-3000:]
    sweep = report["sweep_whole_gpu"]
    assert sweep["ok"] and sweep["scores_finite"] and sweep["status"] == "done"
    assert [t["phase"] for t in sweep["trials"]] == ["search", "confirm"]
    assert sweep["gradient_steps"] == 2 * 2 * 10  # two trials, two iterations of 10
    assert sweep["sum_of_trial_steps_per_s"] > 0 and sweep["end_to_end_steps_per_s"] > 0
    assert report["gpu_peak_memory_mb"]["max_mb"] is None  # a CPU learner reports none
    for label in ("checkpoint", "experiment_policy"):
        assert report["cpu_evaluation"][label]["ok"], report["cpu_evaluation"]

# --- tensors saved on a GPU, loaded where there is none ------------------------------------

def test_every_torch_load_in_the_package_names_its_device() -> None:
    unnamed = []
    for path in [*(ROOT / "diffcps_ray").rglob("*.py"), *(ROOT / "bench").glob("*.py")]:
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load"
                    and "map_location" not in {k.arg for k in node.keywords}):
                unnamed.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not unnamed, f"torch.load without map_location: {unnamed}"


_SAVE_LOCATION: list[str | None] = [None]


def _tag(storage: object) -> str | None:
    return _SAVE_LOCATION[0]


def _no_deserializer(storage: object, where: str) -> None:
    return None  # leaves loading to torch's own cpu/cuda handlers


# Consulted before torch's own taggers; answers None (torch's tag) outside saved_as_on.
torch.serialization.register_package(0, _tag, _no_deserializer)


@contextmanager
def saved_as_on(location: str) -> Iterator[None]:
    """torch.save (and pickling a tensor) records ``location`` as every storage's device,
    as a process on a GPU machine would."""
    _SAVE_LOCATION[0] = location
    try:
        yield
    finally:
        _SAVE_LOCATION[0] = None


def _cuda_only_load_fails(load) -> None:
    """The file really says cuda: torch refuses it without a device mapping here."""
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="CUDA"):
            load()


def test_an_exported_policy_saved_on_a_gpu_loads_on_the_cpu(tmp_path: Path) -> None:
    agent = DiffCPSAgent(6, 2, DiffCPSSettings(hidden_dim=32))
    weights = {f"{net}.{k}": v for net in ("actor", "critic_target")
               for k, v in getattr(agent, net).state_dict().items()}
    policy = Policy(task="pointmaze-umaze", obs_dim=6, act_dim=2, settings=agent.settings,
                    weights=weights)
    with saved_as_on("cuda:0"):
        policy.save(tmp_path / "policy")
    _cuda_only_load_fails(lambda: torch.load(tmp_path / "policy" / WEIGHTS_FILE,
                                             weights_only=True))
    loaded = read_policy_dir(tmp_path / "policy")
    assert loaded.device.type == "cpu"
    for name, value in weights.items():
        assert torch.equal(loaded.weights[name], value)
    assert loaded.act(np.zeros((3, 6), dtype=np.float32)).shape == (3, 2)


def test_an_algorithm_checkpoints_policy_saved_on_a_gpu_reads_on_the_cpu(
        tmp_path: Path) -> None:
    """A checkpoint's policy/ (what load_policy reads) written from CUDA tensors."""
    agent = DiffCPSAgent(6, 2, DiffCPSSettings(hidden_dim=32))
    weights = {f"{net}.{k}": v for net in ("actor", "critic_target")
               for k, v in getattr(agent, net).state_dict().items()}
    policy = Policy(task="pointmaze-umaze", obs_dim=6, act_dim=2, settings=agent.settings,
                    weights=weights, provenance={"num_gradient_steps": 1})
    with saved_as_on("cuda:0"):
        policy.save(tmp_path / CHECKPOINT_POLICY_DIR)
    _cuda_only_load_fails(lambda: torch.load(tmp_path / CHECKPOINT_POLICY_DIR / WEIGHTS_FILE,
                                             weights_only=True))
    contents = read_checkpoint(tmp_path)
    assert (contents.obs_dim, contents.act_dim, contents.num_gradient_steps) == (6, 2, 1)
    assert contents.settings == agent.settings
    assert all(torch.equal(contents.weights[k], v) for k, v in weights.items())
