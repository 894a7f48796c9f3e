"""How an agent trains on several ranks: everything :class:`~agents.base.BaseAlgorithm` does differently.

:class:`DataParallel` is the one object the base asks; in a single process every method is a
pass-through, so single-process runs are exactly what they were. Under ``torchrun`` (or
``accelerate launch``), with ``G = world_size * num_envs`` rows in the global batch:

- **Prompts**: each rank draws the global batch's prompts from the shared prompt generator (the
  same state on every rank) and keeps its own contiguous block of ``num_envs`` rows, so RLOO's ``k``
  (GRPO's ``num_generations``) samples of a prompt stay together and one saved generator state serves any number of ranks.
- **Sampling**: each rank samples tokens from its own stream, derived per rollout from the shared
  sampler and the rank (:func:`agents.distributed.rank_generator`).
- **Gradients**: DDP (or FSDP2) averages them. Each rank's token-mean loss is weighted by its share
  of the global batch's response tokens, so the step is that of the token mean over all ``G``
  responses, as one process holding the whole batch would take (losses normalised by sequences,
  constants or global counts, as GRPO's ``grpo``, ``dr_grpo`` and ``dapo``, are averaged as they are).
- **Statistics**: reward normalisation sees every rank's rewards, advantage whitening uses global
  moments (:func:`agents.distributed.whiten`), the KL controller the global mean KL, and the
  ``target_kl`` early stop the global approximate KL, so every rank takes the same step.
- **Callbacks and timesteps**: a rollout ends on every rank together; ``on_step`` then runs, on every
  rank, once per step of the longest rollout, each step counting ``G`` timesteps. So callbacks see
  the same calls and counters on every rank, and a callback that saves stays in step.
- **Failures**: an exception while collecting (the reward function, the env) is brought to
  :func:`agents.distributed.agree`, and every rank raises.
- **Files**: rank 0 writes logs and checkpoints; the others wait for it and share its outcome.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import random
from collections.abc import Callable, Sequence
from typing import Any, Literal, TypeVar

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from agents import distributed, fsdp
from agents.collect import Episodes, collect_episodes
from agents.policies import protocol
from agents.update_steps import fusable
from reward_models.shaping import RunningMeanStd
from textrl_env import TextGenerationVectorEnv

Strategy = Literal["ddp", "fsdp"]
OptimizerT = TypeVar("OptimizerT", bound=torch.optim.Optimizer)
STRATEGIES: tuple[str, ...] = ("ddp", "fsdp")


class _Router(nn.Module):
    """Calls ``fn(policy, *args)`` from ``forward``: DDP prepares its gradient sync in ``forward``.

    Agents call the policy's protocol methods (``evaluate_sequence``, ...), not ``forward``;
    calling them through DDP's ``forward`` is what makes their backward all-reduce.
    """

    def __init__(self, policy: nn.Module) -> None:
        super().__init__()
        self.policy = policy

    def forward(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return fn(self.policy, *args, **kwargs)


# torch 2.13 renamed DDP's broadcast_buffers (now deprecated) to forward_sync_buffers.
_NO_BUFFER_SYNC: dict[str, Any] = (
    {"forward_sync_buffers": False}
    if "forward_sync_buffers" in inspect.signature(DistributedDataParallel.__init__).parameters
    else {"broadcast_buffers": False}
)


class DataParallelPolicy:
    """The view of a policy whose training calls average gradients over the ranks (DDP).

    ``view.call(fn, *args)`` runs ``fn(policy, *args)`` through ``DistributedDataParallel``. The
    parameters stay the policy's own (no copy), so the env keeps generating with the very module
    being trained. DDP broadcasts rank 0's parameters at construction: every rank starts equal.

    Args:
        policy: the trainable policy module (on this rank's device).
        find_unused_parameters: DDP's flag; True when the loss leaves some trainable parameters
            out (a value head that RLOO does not train). It costs a graph traversal per backward.
    """

    def __init__(self, policy: nn.Module, find_unused_parameters: bool = False) -> None:
        if not any(p.requires_grad for p in policy.parameters()):
            raise ValueError(
                f"{type(policy).__name__} has no trainable parameters, so there is nothing to train in parallel"
            )
        device = next(policy.parameters()).device
        self.policy = policy
        self.ddp = DistributedDataParallel(
            _Router(policy),
            device_ids=None if device.type == "cpu" else [device],
            **_NO_BUFFER_SYNC,  # a policy's buffers are constants (masks, rotary tables)
            find_unused_parameters=find_unused_parameters,
        )

    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(policy, *args, **kwargs)`` with DDP's gradient synchronisation on its backward."""
        return self.ddp(fn, *args, **kwargs)


class GlobalRunningMeanStd(RunningMeanStd):
    """:class:`RunningMeanStd` that folds in every rank's batch (in rank order), so all ranks agree."""

    def update(self, x: torch.Tensor) -> None:
        super().update(distributed.all_gather(torch.as_tensor(x)))


class DataParallel:
    """An agent's place in a distributed run (see the module docstring); a no-op in one process.

    Args:
        strategy: ``"ddp"`` (every rank holds the whole policy) or ``"fsdp"`` (FSDP2: the policy,
            its gradients and optimizer state, and the frozen reference are sharded over the ranks).
    """

    def __init__(self, strategy: str = "ddp") -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"data_parallel must be one of {STRATEGIES}, got {strategy!r}")
        self.strategy = strategy
        self.info = distributed.setup()
        self.view: DataParallelPolicy | None = None
        self._pending: tuple[nn.Module, nn.Module, nn.Module | None] | None = None
        self._sharded: nn.Module | None = None  # the FSDP-sharded policy, once sharded
        self._weight: torch.Tensor | None = None  # this rank's loss weight for the current minibatch
        self._token_share: torch.Tensor | None = None  # its share of the minibatch's tokens, x world_size

    @property
    def enabled(self) -> bool:
        return self.info.enabled

    @property
    def is_main(self) -> bool:
        return self.info.is_main

    @property
    def world_size(self) -> int:
        return self.info.world_size

    # ------------------------------------------------------------------ construction

    def check_env(self, device: torch.device, num_envs: int) -> None:
        """Every rank on its own GPU and with the same number of env rows (equal shares of the batch)."""
        distributed.check_device(device)
        if self.enabled:
            rows = distributed.all_gather(torch.tensor([num_envs], device=device)).tolist()
            if len(set(rows)) > 1:
                raise ValueError(
                    f"every rank needs the same num_envs, but the ranks have {rows}; build each rank's env alike"
                )

    def run_seed(self, seed: int | None) -> int | None:
        """The run's seed, the same on every rank (rank 0's random draw when ``seed`` is None)."""
        if not self.enabled or seed is not None:
            return seed
        return distributed.broadcast_int(int(torch.randint(2**31, (1,))))

    def spread_global_rngs(self) -> None:
        """Give each rank its own Python, NumPy and torch global streams (after seeding or loading).

        They are equal on every rank until here (the policy is built from the same seed everywhere);
        one shared draw, offset by the rank, makes them distinct and reproducible.
        """
        if not self.enabled:
            return
        seed = distributed.rank_seed(int(torch.randint(2**31, (1,))))
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)

    def wrap(
        self, policy: nn.Module, model: nn.Module, reference: nn.Module | None, find_unused: bool
    ) -> None:
        """The DDP view of the policy now; with FSDP, sharding of the policy and the reference at :meth:`ready`.

        Args:
            policy: the trainable policy.
            model: the env's language model (the policy's own).
            reference: the env's frozen KL reference.
            find_unused: whether the loss leaves some trainable parameters out (DDP's flag).
        """
        if not self.enabled:
            return
        if self.strategy == "ddp":
            self.view = DataParallelPolicy(policy, find_unused_parameters=find_unused)
            return
        if protocol.reference_model(policy) is not None:
            raise ValueError(
                "data_parallel='fsdp' with a LoRA policy is not supported: the adapter is small and the "
                "reference is the base model itself; use data_parallel='ddp'"
            )
        # Sharded on first use, so that Algo.load fills the plain modules and optimizer first.
        self._pending = (policy, model, reference)

    def ready(self, optimizer: OptimizerT) -> OptimizerT:
        """FSDP: shard now (every rank together) and rebuild ``optimizer`` over the shards, keeping its state."""
        if self._pending is None:
            return optimizer
        policy, model, reference = self._pending
        self._pending = None
        state = optimizer.state_dict()
        fsdp.shard_policy(policy, model, reference)
        self._sharded = policy
        params = [p for p in policy.parameters() if p.requires_grad]
        defaults = dict(optimizer.defaults)
        if defaults.get("fused") and not fusable(params):  # DTensor shards: torch's default kernel
            defaults["fused"] = None
        rebuilt = type(optimizer)(params, **defaults)
        if state["state"]:
            fsdp.load_full_optimizer_state(policy, rebuilt, state)
        return rebuilt

    # ------------------------------------------------------------------ rollouts

    def rollout(self, *modules: nn.Module) -> contextlib.AbstractContextManager:
        """Around every rollout (and evaluation): FSDP's full weights gathered once; nothing otherwise."""
        if self.enabled and self.strategy == "fsdp":
            return fsdp.gathered(*modules)
        return contextlib.nullcontext()

    def prompts(self, global_prompts: Sequence[str]) -> list[str]:
        """This rank's rows of the global batch's prompts."""
        return distributed.shard(global_prompts)

    def sampler(self, shared: torch.Generator) -> torch.Generator:
        """This rank's token sampler for one rollout (the shared one itself in a single process)."""
        return distributed.rank_generator(shared)

    def collect(
        self,
        env: TextGenerationVectorEnv,
        global_prompts: Sequence[str],
        act: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None,
        shared: torch.Generator,
        on_step: Callable[[], bool],
        modules: Sequence[nn.Module],
    ) -> Episodes | None:
        """One rollout of this rank's rows, then ``on_step`` once per step of the longest rollout.

        Every rank returns together: with the episodes, with None when a callback on any rank asked
        to stop, or by raising when any rank failed (the reward function, the env, a callback).
        """
        episodes, error = None, None
        try:
            with self.rollout(*modules):
                episodes = collect_episodes(env, self.prompts(global_prompts), act, self.sampler(shared))
        except Exception as exc:  # brought to every rank by agree()
            error = exc
        distributed.agree(error, phase="rollout")
        assert episodes is not None
        steps, stop, error = distributed.max_int(episodes.env_steps), False, None
        try:
            stop = not all(on_step() for _ in range(steps))  # all() stops at the first False
        except Exception as exc:
            error = exc
        return None if distributed.agree(error, stop, phase="callbacks") else episodes

    # ------------------------------------------------------------------ updates

    def evaluate(
        self,
        fn: Callable[..., Any],
        policy: nn.Module,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        response_start: int,
        by_tokens: bool = True,
    ) -> Any:
        """``fn(policy, input_ids, attention_mask, response_start)``, through DDP when it records a graph.

        With grad, this also sets the weight :meth:`loss` applies. For a token-mean loss
        (``by_tokens``) it is this rank's share of the global minibatch's response tokens, times
        ``world_size`` (DDP averages over ranks), so the step is the global token mean's. A loss
        normalised by sequence counts, by constants or by global counts (GRPO's ``grpo``,
        ``dr_grpo``, ``dapo``) averages over equal shares as it is: weight 1.
        """
        if not self.enabled or not torch.is_grad_enabled():
            return fn(policy, input_ids, attention_mask, response_start)
        tokens = attention_mask[:, response_start:].sum().float()
        self._token_share = tokens * self.world_size / distributed.all_reduce_sum(tokens).clamp(min=1.0)
        self._weight = self._token_share if by_tokens else torch.ones_like(tokens)
        if self.view is not None:
            return self.view.call(fn, input_ids, attention_mask, response_start)
        return fn(policy, input_ids, attention_mask, response_start)

    def loss(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss to backpropagate: weighted so the averaged gradient is the global token mean's."""
        return loss if self._weight is None else loss * self._weight

    def token_mean(self, value: torch.Tensor) -> torch.Tensor:
        """A minibatch's token-mean statistic (``approx_kl``) over the global minibatch."""
        if self._token_share is None:
            return value
        return distributed.all_reduce_mean(value.detach() * self._token_share)

    def grad_norm(self, norm: torch.Tensor) -> torch.Tensor:
        """The gradient norm as a plain tensor (FSDP returns a DTensor)."""
        return fsdp.local_tensor(norm)

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """A per-rank mean over equal shares, averaged over the ranks: the global batch's mean."""
        return distributed.all_reduce_mean(value.detach())

    def rollout_stats(self, episodes: Episodes, total: torch.Tensor) -> tuple[int, Any, Any, Any, Any]:
        """``(kept episodes, mean score, mean reward, mean summed KL, response tokens)`` of the global batch.

        Scores and KL are those of kept episodes (a dropped one's reward failed; its KL is zeroed);
        the reward mean is over every row, as in one process. One all-reduce of five sums.
        """
        kept = None if episodes.dropped is None else ~episodes.dropped
        if not self.enabled:  # exactly the single-process statistics, with no host sync when none dropped
            n_kept = len(total) if kept is None else int(kept.sum())
            score = episodes.scores.mean() if kept is None else episodes.scores[kept].mean()
            return (
                n_kept,
                score,
                total.mean(),
                episodes.kl.sum(-1).sum() / n_kept,
                episodes.response_mask.sum(),
            )
        keep = torch.ones_like(episodes.scores) if kept is None else kept.to(episodes.scores.dtype)
        sums = torch.stack(
            [
                keep.sum(),
                (episodes.scores * keep).sum(),
                total.sum(),
                episodes.kl.sum(),
                episodes.response_mask.sum(),
            ]
        )
        n, score, reward, kl, tokens = distributed.all_reduce_sum(sums.float()).unbind()
        n_kept = int(n)
        return n_kept, score / n_kept, reward / (len(total) * self.world_size), kl / n_kept, tokens

    def any_rank(self, flag: bool) -> bool:
        """True when ``flag`` is True on any rank (the flag itself in one process)."""
        return bool(distributed.max_int(int(flag)))

    def all_ranks(self, flag: bool) -> bool:
        """True when ``flag`` is True on every rank."""
        return not self.any_rank(not flag)

    def running_mean_std(self) -> RunningMeanStd:
        """Reward statistics that see every rank's rewards."""
        return GlobalRunningMeanStd() if self.enabled else RunningMeanStd()

    # ------------------------------------------------------------------ files

    def log_folder(self, folder: str | os.PathLike | None) -> str | os.PathLike | None:
        """Only rank 0 logs to files (and to the console)."""
        return folder if self.is_main else None

    def save(self, policy: nn.Module, optimizer: torch.optim.Optimizer, write: Callable[..., None]) -> None:
        """Every rank: gather what FSDP sharded (collectives), then ``write(optimizer_state, policy_state)`` on rank 0.

        Unsharded, ``write()`` runs on rank 0 alone. Either way a failure raises on every rank.
        """
        if self._sharded is None:
            self.on_main(write, phase="checkpoint save")
            return
        optimizer_state = fsdp.full_optimizer_state(policy, optimizer)
        policy_state = fsdp.full_state_dict(policy)
        self.on_main(lambda: write(optimizer_state, policy_state), phase="checkpoint save")

    def on_main(self, write: Callable[[], object], phase: str) -> None:
        """Run ``write`` on rank 0 while the others wait; if it raises, every rank raises."""
        error = None
        if self.is_main:
            try:
                write()
            except Exception as exc:  # brought to every rank below
                error = exc
        distributed.agree(error, phase=phase)
