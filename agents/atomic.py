"""Directories written atomically: a crash, Ctrl-C or SIGKILL never leaves one half-written.

The implementation is :mod:`reward_models.atomic_io`'s (reward models are saved the same way);
this module keeps the agents' import path.
"""

from __future__ import annotations

from reward_models.atomic_io import atomic_directory, recover_directory

__all__ = ["atomic_directory", "recover_directory"]
