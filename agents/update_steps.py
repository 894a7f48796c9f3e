"""The steps an algorithm's ``_update`` is made of: minibatches, the policy's pass, early stop, optimiser step.

:class:`UpdateSteps` is a base of :class:`agents.base.BaseAlgorithm`, kept apart so base holds the SB3
surface and this module the gradient-step mechanics. It uses the agent's ``config``, ``policy``,
``optimizer``, ``parallel`` (:class:`agents.parallel.DataParallel`), ``env``, ``device``,
``iteration`` and ``algo_name``, all set by ``BaseAlgorithm.__init__``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, ClassVar

import torch

from agents.guards import check_finite_stats, nonfinite_names, out_of_memory_hint
from agents.losses import mean_stats
from agents.policies import protocol

FUSED_ADAM_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def make_adam(params: Sequence[torch.nn.Parameter], lr: float, eps: float) -> torch.optim.Adam:
    """Adam over ``params``, fused (one kernel over every tensor) where torch has that kernel.

    On CPU, torch's default is a Python loop over the tensors: a few milliseconds per step for a
    model of a few dozen tensors, as long as a small model's decode step. The fused kernel computes
    the same update. Sharded (FSDP2) parameters and other devices keep the default.
    """
    if fusable(params):
        try:
            return torch.optim.Adam(params, lr=lr, eps=eps, fused=True)
        except RuntimeError:  # a torch without the fused kernel for this device (CPU before 2.4)
            pass
    return torch.optim.Adam(params, lr=lr, eps=eps)


def fusable(params: Sequence[torch.nn.Parameter]) -> bool:
    """Whether torch's fused Adam kernel takes these parameters (plain tensors, cpu/cuda, float)."""
    return bool(params) and all(
        type(p) is torch.nn.Parameter and p.dtype in FUSED_ADAM_DTYPES and p.device.type in ("cpu", "cuda")
        for p in params
    )


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """``optimizer.load_state_dict(state)``, keeping the kernel choice of the optimizer built here.

    A state dict carries its param groups' ``fused`` flag, and loading replaces the group's: a
    checkpoint from a fused run would turn fused on where the kernel does not apply (sharded
    parameters, another device), and an older one would turn it off.
    """
    fused = [group.get("fused") for group in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, flag in zip(optimizer.param_groups, fused, strict=True):
        group["fused"] = flag


class UpdateSteps:
    """Helpers for ``_update``: shuffled minibatches, ``evaluate_sequence``, ``target_kl``, the guarded step."""

    config: Any
    policy: Any
    optimizer: torch.optim.Optimizer
    parallel: Any
    env: Any
    device: torch.device
    iteration: int
    algo_name: ClassVar[str]
    _nonfinite_skips: int

    def _token_mean_loss(self) -> bool:
        raise NotImplementedError

    @property
    def _cpu_generator(self) -> torch.Generator:
        raise NotImplementedError

    def iter_minibatches(self, n: int) -> Iterator[torch.Tensor]:
        """Shuffled index sets over ``n`` episodes, ``n_epochs`` times (drawn with the agent's generator)."""
        size = self.config.minibatch_size or n
        for _ in range(self.config.n_epochs):
            order = torch.randperm(n, generator=self._cpu_generator).to(self.device)
            yield from order.split(size)

    def evaluate_sequence(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """The policy's ``(values | None, logprobs, entropy)``, each ``(B, T)``, of the responses (with grad)."""
        fn, by_tokens = protocol.evaluate_sequence, self._token_mean_loss()
        return self.parallel.evaluate(fn, self.policy, input_ids, attention_mask, response_start, by_tokens)

    def stop_early(self, approx_kl: torch.Tensor) -> bool:
        """Stable-Baselines3's ``target_kl``: True once a minibatch's approx KL exceeds 1.5x it.

        The minibatch that crossed it is not stepped on, and the update's remaining epochs are
        skipped. One host sync per minibatch, and only when ``target_kl`` is set.
        """
        target = self.config.target_kl
        return target is not None and float(self.parallel.token_mean(approx_kl)) > 1.5 * target

    def step_optimizer(self, loss: torch.Tensor) -> torch.Tensor:
        """Backward, clip and step; returns the gradient norm before clipping.

        A NaN / infinite loss or gradient norm never reaches the weights: with ``on_nonfinite="raise"``
        (the default) it stops training with the iteration and the statistic named; with ``"skip"``
        the step is dropped and counted in ``train/nonfinite_skips``. One host sync per step.
        """
        self.optimizer.zero_grad(set_to_none=True)
        self.parallel.loss(loss).backward()  # weighted by this rank's share of the batch's tokens
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        max_norm = self.config.max_grad_norm or float("inf")
        norm = self.parallel.grad_norm(torch.nn.utils.clip_grad_norm_(params, max_norm))
        stats = {"train/loss": loss.detach(), "train/grad_norm": norm.detach()}
        if self.parallel.any_rank(bool(nonfinite_names(stats))):  # every rank skips (or raises) alike
            if self.config.on_nonfinite == "raise":
                check_finite_stats(stats, self.iteration + 1, self.algo_name)
            self.optimizer.zero_grad(set_to_none=True)
            self._nonfinite_skips += 1
            return norm
        self.optimizer.step()
        # Free the gradients now, not at the next step's backward: the next forward's activations
        # then reuse their memory instead of adding to it (a parameter's worth of peak memory, as
        # transformers' Trainer, which zeroes right after its step).
        self.optimizer.zero_grad(set_to_none=True)
        return norm

    @staticmethod
    def update_stats(steps: Sequence[Mapping[str, Any]], stopped_early: bool) -> dict[str, Any]:
        """Means of the per-minibatch stats, plus ``train/n_updates`` and ``train/stopped_early``."""
        result = mean_stats(steps)
        result["train/n_updates"] = len(steps)
        result["train/stopped_early"] = float(stopped_early)
        return result

    def _oom_hint(self, stage: str) -> contextlib.AbstractContextManager:
        return out_of_memory_hint(stage, self.algo_name, self.config.minibatch_size, self.env.num_envs)

    def _autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA (weights stay fp32); nothing on CPU."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()
