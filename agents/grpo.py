"""GRPO: group-relative policy optimisation (Shao et al. 2024, "DeepSeekMath"), with its loss variants.

Each prompt is sampled ``num_generations`` times. A response's advantage is its reward minus the
mean reward of its group, divided by the group's standard deviation (``scale_rewards``), and it
weighs every token of the response in a clipped, PPO-style surrogate. No value network.

Names and defaults follow TRL's ``GRPOConfig`` so a TRL config ports field by field:
``num_generations``, ``beta``, ``loss_type`` (``"dapo"`` by default, as in TRL), ``epsilon``,
``epsilon_high``, ``scale_rewards`` and ``num_iterations``. The variants people compare:

- ``loss_type``: ``"grpo"`` (per-sequence mean), ``"dapo"`` (token-level over the batch, Yu et al.
  2025), ``"dr_grpo"`` (constant normaliser ``max_completion_length`` = the env's ``max_new_tokens``,
  Liu et al. 2025), ``"bnpo"`` (token-level over the minibatch); see
  :func:`~agents.losses.aggregate_token_losses`.
- ``scale_rewards``: ``"group"``, ``"batch"`` or ``"none"`` (Dr. GRPO); see
  :func:`~agents.advantages.group_advantages`.
- ``num_iterations`` > 1 reuses each rollout for several passes, where the clipped ratio with
  ``epsilon`` below and ``epsilon_high`` above (DAPO's clip-higher) matters.

Where the KL to the reference goes (exactly one place; never both):

- ``beta == 0`` (the default): in the reward, as in every textrl agent: the sequence reward is
  ``score - kl_coef * sum(KL)`` with the env's ``kl_coef`` (or ``kl_coef=``), adaptive with ``kl_target``.
  (In TRL, ``beta=0`` means no KL at all; here pass ``kl_coef=0`` for that.)
- ``beta > 0``: in the loss, as GRPO does: ``beta * k3`` per token against the env's reference
  log-probs, aggregated like the policy term; the reward is then the score alone (the config's
  ``kl_coef`` is set to 0). Passing ``beta > 0`` together with ``kl_coef > 0`` or ``kl_target`` (the
  adaptive controller's target) is an error. ``target_kl`` is Stable-Baselines3's early stop of the
  update, as for every agent.

Read top to bottom: config, rollout layout, advantages, update.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from agents import distributed
from agents.advantages import SCALE_REWARDS, ScaleRewards, group_advantages
from agents.base import BaseAlgorithm
from agents.collect import Episodes
from agents.config import AlgoConfig
from agents.losses import (
    LOSS_TYPES,
    LossType,
    aggregate_token_losses,
    grpo_token_losses,
    masked_mean,
)
from agents.rewards import SequenceRewards


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass
class GRPOConfig(AlgoConfig):
    """GRPO settings (plus those of :class:`~agents.config.AlgoConfig`), named as in TRL's GRPOConfig.

    Two shared settings have a GRPO name instead and must keep their defaults: the clip is
    ``epsilon`` / ``epsilon_high`` (not ``clip_range``), the passes over a rollout are
    ``num_iterations`` (not ``n_epochs``).
    """

    num_generations: int = _help("samples per prompt (the group); the env's rows must be a multiple.", 8)
    beta: float = _help(
        "weight of the k3 KL-to-reference term in the loss; 0 keeps the KL in the reward (kl_coef).", 0.0
    )
    loss_type: LossType = _help(
        "loss aggregation: 'grpo' (per-sequence mean), 'dapo' (token-level over the batch), "
        "'dr_grpo' (constant normaliser max_new_tokens) or 'bnpo' (token-level over the minibatch).",
        "dapo",
    )
    epsilon: float = _help(
        "lower clip of the ratio (1 - epsilon), and the upper one unless epsilon_high.", 0.2
    )
    epsilon_high: float | None = _help(
        "upper clip of the ratio (1 + epsilon_high); DAPO's clip-higher uses 0.28. None = epsilon.", None
    )
    scale_rewards: ScaleRewards = _help(
        "divide advantages by the std of the 'group', of the 'batch', or not at all ('none', Dr. GRPO).",
        "group",
    )
    num_iterations: int = _help("passes over each rollout (GRPO's mu); the clip matters once > 1.", 1)

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.scale_rewards, bool):  # TRL accepts True / False for "group" / "none"
            self.scale_rewards = "group" if self.scale_rewards else "none"
        if not (isinstance(self.num_generations, int) and self.num_generations >= 2):
            raise ValueError(
                f"num_generations must be an int >= 2 (a group baseline needs several samples of a prompt), "
                f"got {self.num_generations!r}"
            )
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if self.scale_rewards not in SCALE_REWARDS:
            raise ValueError(f"scale_rewards must be one of {SCALE_REWARDS}, got {self.scale_rewards!r}")
        for name in ("epsilon", "epsilon_high"):
            value = getattr(self, name)
            if name == "epsilon_high" and value is None:
                continue
            if not (isinstance(value, int | float) and 0 < value < float("inf")):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not (isinstance(self.num_iterations, int) and self.num_iterations >= 1):
            raise ValueError(f"num_iterations must be an int >= 1, got {self.num_iterations!r}")
        self._check_grpo_names()
        self._check_kl_placement()

    def _check_grpo_names(self) -> None:
        """The shared settings GRPO names differently must stay at their defaults (one name per thing)."""
        if self.n_epochs != AlgoConfig.n_epochs:
            raise ValueError(
                f"GRPO counts passes over a rollout with TRL's num_iterations; pass num_iterations="
                f"{self.n_epochs} instead of n_epochs={self.n_epochs}"
            )
        if self.clip_range != AlgoConfig.clip_range:
            raise ValueError(
                f"GRPO clips the ratio with TRL's epsilon (and epsilon_high); pass epsilon={self.clip_range} "
                f"instead of clip_range={self.clip_range}"
            )

    def _check_kl_placement(self) -> None:
        """``beta > 0`` moves the KL from the reward into the loss: the reward's coefficient becomes 0."""
        if not (isinstance(self.beta, int | float) and 0 <= self.beta < float("inf")):
            raise ValueError(f"beta must be a finite number >= 0, got {self.beta!r}")
        if self.beta == 0:
            return
        if self.kl_coef is not None and self.kl_coef > 0:
            raise ValueError(
                f"beta={self.beta} puts the KL in the loss and kl_coef={self.kl_coef} puts it in the reward too; "
                "choose one: beta=0 (KL in the reward) or kl_coef=0 / leave kl_coef unset (KL in the loss)"
            )
        if self.kl_target is not None:
            raise ValueError(
                f"kl_target={self.kl_target} adapts the reward's KL coefficient, which beta={self.beta} sets to 0; "
                "use beta=0 with kl_target for an adaptive KL in the reward, or drop kl_target"
            )
        self.kl_coef = 0.0  # the reward is the score alone; the env's kl_coef is overridden

    @property
    def clip_high(self) -> float:
        """The upper clip ``epsilon_high``, or ``epsilon`` when it is None."""
        return self.epsilon if self.epsilon_high is None else self.epsilon_high


