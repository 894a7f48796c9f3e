"""Data parallelism on ``torch.distributed``: the few collective pieces every agent needs.

A run launched by ``torchrun`` or ``accelerate launch`` (both set ``WORLD_SIZE``, ``RANK``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``) has one process per device. Each process
(*rank*) runs its own vector env on its own share of the prompts; gradients are averaged by
``DistributedDataParallel``; the statistics that define a step over the whole batch (reward
whitening, advantage normalisation, the adaptive KL controller's measured KL) are reduced over all
ranks, so every rank takes the same step. Rank 0 writes logs and checkpoints.

Everything here is a no-op in a single process, so the same script runs with ``python script.py``
and ``torchrun --nproc_per_node 2 script.py``. In the spirit of nanoGPT's ``train.py``::

    info = setup()                     # init_process_group (nccl on CUDA, gloo on CPU) when launched
    torch.manual_seed(rank_seed(1337)) # a different, reproducible stream per rank
    my_prompts = shard(prompts)        # this rank's rows
    if info.is_main: ...               # logs and checkpoints

Failures: a rank whose rollout raises (say, in the reward function) reaches :func:`agree` with its
error, and every rank raises there (the others a :class:`RankFailure` naming it), instead of the
others waiting forever in the next collective. A crash elsewhere ends the process; its peers'
pending collectives then fail (gloo) or time out after the group's ``timeout``, and ``torchrun``
stops the remaining workers.
"""

from __future__ import annotations

import atexit
import gc
import os
import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist

T = TypeVar("T")

LAUNCH_VARIABLES = ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
DEFAULT_TIMEOUT = timedelta(minutes=10)
EXIT_WAIT = timedelta(seconds=20)  # how long rank 0 waits at exit for the other ranks to leave first


class RankFailure(RuntimeError):
    """Another rank of a distributed run raised; this rank stops with it."""


@dataclass(frozen=True)
class DistributedInfo:
    """Where this process stands in the run: ``world_size == 1`` is a plain single process."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        """True when several processes take part (collectives actually communicate)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that logs and writes checkpoints."""
        return self.rank == 0


# ---------------------------------------------------------------------------- launch and process group


def launched(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process was started by a distributed launcher with more than one process.

    Raises:
        ValueError: ``WORLD_SIZE`` is not an int, or is > 1 while another launch variable is missing.
    """
    environ = os.environ if environ is None else environ
    raw = environ.get("WORLD_SIZE")
    if raw is None or raw == "":
        return False
    try:
        world = int(raw)
    except ValueError:
        raise ValueError(f"WORLD_SIZE={raw!r} is not an int; unset it or launch with torchrun") from None
    if world <= 1:
        return False
    missing = [name for name in LAUNCH_VARIABLES if not environ.get(name)]
    if missing:
        raise ValueError(
            f"WORLD_SIZE={world} but {', '.join(missing)} not set; launch with "
            f"`torchrun --nproc_per_node {world} script.py` or `accelerate launch`, which set them all"
        )
    return True


