"""The training-step benchmark runs and prints its JSON summary last."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_train_step_bench_prints_one_json_object_last() -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    run = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "train_step.py"), "--threads", "1",
         "--steps", "1", "--repeats", "1", "--warmup", "1", "--shape", "hopper"],
        capture_output=True, text=True, env=env, timeout=120, check=True,
    )  # fmt: skip
    report = json.loads(run.stdout.strip().splitlines()[-1])
    assert report["hopper"]["threads_1"] > 0
    assert report["speedup"]["hopper"]["threads_1"] > 0
    assert report["meta"]["batch_size"] == 256
