"""Render a policy's episodes offscreen with MuJoCo into an MP4 or a GIF.

Frames come from ``mujoco.Renderer`` on the simulator's own model and data (so every task
renders, whether its env has a render mode or not): a top-down view of the whole maze for
maze tasks, a camera tracking the body for locomotion. Frames stream to ffmpeg through
imageio-ffmpeg (H.264 for ``.mp4``, a palette GIF for ``.gif``), never held in memory.

Headless machines need an offscreen OpenGL backend: ``MUJOCO_GL=egl`` (the default set
here when MUJOCO_GL is unset) or ``MUJOCO_GL=osmesa``. ``check_rendering`` tries it on a
one-box model before any episode runs, so a missing backend stops with one sentence.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from diffcps_ray.policy.core import PolicyError
from diffcps_ray.policy.rollouts import wrapped_layers

if TYPE_CHECKING:
    from diffcps_ray.envs.tasks import TaskSpec
    from diffcps_ray.policy.core import Policy

VIDEO_FORMATS = {".mp4": ("libx264", "yuv420p"), ".gif": ("gif", "rgb8")}
FRAME_SIZE = {".mp4": (480, 480), ".gif": (240, 240)}  # (height, width); MP4 in 16-px blocks
DEFAULT_FPS = 30


class VideoError(PolicyError):
    """A video that cannot be written here (format, path or no OpenGL backend)."""


def check_video_path(path: Path) -> str:
    """The video's format (its suffix); a bad suffix or a missing folder raises."""
    suffix = path.suffix.lower()
    if suffix not in VIDEO_FORMATS:
        raise VideoError(f"--video {path}: the file must end in .mp4 or .gif.")
    if not path.parent.expanduser().is_dir():
        raise VideoError(f"--video {path}: the folder {path.parent} does not exist.")
    if path.is_dir():
        raise VideoError(f"--video {path} is a directory, not a file name.")
    return suffix


def check_rendering() -> None:
    """Render one frame of a tiny model; raise VideoError saying what to set if it fails."""
    os.environ.setdefault("MUJOCO_GL", "egl")
    backend = os.environ["MUJOCO_GL"]
    try:
        import mujoco

        model = mujoco.MjModel.from_xml_string(
            "<mujoco><worldbody><geom type='box' size='1 1 1'/></worldbody></mujoco>"
        )
        renderer = mujoco.Renderer(model, 16, 16)
        renderer.update_scene(mujoco.MjData(model))
        renderer.render()
        renderer.close()
    except Exception as error:  # any failure of the GL stack means the same to the user
        if isinstance(error, AttributeError | ImportError | OSError):
            # What a missing GL library looks like from Python ('NoneType' has no glGetError).
            reason = "its GL library did not load"
        else:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise VideoError(
            f"Cannot render video: MuJoCo has no working OpenGL backend with "
            f"MUJOCO_GL={backend} ({reason}); install EGL (apt-get install libegl1) and set "
            f"MUJOCO_GL=egl, or install OSMesa and set MUJOCO_GL=osmesa."
        ) from None


def _mujoco_handles(env: Any) -> tuple[Any, Any]:
    """The MjModel and MjData behind an env (ours, gymnasium's, gymnasium-robotics')."""
    import mujoco

    for obj in wrapped_layers(env):
        model, data = getattr(obj, "model", None), getattr(obj, "data", None)
        if isinstance(model, mujoco.MjModel) and isinstance(data, mujoco.MjData):
            return model, data
    raise VideoError(f"Cannot render video: the env {type(env).__name__} is not a MuJoCo env.")


def _camera(model: Any, top_down: bool) -> Any:
    import mujoco

    camera = mujoco.MjvCamera()
    if top_down:
        # The whole maze from above; the static geoms dominate the model's extent.
        camera.type = mujoco.mjtCamera.mjCAMERA_FREE
        camera.lookat[:] = model.stat.center
        camera.distance = 0.9 * float(model.stat.extent)
        camera.elevation = -90.0
        camera.azimuth = 90.0
    else:
        camera.type = mujoco.mjtCamera.mjCAMERA_TRACKING
        camera.trackbodyid = 1 if model.nbody > 1 else 0
        camera.distance = 4.0
        camera.elevation = -20.0
        camera.azimuth = 90.0
    return camera


def _frames_per_second(env: Any) -> int:
    dt = getattr(getattr(env, "unwrapped", env), "dt", None)
    try:
        return int(np.clip(round(1.0 / float(dt)), 10, 60))
    except (TypeError, ValueError, ZeroDivisionError):
        return DEFAULT_FPS


def _episode_frames(policy: Policy, spec: TaskSpec, env: Any, seed: int,
                    max_steps: int | None, renderer: Any, camera: Any,
                    data: Any) -> Iterator[np.ndarray]:
    obs, _ = env.reset(seed=seed)
    renderer.update_scene(data, camera=camera)
    yield renderer.render()
    steps = 0
    while max_steps is None or steps < max_steps:
        action = policy.act(obs[None, :])[0]
        obs, _, terminated, truncated, _ = env.step(action)
        steps += 1
        renderer.update_scene(data, camera=camera)
        yield renderer.render()
        if terminated or truncated:
            break


def record_video(policy: Policy, spec: TaskSpec, path: Path, episodes: int, seed: int,
                 max_steps: int | None = None) -> dict[str, Any]:
    """Render ``episodes`` episodes (the evaluation's first starts: same reset seeds) to
    ``path``; returns ``{"path", "episodes", "frames", "fps"}``.

    Each episode gives one frame after its reset and one after every step. The file is
    written under a temporary name and renamed when complete.
    """
    import imageio_ffmpeg
    import mujoco

    from diffcps_ray.envs.evaluate import episode_seeds

    suffix = check_video_path(path)
    check_rendering()
    codec, pixel_format = VIDEO_FORMATS[suffix]
    height, width = FRAME_SIZE[suffix]
    env = spec.make_env()
    model, data = _mujoco_handles(env)
    # The offscreen buffer must hold the frame (models default to 640x480).
    model.vis.global_.offwidth = max(int(model.vis.global_.offwidth), width)
    model.vis.global_.offheight = max(int(model.vis.global_.offheight), height)
    renderer = mujoco.Renderer(model, height, width)
    camera = _camera(model, top_down=spec.is_goal_task)
    fps = _frames_per_second(env)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}{suffix}")
    writer = imageio_ffmpeg.write_frames(
        str(tmp), (width, height), fps=fps, codec=codec, pix_fmt_out=pixel_format,
        macro_block_size=1, ffmpeg_log_level="error",
        output_params=["-loop", "0"] if suffix == ".gif" else None,
    )
    frames = 0
    try:
        writer.send(None)
        for episode_seed in episode_seeds(seed, episodes):
            for frame in _episode_frames(policy, spec, env, episode_seed, max_steps,
                                         renderer, camera, data):
                writer.send(np.ascontiguousarray(frame))
                frames += 1
        writer.close()
        tmp.replace(path)
    except BaseException:
        writer.close()
        tmp.unlink(missing_ok=True)
        raise
    finally:
        renderer.close()
        env.close()
    return {"path": str(path), "episodes": episodes, "frames": frames, "fps": fps}
