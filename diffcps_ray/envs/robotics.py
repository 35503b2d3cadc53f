"""gymnasium-robotics, imported quietly.

gymnasium-robotics 1.4.2 prints a notice about Adroit envs to stderr at import; our
commands promise one plain sentence on stderr for errors, so the notice is swallowed here.
"""

from __future__ import annotations

import contextlib
import io

with contextlib.redirect_stderr(io.StringIO()):
    import gymnasium_robotics  # noqa: F401 - imported for its side effect only once
    from gymnasium_robotics.envs.maze import maps
    from gymnasium_robotics.envs.maze.point_maze import PointMazeEnv

__all__ = ["PointMazeEnv", "maps"]
