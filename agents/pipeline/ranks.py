"""The loop on several processes: rank 0 runs the stages that write files, every rank runs the RL.

Under ``torchrun`` (or ``accelerate launch``) every rank runs :func:`~agents.pipeline.run_pipeline`
with the same settings. The run directory, demonstrations, SFT, pairs, labels, reward model and
evaluation are made once, by rank 0, while the other ranks wait; then every rank loads what rank 0
wrote and trains the round's policy as one data-parallel agent (each rank its share of the global
batch, gradients averaged; only rank 0 writes the checkpoint, ``rl.json``, metrics and TensorBoard).

The wait can be long (a person labelling pairs in the browser), longer than the process group's
collective timeout, so the waiting happens on a gloo group of its own with a timeout of
:data:`STAGE_WAIT`. If rank 0 fails in a stage, it sends its error, and every other rank raises a
:class:`~agents.distributed.RankFailure` naming it; a rank 0 that dies outright closes its
connections, and the waiting ranks fail at once (``torchrun`` then stops them all).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist

from agents import distributed

T = TypeVar("T")

STAGE_WAIT = timedelta(hours=24)  # how long the other ranks wait for one of rank 0's stages


class Ranks:
    """This process's part of the run: all of it alone, else rank 0's stages or a wait for them.

    Create it on every rank at the same point (it creates a process group, a collective step).

    Args:
        wait: how long ranks other than 0 wait for one of rank 0's stages before they fail.
    """

    def __init__(self, wait: timedelta = STAGE_WAIT) -> None:
        self.info = distributed.setup()
        self._group = dist.new_group(backend="gloo", timeout=wait) if self.info.enabled else None

    @property
    def enabled(self) -> bool:
        """True when several processes take part."""
        return self.info.enabled

    @property
    def is_main(self) -> bool:
        """Rank 0 (also a single process): the rank that runs the file-writing stages."""
        return self.info.is_main

    def on_main(self, stage: Callable[[], T], what: str) -> T | None:
        """Run ``stage`` on rank 0 while the other ranks wait; its result there, None elsewhere.

        Raises:
            BaseException: on rank 0, what ``stage`` raised (after telling the others).
            RankFailure: on the other ranks, when ``stage`` raised on rank 0.
        """
        if not self.enabled:
            return stage()
        result, error = None, None
        if self.is_main:
            try:
                result = stage()
            except BaseException as exc:  # Ctrl-C too: the others must not wait a day for it
                error = exc
        message = self._broadcast("" if error is None else distributed.describe(error))
        if error is not None:
            raise error
        if message:
            raise distributed.RankFailure(
                f"rank 0 failed during {what}, so rank {self.info.rank} stops too ({message})"
            )
        return result

    def from_main(self, *values: int) -> list[int]:
        """Rank 0's ``values`` on every rank (call it on every rank at the same point).

        What rank 0 sees on disk decides for all: on several machines another rank's view of the
        shared run directory may lag behind (NFS caches), and ranks that took different paths
        would no longer meet in the same collectives.
        """
        if not self.enabled:
            return [int(v) for v in values]
        data = torch.tensor([int(v) for v in values], dtype=torch.long)
        dist.broadcast(data, src=0, group=self._group)
        return [int(v) for v in data.tolist()]

    def _broadcast(self, message: str) -> str:
        """Rank 0's ``message`` on every rank (UTF-8 bytes in two gloo broadcasts; no pickling)."""
        data = torch.frombuffer(bytearray(message.encode("utf-8")), dtype=torch.uint8) if message else None
        size = torch.tensor([0 if data is None else len(data)], dtype=torch.long)
        dist.broadcast(size, src=0, group=self._group)
        if int(size) == 0:
            return ""
        buffer = data if self.is_main and data is not None else torch.empty(int(size), dtype=torch.uint8)
        dist.broadcast(buffer, src=0, group=self._group)
        return bytes(buffer.tolist()).decode("utf-8")


__all__ = ["STAGE_WAIT", "Ranks"]