class GRPO(BaseAlgorithm):
    """Group Relative Policy Optimization on a textrl vector env; Stable-Baselines3's calling convention.

    Example::

        agent = GRPO("LMPolicy", envs, learning_rate=1e-5, num_generations=8, loss_type="dr_grpo")
        agent.learn(total_timesteps=50_000, progress_bar=True)

    The env's ``num_envs`` rows hold ``num_envs // num_generations`` prompts, each ``num_generations``
    times. See :class:`~agents.base.BaseAlgorithm` for the shared arguments and :class:`GRPOConfig`
    for the rest (and the module docstring for where the KL goes).
    """

    algo_name = "GRPO"
    config_class = GRPOConfig
    config: GRPOConfig

    def _check_batch(self, n_envs: int) -> None:
        super()._check_batch(n_envs)
        g = self.config.num_generations
        if n_envs % g != 0:
            raise ValueError(
                f"num_envs={n_envs} is not a multiple of num_generations={g}: each prompt takes num_generations "
                f"rows of the vector env; use num_envs={max(g, n_envs - n_envs % g)} or another multiple of {g}"
            )

    def _rollout_prompts(self) -> list[str]:
        """``num_envs // num_generations`` prompts, each repeated in adjacent rows (prompt-major)."""
        g = self.config.num_generations
        index = torch.randint(len(self.env.prompts), (self.rollout_rows // g,), generator=self._cpu_generator)
        return [self.env.prompts[i] for i in index.tolist() for _ in range(g)]

    def _token_mean_loss(self) -> bool:
        return self.config.loss_type == "bnpo"  # the others divide by sequences, constants, or global tokens

    def iter_minibatches(self, n: int) -> Iterator[torch.Tensor]:
        """Shuffled index sets over ``n`` episodes, ``num_iterations`` times (GRPO's passes)."""
        size = self.config.minibatch_size or n
        for _ in range(self.config.num_iterations):
            order = torch.randperm(n, generator=self._cpu_generator).to(self.device)
            yield from order.split(size)

    def _update(self, episodes: Episodes, rewards: SequenceRewards) -> dict[str, Any]:
        cfg = self.config
        # With beta > 0 the total is the score alone (kl_coef is 0); the KL enters the loss below.
        # Over every rank's rewards (whole groups, rank-major), so "batch" scales by the global batch's std.
        everyone = group_advantages(
            distributed.all_gather(rewards.total), cfg.num_generations, cfg.scale_rewards
        )
        advantages = everyone.view(distributed.info().world_size, -1)[distributed.info().rank]  # (N,)
        input_ids, attention_mask = episodes.input_ids, episodes.attention_mask  # (N, P + T)
        start, n = episodes.response_start, len(advantages)
        # DAPO weighs every token of the rollout alike: a minibatch's share of the batch's tokens.
        tokens_per_row = distributed.all_reduce_mean(episodes.response_mask.sum() / n)  # of the global batch
        ref_logprobs = episodes.ref_logprobs if cfg.beta > 0 else None
        steps, stopped = [], False
        for idx in self.iter_minibatches(n):
            _, logprobs, entropy = self.evaluate_sequence(input_ids[idx], attention_mask[idx], start)
            mask = episodes.response_mask[idx]
            # Entropy is only logged: take its value now and let its graph (a softmax over the
            # vocabulary per token) go, instead of holding it through the backward.
            entropy_mean = masked_mean(entropy.detach(), mask)
            del entropy
            # The env's log-probs are the sampling policy's: the ratio is 1 on the first pass.
            per_token, stats = grpo_token_losses(
                logprobs,
                episodes.logprobs[idx],
                advantages[idx],
                mask,
                cfg.epsilon,
                cfg.clip_high,
                None if ref_logprobs is None else ref_logprobs[idx],
                cfg.beta,
            )
            loss = aggregate_token_losses(
                per_token, mask, cfg.loss_type, self.env.max_new_tokens, tokens_per_row * len(idx)
            )
            if self.stop_early(stats["approx_kl"]):  # Stable-Baselines3's target_kl
                stopped = True
                break
            grad_norm = self.step_optimizer(loss)
            step = {f"train/{key}": value for key, value in stats.items()}
            step["train/policy_loss"] = loss.detach()
            step["train/entropy"] = entropy_mean
            step["train/grad_norm"] = grad_norm.detach()
            steps.append(step)
        result = self.update_stats(steps, stopped)
        result["train/advantage_std"] = advantages.std()
        return result
