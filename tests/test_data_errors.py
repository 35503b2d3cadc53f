"""Bad input: one sentence naming the file and the key, exit status 2, nothing written."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from diffcps_ray.cli import run_main
from diffcps_ray.data.__main__ import main
from tests.test_data_formats import hopper_episodes, leftovers, the_error, write_d4rl_locomotion


def _hopper_file(tmp_path, name="hopper.hdf5"):
    return write_d4rl_locomotion(tmp_path / name, hopper_episodes())


def _edit(path, key, value):
    with h5py.File(path, "a") as f:
        del f[key]
        if value is not None:
            f[key] = value


def _convert_fails(path, capsys, out, task="hopper-medium-v2") -> str:
    argv = ["convert", "--d4rl", str(path), "--task", task, "--out", str(out)]
    assert run_main(main, argv) == 2
    assert leftovers(out) == [], "a failed conversion must leave nothing behind"
    return the_error(capsys.readouterr().err)


@pytest.mark.parametrize("key", ["observations", "actions", "rewards", "terminals"])
def test_missing_key(tmp_path, capsys, key):
    path = _hopper_file(tmp_path)
    _edit(path, key, None)
    err = _convert_fails(path, capsys, tmp_path / "out")
    assert str(path) in err and repr(key) in err


def test_mismatched_lengths(tmp_path, capsys):
    path = _hopper_file(tmp_path)
    with h5py.File(path, "r") as f:
        actions = f["actions"][()]
    _edit(path, "actions", actions[:-5])
    err = _convert_fails(path, capsys, tmp_path / "out")
    assert str(path) in err and "'actions'" in err and "rows" in err


def test_wrong_dims_for_task(tmp_path, capsys):
    path = _hopper_file(tmp_path)  # 11-dim observations; walker2d needs 17
    err = _convert_fails(path, capsys, tmp_path / "out", task="walker2d-medium-v2")
    assert str(path) in err and "'observations'" in err and "walker2d-medium-v2" in err


@pytest.mark.parametrize(("key", "bad"), [("observations", np.nan), ("rewards", np.inf)])
def test_nan_or_inf(tmp_path, capsys, key, bad):
    path = _hopper_file(tmp_path)
    with h5py.File(path, "a") as f:
        values = f[key][()]
        values[7] = bad
        f[key][...] = values
    err = _convert_fails(path, capsys, tmp_path / "out")
    assert str(path) in err and repr(key) in err and "NaN or inf" in err and "row 7" in err


def test_empty_file(tmp_path, capsys):
    path = tmp_path / "empty.hdf5"
    path.write_bytes(b"")
    err = _convert_fails(path, capsys, tmp_path / "out")
    assert str(path) in err and "empty" in err


def test_file_with_no_rows(tmp_path, capsys):
    path = tmp_path / "norows.hdf5"
    with h5py.File(path, "w") as f:
        f["observations"] = np.zeros((0, 11), np.float32)
        f["actions"] = np.zeros((0, 3), np.float32)
        f["rewards"] = np.zeros(0, np.float32)
        f["terminals"] = np.zeros(0, bool)
    err = _convert_fails(path, capsys, tmp_path / "out")
    assert str(path) in err and "'rewards'" in err and "empty" in err


def test_unreadable_file(tmp_path, capsys):
    path = tmp_path / "garbage.hdf5"
    path.write_bytes(b"this is not an HDF5 file\n" * 100)
    err = _convert_fails(path, capsys, tmp_path / "out")
    assert str(path) in err and "not a readable HDF5 file" in err


def test_truncated_file(tmp_path, capsys):
    path = _hopper_file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    err = _convert_fails(path, capsys, tmp_path / "out")
    assert str(path) in err and ("truncated" in err or "not a readable" in err)


def test_missing_file(tmp_path, capsys):
    err = _convert_fails(tmp_path / "nope.hdf5", capsys, tmp_path / "out")
    assert "nope.hdf5" in err and "does not exist" in err


def test_unknown_task(tmp_path, capsys):
    err = _convert_fails(_hopper_file(tmp_path), capsys, tmp_path / "out", task="hopper-mediun-v2")
    assert "hopper-mediun-v2" in err and "hopper-medium-v2" in err


def test_bad_flag_is_one_sentence(tmp_path, capsys):
    assert run_main(main, ["convert", "--task", "hopper-medium-v2", "--out", str(tmp_path)]) == 2
    assert "--d4rl" in the_error(capsys.readouterr().err)
    argv = ["generate", "--task", "pointmaze-umaze", "--out", str(tmp_path), "--steps", "0"]
    assert run_main(main, argv) == 2
    assert "--steps" in the_error(capsys.readouterr().err)


def test_existing_target_is_refused_then_replaced_with_overwrite(tmp_path, capsys):
    out = tmp_path / "out"
    first = _hopper_file(tmp_path, "first.hdf5")
    argv = ["convert", "--d4rl", str(first), "--task", "hopper-medium-v2", "--out", str(out)]
    assert run_main(main, argv) == 0
    before = (out / "hopper-medium-v2" / "manifest.json").read_text()

    assert run_main(main, argv) == 2
    err = the_error(capsys.readouterr().err)
    assert "already exists" in err and "--overwrite" in err
    assert (out / "hopper-medium-v2" / "manifest.json").read_text() == before

    assert run_main(main, [*argv, "--overwrite", "--rows-per-shard", "50"]) == 0
    assert (out / "hopper-medium-v2" / "manifest.json").read_text() != before
    # Only the task directory remains: no staging or old copies beside it.
    assert [p.name for p in out.iterdir()] == ["hopper-medium-v2"]


def test_failed_overwrite_keeps_the_old_data(tmp_path, capsys):
    out = tmp_path / "out"
    good = _hopper_file(tmp_path, "good.hdf5")
    argv = ["convert", "--task", "hopper-medium-v2", "--out", str(out), "--overwrite"]
    assert run_main(main, [*argv, "--d4rl", str(good)]) == 0
    before = sorted(p.name for p in (out / "hopper-medium-v2").iterdir())

    bad = _hopper_file(tmp_path, "bad.hdf5")
    _edit(bad, "terminals", None)
    assert run_main(main, [*argv, "--d4rl", str(bad)]) == 2
    the_error(capsys.readouterr().err)
    assert sorted(p.name for p in (out / "hopper-medium-v2").iterdir()) == before
    assert [p.name for p in out.iterdir()] == ["hopper-medium-v2"]


def test_output_root_that_is_a_file(tmp_path, capsys):
    out = tmp_path / "occupied"
    out.write_text("not a directory")
    argv = ["convert", "--d4rl", str(_hopper_file(tmp_path)), "--task", "hopper-medium-v2"]
    assert run_main(main, [*argv, "--out", str(out)]) == 2
    assert "Could not create" in the_error(capsys.readouterr().err)
