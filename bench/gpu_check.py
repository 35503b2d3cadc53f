"""One command that proves the GPU path on a CUDA machine (`make gpu-check`).

Parts, each in a subprocess with a timeout; a part that fails or runs out of time is
recorded in the JSON and the next one runs:

- ``cuda_tests``: the tests skipped on CPU (a ``skipif`` on CUDA in tests/), with pytest;
- ``train_step``: ``bench/train_step.py`` on cuda and on this machine's CPU (1 thread):
  steps/s of our step and of the plain reference step, hopper- and AntMaze-shaped;
- ``sweep_whole_gpu`` / ``sweep_shared_gpu``: a smoke-size PointMaze UMaze sweep with one
  trial on the whole GPU, and one with four trials sharing it (0.25 GPU each): gradient
  steps/s and the trials' scores;
- ``gpu_peak_memory_mb``: one trial's peak CUDA memory, as its learner reports it;
- ``cpu_evaluation``: the GPU-trained checkpoint and its exported policy, scored by
  ``python -m diffcps_ray.evaluate`` in a process that sees no GPU.

    python bench/gpu_check.py                 # about 4-6 minutes on one H200, 16 cores
    python bench/gpu_check.py --quick         # smaller figures, about half the time
    python bench/gpu_check.py --cpu-rehearsal # every part on the CPU: checks the plumbing

The last line printed is one JSON object; progress goes to stderr. The exit status is 0
when every part passed, 1 otherwise, and 1 at once (one sentence on stderr) without CUDA.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # runnable as a script: this checkout's diffcps_ray
TASK = "pointmaze-umaze"
SHARED_TRIALS = 4
MIN_PART_S = 20.0  # a part is not started with less time than this left
TERM_GRACE_S = 20.0  # after SIGTERM (a sweep saves its state), before SIGKILL


class Clock:
    """The run's time budget: every part's timeout is cut to what is left."""

    def __init__(self, budget_s: float) -> None:
        self.deadline = time.monotonic() + budget_s

    def timeout(self, wanted_s: float) -> float:
        left = self.deadline - time.monotonic() - TERM_GRACE_S
        if left < MIN_PART_S:
            raise TimeoutError(f"skipped: {max(left, 0):.0f} s of the budget were left")
        return min(wanted_s, left)


def child_env(**extra: str) -> dict[str, str]:
    """This checkout first on the path (also for Ray workers); one thread per process."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1", **extra}