def info() -> DistributedInfo:
    """This process's rank, world size and local rank (rank 0 of 1 without a process group)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistributedInfo()
    return DistributedInfo(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", dist.get_rank())),
        backend=str(dist.get_backend()),
    )


_OWNED_GROUP = False  # whether setup() created the default group (and so destroys it at exit)


def setup(timeout: timedelta = DEFAULT_TIMEOUT) -> DistributedInfo:
    """Join the launched run: create the default process group unless one exists.

    The backend is gloo for CPU tensors and, when CUDA is available, NCCL for CUDA tensors
    (``"cpu:gloo,cuda:nccl"``); this process's GPU becomes ``cuda:LOCAL_RANK``. In a single
    process (no launcher, no group) nothing happens. A group created here is destroyed at exit.

    Args:
        timeout: how long a collective waits for the other ranks before it fails (a rank that died
            without the others noticing otherwise blocks them until then).
    """
    global _OWNED_GROUP
    if dist.is_available() and dist.is_initialized():
        return info()
    if not launched():
        return DistributedInfo()
    if not dist.is_available():
        raise RuntimeError(
            "this torch build has no torch.distributed; install a build with it to launch ranks"
        )
    backend = "gloo"
    if torch.cuda.is_available():
        local_rank = int(os.environ["LOCAL_RANK"])
        torch.cuda.set_device(local_rank % torch.cuda.device_count())
        backend = "cpu:gloo,cuda:nccl"
    dist.init_process_group(backend=backend, timeout=timeout)
    _OWNED_GROUP = True
    atexit.register(teardown)
    return info()


def teardown() -> None:
    """Destroy the process group :func:`setup` created (a group the user created is left alone).

    Three things make the exit clean on every rank (a rank that left too early or tore down too late
    was seen to abort with ``terminate called without an active exception``):

    - garbage is collected first, so a DDP reducer or a pending work that still holds the group is
      freed while the interpreter is fully alive, not during its finalisation;
    - the group is destroyed before the process ends (the PyTorch-recommended order);
    - rank 0, which hosts the rendezvous store when no launcher agent does, leaves last: every other
      rank reports on the store once its group is gone, and rank 0 waits for those reports (at most
      :data:`EXIT_WAIT`, so a peer that was killed cannot hold it).
    """
    global _OWNED_GROUP
    owned, _OWNED_GROUP = _OWNED_GROUP, False
    if not (owned and dist.is_initialized()):
        return
    here = info()
    gc.collect()
    store = _default_store()
    dist.destroy_process_group()
    if store is None or not here.enabled:
        return
    try:
        if here.is_main:
            keys = [f"textrl/left/{r}" for r in range(1, here.world_size)]
            store.wait(keys, EXIT_WAIT)
            for key in keys:  # a store that outlives the group (torchrun's agent) must not see them again
                store.delete_key(key)
        else:
            store.set(f"textrl/left/{here.rank}", "1")
    except (RuntimeError, dist.DistError):
        pass  # a peer already gone (killed, or its store closed): nothing to wait for


def _default_store() -> dist.Store | None:
    """The default group's rendezvous store, kept beyond the group for the exit handshake (None if unknown)."""
    try:
        return dist.distributed_c10d._get_default_store()
    except (AttributeError, RuntimeError, ValueError):
        return None  # a private helper: tolerate its absence in other releases


def local_device(kind: str = "auto") -> torch.device:
    """This rank's device: ``cuda:LOCAL_RANK`` on a GPU machine (``"auto"`` or ``"cuda"``), else the CPU.

    Build the env with it so each rank generates on its own GPU::

        envs = gym.make_vec(id, num_envs=16, vectorization_mode="vector_entry_point", device=local_device())
    """
    if kind not in ("auto", "cuda", "cpu"):
        raise ValueError(f"kind must be 'auto', 'cuda' or 'cpu', got {kind!r}")
    if kind == "cpu" or (kind == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise ValueError("kind='cuda' but CUDA is not available; use kind='auto' or 'cpu'")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    return torch.device("cuda", local_rank % torch.cuda.device_count())


def check_device(device: torch.device) -> None:
    """Refuse a multi-GPU run whose ranks would share a GPU (NCCL cannot run two ranks on one device)."""
    here = info()
    if not here.enabled or device.type != "cuda" or torch.cuda.device_count() <= 1:
        return
    expected = here.local_rank % torch.cuda.device_count()
    if device.index is not None and device.index != expected:
        raise ValueError(
            f"rank {here.rank} (LOCAL_RANK={here.local_rank}) got an env on {device}, expected cuda:{expected}; "
            "build the env with device=agents.distributed.local_device() so each rank uses its own GPU"
        )


# ---------------------------------------------------------------------------- seeds and sharding


def rank_seed(seed: int, rank: int | None = None) -> int:
    """``seed + rank`` (nanoGPT's offset): a distinct, reproducible seed per rank; rank 0 keeps ``seed``."""
    return int(seed) + (info().rank if rank is None else int(rank))


def rank_generator(shared: torch.Generator) -> torch.Generator:
    """A generator for this rank's share of one rollout, derived from a generator all ranks share.

    Every rank draws the same 63-bit seed from ``shared`` (kept in lockstep, so one saved state
    serves any number of ranks) and offsets it by its rank. In a single process ``shared`` itself is
    returned, so single-process runs sample exactly as without this module.
    """
    here = info()
    if not here.enabled:
        return shared
    seed = int(torch.randint(2**62, (1,), generator=shared, device=shared.device))
    return torch.Generator(device=shared.device).manual_seed(seed + here.rank)


def shard(items: Sequence[T], group_size: int = 1) -> list[T]:
    """This rank's contiguous share of a global batch (rank ``r`` gets block ``r`` of ``world_size``).

    Args:
        items: the global batch, prompt-major when samples come in groups.
        group_size: samples that must stay on one rank (RLOO's ``k`` samples of a prompt).

    Raises:
        ValueError: the batch does not split into equal shares of whole groups.
    """
    here = info()
    n = len(items)
    if n % here.world_size != 0 or (n // here.world_size) % group_size != 0:
        raise ValueError(
            f"a global batch of {n} rows does not split into {here.world_size} equal shares of whole groups "
            f"of {group_size}; use a batch of a multiple of {here.world_size * group_size} rows"
        )
    per = n // here.world_size
    return list(items[here.rank * per : (here.rank + 1) * per])


# ---------------------------------------------------------------------------- reductions


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """The sum of ``tensor`` over all ranks (a new tensor; the input itself in a single process)."""
    if not info().enabled:
        return tensor
    out = tensor.detach().clone()
    dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out


def all_reduce_mean(tensor: torch.Tensor) -> torch.Tensor:
    """The mean of ``tensor`` over all ranks (each rank's value weighs the same)."""
    world = info().world_size
    return tensor if world == 1 else all_reduce_sum(tensor) / world


def _host_int(value: int, op: Any) -> int:
    if not info().enabled:
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.long, device=_flag_device())
    dist.all_reduce(t, op=op)
    return int(t.item())


def max_int(value: int) -> int:
    """The largest of each rank's ``value`` (a plain int, reduced without touching the GPU stream)."""
    return _host_int(value, dist.ReduceOp.MAX)


def broadcast_int(value: int) -> int:
    """Rank 0's ``value`` on every rank (e.g. a random seed drawn once for the whole run)."""
    if not info().enabled:
        return int(value)
    t = torch.tensor([int(value)], dtype=torch.long, device=_flag_device())
    dist.broadcast(t, src=0)
    return int(t.item())


def all_gather(tensor: torch.Tensor) -> torch.Tensor:
    """Every rank's ``tensor`` (same shape on each) concatenated along dim 0, in rank order."""
    here = info()
    if not here.enabled:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(here.world_size)]
    dist.all_gather(parts, tensor.detach().contiguous())
    return torch.cat(parts, dim=0)


