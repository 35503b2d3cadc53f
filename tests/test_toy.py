"""The toy bandit: scoring on hand-made points, the AWR baseline, the CLI end to end."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from diffcps_ray import toy
from diffcps_ray.cli import run_main


def polygon(num_vertices: int, radius: float = 1.0, phase: float = 0.0) -> np.ndarray:
    """Vertices of a regular polygon on a circle, angles ``phase + 2πk/n``."""
    angles = phase + 2.0 * math.pi * np.arange(num_vertices) / num_vertices
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def at_degrees(degrees: list[float] | np.ndarray, radius: float = 1.0) -> np.ndarray:
    angles = np.radians(np.asarray(degrees, dtype=np.float64))
    return radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)


# 360 points on the unit circle: every nearest-neighbour distance is the chord 2 sin(π/360).
RING = polygon(360)
RING_CHORD = 2.0 * math.sin(math.pi / 360)


def test_band_threshold_of_a_regular_polygon_is_its_chord() -> None:
    assert toy.band_threshold(RING) == pytest.approx(RING_CHORD, rel=1e-12)


def test_nearest_distances_skip_self_by_index_not_by_distance() -> None:
    data = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]])
    # The duplicate at the origin is another data point: distance 0, not its own 0.
    np.testing.assert_allclose(toy.nearest_distances(data, data, exclude_self=True), [0, 0, 5])
    np.testing.assert_allclose(toy.nearest_distances(data, data), [0, 0, 0])


def test_in_band_exact_data_points_centre_and_off_ring() -> None:
    threshold = toy.band_threshold(RING)
    assert toy.score_samples(RING, RING, threshold)["in_band"] == 1.0
    assert toy.score_samples(np.zeros((10, 2)), RING, threshold)["in_band"] == 0.0
    # Half-way between two vertices on the circle: 2 sin(π/720) ≈ 0.0087 < chord ≈ 0.0175.
    midpoints = polygon(360, phase=math.pi / 360)
    assert toy.score_samples(midpoints, RING, threshold)["in_band"] == 1.0
    # 0.1 outside the ring is farther than the chord.
    assert toy.score_samples(polygon(360, radius=1.1), RING, threshold)["in_band"] == 0.0
    # Strictly closer: a sample exactly one chord away from its nearest point is out.
    assert not toy.in_band_mask(RING[:1], RING[1:2], RING_CHORD)[0]


def test_angle_bins_start_at_minus_pi_and_wrap() -> None:
    bins = toy.angle_bins(at_degrees([-179.0, -171.0, -1.0, 0.0, 5.0, 179.0, 180.0]))
    np.testing.assert_array_equal(bins, [0, 0, 17, 18, 18, 35, 0])


def test_coverage_full_ring_quarter_arc_and_one_point() -> None:
    bin_centres = np.arange(-175.0, 180.0, 10.0)  # 36 centres, one per bin
    assert toy.coverage(at_degrees(bin_centres)) == 1.0
    assert toy.coverage(RING) == 1.0
    quarter = at_degrees(np.arange(5.0, 90.0, 10.0))  # 5°..85°: bins 18..26
    assert toy.coverage(quarter) == pytest.approx(0.25)
    assert toy.coverage(at_degrees([45.0] * 7)) == pytest.approx(1 / 36)
    assert toy.coverage(np.zeros((0, 2))) == 0.0


def test_coverage_counts_only_in_band_samples() -> None:
    threshold = toy.band_threshold(RING)
    on_quarter = at_degrees(np.arange(5.0, 90.0, 10.0))  # exactly on RING's vertices
    inner_circle = polygon(36, radius=0.5)  # every angle bin, none in band
    scores = toy.score_samples(np.concatenate([on_quarter, inner_circle]), RING, threshold)
    assert scores["in_band"] == pytest.approx(9 / 45)
    assert scores["coverage"] == pytest.approx(0.25)
    assert toy.score_samples(inner_circle, RING, threshold)["coverage"] == 0.0


def test_ring_data_is_seeded_and_noisy_around_the_unit_circle() -> None:
    data = toy.make_ring_data(2000, 0.05, seed=3)
    assert data.shape == (2000, 2) and data.dtype == np.float32
    np.testing.assert_array_equal(data, toy.make_ring_data(2000, 0.05, seed=3))
    radii = np.linalg.norm(data, axis=1)
    assert abs(radii.mean() - 1.0) < 0.01 and 0.03 < radii.std() < 0.07
    np.testing.assert_allclose(np.linalg.norm(toy.make_ring_data(50, 0.0, 0), axis=1), 1, 1e-6)


def test_bandit_batch_is_a_constant_state_terminal_step() -> None:
    batch = toy.bandit_batch(torch.ones(4, 2))
    assert set(batch) == {"obs", "actions", "rewards", "new_obs", "terminateds"}
    assert batch["obs"].shape == (4, toy.OBS_DIM) and not batch["obs"].any()
    assert bool((batch["rewards"] == 1).all()) and bool((batch["terminateds"] == 1).all())


def test_awr_fits_one_gaussian_centred_on_the_ring_and_is_seeded() -> None:
    data = torch.from_numpy(toy.make_ring_data(500, 0.05, seed=0))
    config = toy.ToyConfig(steps=300, samples=400, batch_size=64, log_every=1000, awr_lr=1e-2)
    samples, mean = toy.train_awr(data, config)
    assert samples.shape == (400, 2)
    # Max-likelihood Gaussian of a centred ring: mean ~ 0, per-axis std ~ 1/sqrt(2).
    assert np.linalg.norm(mean) < 0.15
    assert 0.5 < samples.std(axis=0).mean() < 0.9
    again, _ = toy.train_awr(data, config)
    np.testing.assert_array_equal(samples, again)


@pytest.mark.parametrize(
    "argv",
    [
        ["--steps", "0"],
        ["--T", "0"],
        ["--T", "5", "5"],
        ["--T"],
        ["--noise", "-0.1"],
        ["--samples", "0"],
        ["--batch-size", "0"],
        ["--steps", "many"],
        ["--no-such-flag"],
    ],
)
def test_bad_flags_give_one_line_error(
    argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "out"
    assert run_main(toy.main, [*argv, "--out", str(out_dir)]) != 0
    captured = capsys.readouterr()
    assert captured.err.startswith("error: ") and captured.err.count("\n") == 1
    assert not out_dir.exists()


def test_out_that_is_a_file_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    assert run_main(toy.main, ["--steps", "1", "--out", str(not_a_dir)]) != 0
    assert "not a directory" in capsys.readouterr().err


def test_cli_end_to_end_writes_scores_and_figure(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_dir = tmp_path / "new" / "toy"  # created by the run
    argv = ["--steps", "4", "--T", "2", "3", "--samples", "64", "--batch-size", "16"]
    argv += ["--num-points", "300", "--log-every", "2", "--seed", "1", "--out", str(out_dir)]
    assert run_main(toy.main, argv) == 0
    scores = json.loads((out_dir / "scores.json").read_text())
    assert set(scores) == {"awr", "diffcps", "diffusion_bc"}
    assert set(scores["awr"]) == {"-"}
    assert set(scores["diffcps"]) == set(scores["diffusion_bc"]) == {"2", "3"}
    for per_T in scores.values():
        for entry in per_T.values():
            assert set(entry) == {"in_band", "coverage"}
            assert all(0.0 <= value <= 1.0 for value in entry.values())
    assert (out_dir / "toy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(path.name for path in out_dir.iterdir()) == ["scores.json", "toy.png"]
    printed = capsys.readouterr().out
    assert "[diffcps T=3] step 4/4" in printed and "total wall time" in printed


@pytest.mark.parametrize("train", [toy.train_diffcps, toy.train_diffusion_bc])
def test_diffusion_methods_are_seeded_and_sample_inside_max_action(
    train: Callable[[torch.Tensor, toy.ToyConfig, int], np.ndarray],
) -> None:
    data = torch.from_numpy(toy.make_ring_data(200, 0.05, seed=0))
    config = toy.ToyConfig(steps=3, samples=50, batch_size=8, log_every=10)
    samples = train(data, config, 2)
    assert samples.shape == (50, 2) and np.abs(samples).max() <= toy.MAX_ACTION
    np.testing.assert_array_equal(samples, train(data, config, 2))
    other_seed = toy.ToyConfig(steps=3, samples=50, batch_size=8, log_every=10, seed=1)
    assert not np.array_equal(samples, train(data, other_seed, 2))