def run(cmd: list[str], timeout_s: float, env: dict[str, str] | None = None
        ) -> subprocess.CompletedProcess[str]:
    """``cmd`` in its own process group; on timeout SIGTERM the group, then SIGKILL it.

    Raises TimeoutError (with the output's tail) when it ran past ``timeout_s``.
    """
    print(f"[gpu-check] {' '.join(cmd)} (at most {timeout_s:.0f} s)", file=sys.stderr,
          flush=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env or child_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        # The whole group: Ray's processes die with the command that started them.
        for sig, wait_s in ((signal.SIGTERM, TERM_GRACE_S), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(proc.pid, sig)
                out, err = proc.communicate(timeout=wait_s)
                break
            except ProcessLookupError:
                out, err = proc.communicate()
                break
            except subprocess.TimeoutExpired:
                continue
        else:
            out, err = "", ""
        raise TimeoutError(f"timed out after {timeout_s:.0f} s; stderr ends: "
                           f"{(err or '')[-600:]}") from None
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def last_json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    """The command's last stdout line as a JSON object; a failure says why, briefly."""
    if done.returncode != 0:
        raise RuntimeError(f"exit status {done.returncode}; stderr ends: {done.stderr[-800:]}")
    lines = done.stdout.strip().splitlines()
    try:
        value = json.loads(lines[-1])
    except (IndexError, json.JSONDecodeError):
        raise RuntimeError(f"no JSON line at the end; stdout ends: {done.stdout[-400:]}"
                           ) from None
    if not isinstance(value, dict):
        raise RuntimeError("the last line is JSON but not an object")
    return value


# --- the CUDA tests ---------------------------------------------------------------------

def _is_cuda_skip(node: ast.expr, aliases: set[str]) -> bool:
    """``skipif(not <...cuda...>)`` (skipped without CUDA), or a module name bound to one.

    ``skipif(torch.cuda.is_available())`` is the opposite (a test for CPU-only machines).
    """
    if isinstance(node, ast.Name):
        return node.id in aliases
    if not (isinstance(node, ast.Call) and ast.unparse(node.func).endswith("skipif")):
        return False
    conditions = [*node.args[:1], *(k.value for k in node.keywords if k.arg == "condition")]
    return any(isinstance(c, ast.UnaryOp) and isinstance(c.op, ast.Not)
               and "cuda" in ast.unparse(c.operand) for c in conditions)


def cuda_test_ids(tests_dir: Path) -> list[str]:
    """Node ids of the tests skipped without CUDA: a ``skipif`` mentioning cuda (or a
    module-level name for one, ``needs_cuda = pytest.mark.skipif(...)``) on the test, its
    class, or the module's ``pytestmark``."""
    ids: list[str] = []
    for path in sorted(tests_dir.glob("test_*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        rel = path.relative_to(tests_dir.parent).as_posix()
        aliases: set[str] = set()
        module_marked = False
        for node in tree.body:
            if isinstance(node, ast.Assign) and _is_cuda_skip(node.value, set()):
                names = {t.id for t in node.targets if isinstance(t, ast.Name)}
                module_marked |= "pytestmark" in names
                aliases |= names - {"pytestmark"}

        def marked(decorators: list[ast.expr], aliases: set[str] = aliases) -> bool:
            return any(_is_cuda_skip(d, aliases) for d in decorators)

        for node in tree.body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                if node.name.startswith("test") and (module_marked or marked(node.decorator_list)):
                    ids.append(f"{rel}::{node.name}")
            elif isinstance(node, ast.ClassDef) and node.name.startswith("Test"):
                class_marked = module_marked or marked(node.decorator_list)
                ids.extend(
                    f"{rel}::{node.name}::{item.name}" for item in node.body
                    if isinstance(item, ast.FunctionDef) and item.name.startswith("test")
                    and (class_marked or marked(item.decorator_list))
                )
    return ids


def junit_outcomes(report: Path) -> dict[str, str]:
    """``{test: passed|failed|error|skipped}`` from pytest's --junitxml report."""
    outcomes: dict[str, str] = {}
    for case in ET.parse(report).getroot().iter("testcase"):
        name = f"{case.get('classname')}.{case.get('name')}"
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                outcome = {"failure": "failed"}.get(tag, tag)
        outcomes[name] = outcome
    return outcomes


def part_cuda_tests(clock: Clock, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    ids = cuda_test_ids(ROOT / "tests")
    if not ids:
        raise RuntimeError("no test in tests/ carries a CUDA skip marker")
    report = work / "cuda-tests.xml"
    done = run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                f"--junitxml={report}", *ids], clock.timeout(240))
    outcomes = junit_outcomes(report) if report.is_file() else {}
    counts = {k: sum(v == k for v in outcomes.values())
              for k in ("passed", "failed", "error", "skipped")}
    # A CPU rehearsal skips them all; it only checks that they are found and run.
    ok = done.returncode == 0 and (counts["passed"] == len(ids) or args.cpu_rehearsal)
    result: dict[str, Any] = {"ok": ok, "selected": len(ids), **counts, "tests": outcomes}
    if not ok:
        result["output_tail"] = (done.stdout + done.stderr)[-1500:]
    return result


# --- the training-step benchmark --------------------------------------------------------

def _bench(clock: Clock, device: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(ROOT / "bench" / "train_step.py"), "--device", device,
           "--threads", "1", "--repeats", "2" if args.quick else "3"]
    if device.startswith("cuda"):
        # GPU steps take milliseconds: longer blocks than the CPU defaults (30 and 10).
        cmd += ["--steps", "50" if args.quick else "150", "--warmup", "20"]
    report = last_json(run(cmd, clock.timeout(200)))
    figures = {}
    for shape in ("hopper", "antmaze"):
        figures[shape] = {
            "diffcps": report[shape]["threads_1"],
            "reference": report.get("reference", {}).get(shape, {}).get("threads_1"),
            "speedup": report.get("speedup", {}).get(shape, {}).get("threads_1"),
        }
    return figures


def part_train_step(clock: Clock, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    result: dict[str, Any] = {"unit": "training steps per second, batch 256, T=5",
                              "cpu_threads": 1}
    errors = {}
    for label, device in ((args.device, args.device), ("cpu", "cpu")):
        if label in result:
            continue  # --cpu-rehearsal: the "GPU" figure is the CPU's
        try:
            result[label] = _bench(clock, device, args)
        except (RuntimeError, TimeoutError, OSError) as error:
            errors[label] = str(error)
    if args.device in result and "cpu" in result and args.device != "cpu":
        result["gpu_over_cpu"] = {
            shape: round(result[args.device][shape]["diffcps"] / result["cpu"][shape]["diffcps"],
                         2) for shape in ("hopper", "antmaze")}  # fmt: skip
    result["ok"] = not errors
    if errors:
        result["errors"] = errors
    return result


# --- the sweeps -------------------------------------------------------------------------

def write_suite(work: Path, steps: int) -> Path:
    """The PointMaze suite with its smoke budget's iterations at ``steps`` gradient steps.

    The smoke budget's 20 steps per iteration take a GPU a fraction of a second, too little
    to time; trials, iterations and evaluations stay as small as smoke's.
    """
    import yaml

    from diffcps_ray.tune.suites import suite_path

    raw = yaml.safe_load(suite_path("pointmaze").read_text())
    for phase in ("search", "confirm"):
        raw["budgets"]["smoke"][phase]["steps_per_iteration"] = steps
    path = work / "suite" / "pointmaze.yaml"  # a suite's file is named after it
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _trial_results(experiment: Path, row: dict[str, Any]) -> list[dict[str, Any]]:
    path = experiment / row["path"] / "result.json"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def sweep_summary(experiment: Path, wall_s: float) -> dict[str, Any]:
    """Gradient steps/s, scores and peak GPU memory of a finished sweep's trials.

    ``sum_of_trial_steps_per_s`` adds the trials' own rates (their learners time the
    gradient steps alone): the GPU's aggregate rate while the trials overlap, an upper
    bound when they do not. ``end_to_end_steps_per_s`` divides every gradient step by the
    sweep's whole wall time (Ray's start, data, evaluations and checkpoints included).
    """
    manifest = json.loads((experiment / "experiment.json").read_text())
    trials = []
    for row in manifest["trials"]:
        results = _trial_results(experiment, row)
        learner = [r.get("learners", {}).get("default_policy", {}) for r in results]
        peaks = [x["gpu_peak_memory_mb"] for x in learner if "gpu_peak_memory_mb" in x]
        trials.append({
            "phase": row["phase"], "trial_id": row["trial_id"], "status": row["status"],
            "score": row["score"],
            "gradient_steps": int(results[-1]["num_gradient_steps"]) if results else 0,
            "steps_per_s": round(learner[-1]["steps_per_s"], 1) if learner else None,
            "gpu_peak_memory_mb": round(max(peaks), 1) if peaks else None,
        })  # fmt: skip
    search = [t for t in trials if t["phase"] == "search" and t["steps_per_s"]]
    steps = sum(t["gradient_steps"] for t in trials)
    scores = [t["score"] for t in trials]
    finite = bool(scores) and all(s is not None and math.isfinite(s) for s in scores)
    return {
        "ok": finite and manifest.get("status") == "done",
        "status": manifest.get("status"),
        "trials": trials,
        "scores_finite": finite,
        "gradient_steps": steps,
        "sum_of_trial_steps_per_s": round(sum(t["steps_per_s"] for t in search), 1),
        "end_to_end_steps_per_s": round(steps / wall_s, 1),
        "wall_s": round(wall_s, 1),
    }


def _sweep(clock: Clock, work: Path, args: argparse.Namespace, name: str, samples: int,
           gpus: float) -> dict[str, Any]:
    storage = work / "runs"
    cmd = [sys.executable, "-m", "diffcps_ray.tune", "--suite", str(args.suite_file),
           "--budget", "smoke", "--tasks", TASK, "--data-root", str(work / "data"),
           "--storage", str(storage), "--name", name, "--num-samples", str(samples),
           "--seeds", "1", "--gpus-per-learner", str(gpus)]
    start = time.monotonic()
    done = run(cmd, clock.timeout(300))
    wall = time.monotonic() - start
    experiment = storage / name
    if not (experiment / "experiment.json").is_file():
        raise RuntimeError(f"exit status {done.returncode}, no experiment.json; stderr ends: "
                           f"{done.stderr[-800:]}")
    summary = {"gpus_per_trial": gpus, "search_trials": samples, "confirm_trials": 1,
               **sweep_summary(experiment, wall)}
    summary["ok"] = summary["ok"] and done.returncode == 0
    if done.returncode != 0:
        summary["stderr_tail"] = done.stderr[-800:]
    return summary


def part_sweep_whole(clock: Clock, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    return _sweep(clock, work, args, "whole", 1, args.gpus)


def part_sweep_shared(clock: Clock, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    return _sweep(clock, work, args, "shared", SHARED_TRIALS, args.gpus / SHARED_TRIALS)


def part_peak_memory(clock: Clock, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The whole-GPU sweep's trials' peak CUDA memory (their learners' gpu_peak_memory_mb)."""
    experiment = work / "runs" / "whole"
    if not (experiment / "experiment.json").is_file():
        raise RuntimeError("the whole-GPU sweep left no experiment to read")
    trials = sweep_summary(experiment, 1.0)["trials"]
    peaks = {t["trial_id"]: t["gpu_peak_memory_mb"] for t in trials}
    known = [v for v in peaks.values() if v is not None]
    return {"ok": bool(known) or args.cpu_rehearsal,
            "max_mb": max(known) if known else None, "per_trial": peaks}


def part_cpu_evaluation(clock: Clock, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """The whole-GPU sweep's confirmed checkpoint and exported policies, scored with no
    GPU visible (``CUDA_VISIBLE_DEVICES=``)."""
    experiment = work / "runs" / "whole"
    if not (experiment / "experiment.json").is_file():
        raise RuntimeError("the whole-GPU sweep left no experiment to read")
    manifest = json.loads((experiment / "experiment.json").read_text())
    confirm = next(r for r in manifest["trials"] if r["phase"] == "confirm")
    targets = {"checkpoint": experiment / confirm["checkpoints"]["final"]["path"],
               "experiment_policy": experiment}
    result: dict[str, Any] = {}
    for label, path in targets.items():
        cmd = [sys.executable, "-m", "diffcps_ray.evaluate", str(path), "--task", TASK,
               "--episodes", "1" if args.quick else "2", "--json"]
        try:
            row = last_json(run(cmd, clock.timeout(120), child_env(CUDA_VISIBLE_DEVICES="")))
            score = row.get("normalized_score")
            result[label] = {"normalized_score": score,
                             "ok": isinstance(score, float) and math.isfinite(score)}
        except (RuntimeError, TimeoutError, OSError) as error:
            result[label] = {"ok": False, "error": str(error)}
    result["ok"] = all(v["ok"] for v in result.values())
    return result


# --- the run ----------------------------------------------------------------------------

PARTS: dict[str, Callable[[Clock, Path, argparse.Namespace], dict[str, Any]]] = {
    "cuda_tests": part_cuda_tests,
    "sweep_whole_gpu": part_sweep_whole,
    "gpu_peak_memory_mb": part_peak_memory,
    "cpu_evaluation": part_cpu_evaluation,
    "sweep_shared_gpu": part_sweep_shared,
    "train_step": part_train_step,
}


def run_part(name: str, clock: Clock, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """One part's figures, or ``{"ok": false, "error": ...}``: never raises."""
    start = time.monotonic()
    try:
        result = PARTS[name](clock, work, args)
    except Exception as error:  # one part's failure must not end the run
        result = {"ok": False, "error": f"{type(error).__name__}: {error}"}
    result["seconds"] = round(time.monotonic() - start, 1)
    state = "ok" if result.get("ok") else "FAILED"
    print(f"[gpu-check] {name}: {state} in {result['seconds']} s", file=sys.stderr, flush=True)
    return result


def machine(device: str) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"torch": torch.__version__, "cpus": os.cpu_count(),
                            "device": device}
    if device.startswith("cuda"):
        props = torch.cuda.get_device_properties(0)
        info.update(gpu=props.name, gpu_memory_gib=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, gpus=torch.cuda.device_count())
    return info


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="smaller benchmark blocks and sweeps (about half the time)")
    parser.add_argument("--budget-s", type=float, default=450.0,
                        help="wall-clock budget for all parts together (default 450)")
    parser.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS),
                        help="run only these parts (default: all, in this order)")
    parser.add_argument("--sweep-steps", type=int, default=None, metavar="N",
                        help="gradient steps per sweep iteration (default 1000, --quick 300)")
    parser.add_argument("--cpu-rehearsal", action="store_true",
                        help="run every part on the CPU (no CUDA needed): checks the plumbing; "
                             "its figures say nothing about a GPU")
    parser.add_argument("--keep", type=Path, default=None, metavar="DIR",
                        help="work in DIR and keep it (default: a temporary directory)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    if not args.cpu_rehearsal and not torch.cuda.is_available():
        build = " (a CPU-only build)" if "+cpu" in torch.__version__ else ""
        print(f"No CUDA device: torch {torch.__version__}{build} sees no GPU here, so there "
              f"is nothing for the GPU check to measure.", file=sys.stderr)
        return 1
    args.device = "cpu" if args.cpu_rehearsal else "cuda"
    args.gpus = 0.0 if args.cpu_rehearsal else 1.0
    clock = Clock(args.budget_s)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        steps = args.sweep_steps or (300 if args.quick else 1000)
        args.suite_file = write_suite(work, steps)
        report: dict[str, Any] = {"machine": machine(args.device), "quick": args.quick,
                                  "cpu_rehearsal": args.cpu_rehearsal, "sweep_steps": steps}
        for name in args.parts:
            report[name] = run_part(name, clock, work, args)
        report["ok"] = all(report[name].get("ok") for name in args.parts)
    print(json.dumps(report))
    return 0 if report["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
