"""A non-editable install (what cluster nodes run) ships the code, its data and the suites."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from importlib.metadata import version
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# What a build reads: the rest of the checkout (tests, docs, a .venv) stays out of the copy.
SOURCES = ("pyproject.toml", "README.md", "diffcps_ray", "analysis", "tune_configs")
PIP = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]

LOAD_EVERY_SUITE = """
import json, diffcps_ray, tune_configs
from diffcps_ray.envs.tasks import get_task
from diffcps_ray.tune.suites import list_suites, load_suite
print(json.dumps({
    "files": [diffcps_ray.__file__, tune_configs.__file__],
    "suites": {name: sorted(load_suite(name).tasks) for name in list_suites()},
    "reference": get_task("pointmaze-umaze").ref_max_score,
}))
"""


@pytest.mark.slow
def test_an_installed_wheel_loads_every_suite_away_from_the_checkout(tmp_path: Path) -> None:
    if int(version("setuptools").split(".")[0]) < 77:
        pytest.skip("building offline needs setuptools>=77 in this environment")
    source = tmp_path / "source"  # a copy: an in-tree build would write build/ into ROOT
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name,
                            ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        else:
            shutil.copy2(ROOT / name, source / name)
    # Offline: the build uses this environment's setuptools instead of downloading one.
    subprocess.run([*PIP, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path),
                    str(source)], check=True, timeout=300)  # fmt: skip
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"tune_configs/pointmaze.yaml", "tune_configs/ablations/ablation-T.yaml",
            "diffcps_ray/envs/reference_scores.json"} <= names  # fmt: skip
    site = tmp_path / "site"
    subprocess.run([*PIP, "install", "--no-deps", "--no-index", "--target", str(site),
                    str(wheel)], check=True, timeout=300)  # fmt: skip

    # Away from the checkout: only the install is on the path (dependencies from this venv).
    env = {**os.environ, "PYTHONPATH": str(site)}
    done = subprocess.run([sys.executable, "-c", LOAD_EVERY_SUITE], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr[-4000:]
    found = json.loads(done.stdout)
    assert all(Path(f).is_relative_to(site) for f in found["files"])
    expected = sorted(p.stem for p in (ROOT / "tune_configs").rglob("*.yaml"))
    assert sorted(found["suites"]) == expected
    assert found["suites"]["antmaze"] and found["reference"] is not None