def whiten(values: torch.Tensor, mask: torch.Tensor | None = None, shift_mean: bool = True) -> torch.Tensor:
    """:func:`reward_models.shaping.whiten` with the mean and variance of the global batch.

    The statistics are those of all ranks' unmasked entries together (unbiased variance), so a
    distributed run whitens exactly as one process holding the whole batch would; in a single
    process this is ``shaping.whiten``'s formula on the local batch.
    """
    if mask is not None and mask.shape != values.shape:
        raise ValueError(f"shape mismatch: values={tuple(values.shape)}, mask={tuple(mask.shape)}")
    keep = torch.ones_like(values) if mask is None else (mask != 0).to(values.dtype)
    totals = all_reduce_sum(torch.stack([(values * keep).sum(), keep.sum()]))
    total, n = totals[0], totals[1]
    if float(n) < 1:
        raise ValueError("whiten() got no unmasked values; the mask must have at least one nonzero entry")
    mean = total / n
    centred = (values - mean) * keep
    # Bessel's correction, as shaping.whiten (TRL, OpenRLHF); one value has no spread: variance 0.
    var = all_reduce_sum(centred.square().sum()) / (n - 1).clamp(min=1)
    out = centred * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * keep


# ---------------------------------------------------------------------------- agreeing, or failing together


def _flag_device() -> torch.device:
    """CPU when the group has gloo for CPU tensors (no GPU sync for a flag), else this rank's GPU."""
    backend = str(dist.get_backend())
    if "gloo" in backend or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", torch.cuda.current_device())


def describe(error: BaseException) -> str:
    """``Type: message``, the one line a rank sends the others about its error."""
    return "".join(traceback.format_exception_only(type(error), error)).strip()


def agree(error: BaseException | None = None, stop: bool = False, phase: str = "rollout") -> bool:
    """A checkpoint every rank reaches at the same point: fail together, or stop together.

    Call it on every rank, with the exception this rank caught since the last call (if any) and
    whether it wants to stop. If any rank brought an error, every rank raises: the rank that failed
    its own exception, the others a :class:`RankFailure` naming the failed ranks and their errors.

    Returns:
        True when any rank asked to stop. In a single process: raises ``error`` if given, else ``stop``.
    """
    here = info()
    if not here.enabled:
        if error is not None:
            raise error
        return stop
    flags = torch.tensor([int(error is not None), int(stop)], device=_flag_device())
    dist.all_reduce(flags, op=dist.ReduceOp.MAX)
    if not int(flags[0]):
        return bool(int(flags[1]))
    mine = None if error is None else describe(error)
    messages: list[str | None] = [None] * here.world_size
    dist.all_gather_object(messages, mine)
    if error is not None:
        raise error
    failed = "; ".join(f"rank {r}: {m}" for r, m in enumerate(messages) if m is not None)
    raise RankFailure(f"another rank failed during the {phase}, so rank {here.rank} stops too ({failed})")
