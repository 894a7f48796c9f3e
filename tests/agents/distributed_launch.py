"""Start ranks of a distributed run as plain subprocesses, the way torchrun would, with a deadline.

Each rank gets the launcher's variables (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``, ``MASTER_ADDR``,
``MASTER_PORT``), one intra-op thread (two ranks share two cores) and the repository root as its
working directory and ``PYTHONPATH``, so it imports this tree. A run that passes its deadline is
killed and reported as a hang: a test can fail, never wait forever.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class RankResult:
    rank: int
    returncode: int
    output: str


class Hang(AssertionError):
    """The ranks did not all exit before the deadline."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def base_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_WORLD_SIZE"):
        env.pop(name, None)
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env.update(extra or {})
    return env


def _start(argv: list[str], env: dict[str, str]) -> tuple[subprocess.Popen, IO[str]]:
    # Output goes to a file, not a pipe: a rank blocked on a full pipe that nobody reads would
    # stall the other ranks in their next collective.
    log = tempfile.TemporaryFile("w+")  # noqa: SIM115 (closed by _finish, after the process ended)
    proc = subprocess.Popen(
        [sys.executable, *argv], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, text=True
    )
    return proc, log


def _finish(started: list[tuple[subprocess.Popen, IO[str]]], timeout: float, what: str) -> list[RankResult]:
    deadline = time.monotonic() + timeout
    hung = False
    for proc, _ in started:
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            hung = True
            break
    if hung:
        # SIGTERM first: torchrun passes it on to its workers (in sessions of their own, out of
        # reach of a kill of torchrun alone) and ends them within its shutdown timeout (30 s).
        for proc, _ in started:
            proc.terminate()
        for proc, _ in started:
            try:
                proc.wait(timeout=45)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    results = []
    for rank, (proc, log) in enumerate(started):
        log.seek(0)
        results.append(RankResult(rank, proc.returncode, log.read()))
        log.close()
    if hung:
        tails = [r.output[-2000:] for r in results]
        raise Hang(f"{what} did not finish within {timeout:.0f} s (killed); output tails: {tails}")
    return results


def run_ranks(argv: list[str], world_size: int = 2, timeout: float = 240.0) -> list[RankResult]:
    """Run ``python <argv>`` as ``world_size`` ranks on this machine; wait at most ``timeout`` seconds."""
    port = str(free_port())
    started = []
    for rank in range(world_size):
        env = base_env(
            {
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "WORLD_SIZE": str(world_size),
                "LOCAL_WORLD_SIZE": str(world_size),
                "MASTER_ADDR": "127.0.0.1",
                "MASTER_PORT": port,
            }
        )
        started.append(_start(argv, env))
    return _finish(started, timeout, f"{world_size} ranks of {argv}")


def run_single(argv: list[str], timeout: float = 240.0) -> RankResult:
    """Run ``python <argv>`` as one plain process (no launcher variables)."""
    (result,) = _finish([_start(argv, base_env())], timeout, f"{argv}")
    return result


def run_torchrun(argv: list[str], nproc: int = 2, timeout: float = 300.0) -> RankResult:
    """``torchrun --standalone --nproc_per_node <nproc> <argv>`` (through ``python -m torch.distributed.run``)."""
    command = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *argv]
    return run_single(command, timeout)


def check_ok(results: list[RankResult]) -> None:
    for result in results:
        assert result.returncode == 0, (
            f"rank {result.rank} exited with {result.returncode}:\n{result.output[-4000:]}"
        )
