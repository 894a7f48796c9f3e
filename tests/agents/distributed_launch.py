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
import time
from dataclasses import dataclass
from pathlib import Path

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


def _finish(procs: list[subprocess.Popen], timeout: float, what: str) -> list[str]:
    deadline = time.monotonic() + timeout
    outputs: list[str] = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=max(deadline - time.monotonic(), 0.1))
            outputs.append(out)
    except subprocess.TimeoutExpired:
        for proc in procs:
            proc.kill()
        tails = [(proc.communicate()[0] or "")[-2000:] for proc in procs]
        raise Hang(f"{what} did not finish within {timeout:.0f} s (killed); output tails: {tails}") from None
    return outputs


def run_ranks(argv: list[str], world_size: int = 2, timeout: float = 240.0) -> list[RankResult]:
    """Run ``python <argv>`` as ``world_size`` ranks on this machine; wait at most ``timeout`` seconds."""
    port = str(free_port())
    procs = []
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
        procs.append(
            subprocess.Popen(
                [sys.executable, *argv],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outputs = _finish(procs, timeout, f"{world_size} ranks of {argv}")
    return [RankResult(r, p.returncode, out) for r, (p, out) in enumerate(zip(procs, outputs, strict=True))]


def run_single(argv: list[str], timeout: float = 240.0) -> RankResult:
    """Run ``python <argv>`` as one plain process (no launcher variables)."""
    proc = subprocess.Popen(
        [sys.executable, *argv],
        cwd=ROOT,
        env=base_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    (out,) = _finish([proc], timeout, f"{argv}")
    return RankResult(0, proc.returncode, out)


def run_torchrun(argv: list[str], nproc: int = 2, timeout: float = 300.0) -> RankResult:
    """``torchrun --standalone --nproc_per_node <nproc> <argv>`` (through ``python -m torch.distributed.run``)."""
    command = ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", *argv]
    return run_single(command, timeout)


def check_ok(results: list[RankResult]) -> None:
    for result in results:
        assert result.returncode == 0, (
            f"rank {result.rank} exited with {result.returncode}:\n{result.output[-4000:]}"
        )
