"""Stopping RL cleanly: Ctrl-C during RL, and the gold-vs-proxy divergence early stop.

Both are Stable-Baselines3-style callbacks whose ``on_step`` returns False to stop ``learn``.

Ctrl-C during RL does not raise in the middle of an update: :class:`GracefulInterrupt` turns the
first SIGINT into a flag, the current rollout and update finish, and :class:`SaveOnInterrupt`
saves the agent at the next iteration boundary (before any random draw of the next rollout), so
``Algo.load(...)`` then ``learn(reset_num_timesteps=False)`` continues exactly as if never stopped.
A second Ctrl-C raises ``KeyboardInterrupt`` at once. Outside RL, Ctrl-C raises as usual: every
stage's output is written atomically, so an interrupted stage is simply redone by ``--resume``.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

from rich.console import Console
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, filter_excluded_keys

from agents import distributed


class PipelineInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped the run after writing a checkpoint; ``--resume`` continues it."""


class GracefulInterrupt:
    """While active, the first SIGINT sets :attr:`requested`; the second raises ``KeyboardInterrupt``."""

    def __init__(self, console: Console | None = None) -> None:
        self.requested = False
        self.console = console

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        if self.console is not None:
            self.console.print(
                "[yellow]Ctrl-C: saving a checkpoint after this RL iteration (again to abort)[/]"
            )

    def requested_anywhere(self) -> bool:
        """Whether Ctrl-C reached this process, or under a launcher any rank (call it on every rank)."""
        return bool(distributed.max_int(int(self.requested)))

    @contextmanager
    def active(self) -> Iterator[GracefulInterrupt]:
        """Install the handler (main thread only: elsewhere Python cannot take signals, nothing changes)."""
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield self
        finally:
            signal.signal(signal.SIGINT, previous)


class SaveOnInterrupt(BaseCallback):
    """Saves the agent to ``path`` at the first iteration boundary after Ctrl-C, then stops ``learn``."""

    def __init__(self, interrupt: GracefulInterrupt, path: Path) -> None:
        super().__init__()
        self.interrupt = interrupt
        self.path = path
        self.saved = False

    def _on_rollout_start(self) -> None:
        # Agreed over the ranks: a signal reaches them at different moments, and they save together.
        if not self.saved and self.interrupt.requested_anywhere():
            self.model.save(self.path)  # type: ignore[attr-defined]  # a textrl agent
            self.saved = True

    def _on_step(self) -> bool:
        return not self.saved


class GoldProxyDivergence(BaseCallback):
    """Stops RL when the gold score falls ``tolerance`` below its best while the proxy does not fall.

    That is reward over-optimisation caught in the act: the learned reward model still approves of
    what the policy does, the true objective no longer does.

    Args:
        measure: ``() -> (gold, proxy)`` mean scores of fresh held-out samples of the current policy.
        check_every: timesteps between two checks.
        tolerance: how far gold may fall below its best before RL stops.
    """

    def __init__(
        self, measure: Callable[[], tuple[float, float]], check_every: int, tolerance: float
    ) -> None:
        super().__init__()
        if not (math.isfinite(tolerance) and tolerance > 0):
            raise ValueError(f"tolerance must be a finite number > 0, got {tolerance!r}")
        self.measure = measure
        self.check_every = int(check_every)
        self.tolerance = float(tolerance)
        self.history: list[tuple[int, float, float]] = []  # (timestep, gold, proxy)
        self.stopped_at: int | None = None
        self._last = 0

    def _on_training_start(self) -> None:
        self._last = self.model.num_timesteps
        self.history.append((self._last, *self.measure()))

    def _on_step(self) -> bool:
        if self.model.num_timesteps - self._last < self.check_every:
            return True
        self._last = self.model.num_timesteps
        gold, proxy = self.measure()
        self.history.append((self._last, gold, proxy))
        self.logger.record("early_stop/gold", gold)
        self.logger.record("early_stop/proxy", proxy)
        _, best_gold, proxy_at_best = max(self.history, key=lambda h: h[1])
        if best_gold - gold > self.tolerance and proxy >= proxy_at_best:
            self.stopped_at = self._last
            return False
        return True


class MetricsWriter(KVWriter):
    """An SB3 log writer that sends each dump to the pipeline's ``metrics.jsonl`` as an ``rl`` event."""

    def __init__(self, log: Callable[..., None], round_: int) -> None:
        self.log = log
        self.round = round_

    def write(
        self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0
    ) -> None:
        values = filter_excluded_keys(key_values, key_excluded, "json")
        plain = {k: v for k, v in values.items() if isinstance(v, int | float)}
        self.log("rl", self.round, step, **plain)

    def close(self) -> None:
        pass


__all__ = [
    "GoldProxyDivergence",
    "GracefulInterrupt",
    "MetricsWriter",
    "PipelineInterrupted",
    "SaveOnInterrupt",
]
