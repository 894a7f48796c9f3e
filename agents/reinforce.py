"""REINFORCE with a baseline (Williams 1992) on whole responses.

A response's reward is its whole-sequence return ``score - kl_coef * sum(KL)`` (the env's return).
Every token of the response is weighed by the same advantage ``r - b``, where the baseline ``b`` is

- ``"moving_average"``: an exponential moving average of past batches' mean reward (this batch's
  rewards enter it only after it was used, so no sample is its own baseline);
- ``"learned"``: a value head (``LMActorCriticPolicy``) predicting the return from the state before
  each token, trained by regression on ``r``; the advantage is then per token, ``r - V(s_t)``;
- ``"none"``: plain REINFORCE, ``b = 0``.

A baseline that does not depend on the sampled token leaves the gradient unbiased and lowers its
variance. Read top to bottom: config, baseline, update, checkpoints.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from agents import distributed
from agents.advantages import MovingAverageBaseline
from agents.base import BaseAlgorithm
from agents.collect import Episodes
from agents.config import AlgoConfig
from agents.distributed import whiten  # over the global batch when several ranks train
from agents.losses import clipped_policy_loss, masked_mean
from agents.policies import has_values
from agents.rewards import SequenceRewards

Baseline = Literal["moving_average", "learned", "none"]
BASELINES: tuple[str, ...] = ("moving_average", "learned", "none")


@dataclass
class REINFORCEConfig(AlgoConfig):
    """REINFORCE settings (plus those of :class:`~agents.config.AlgoConfig`)."""

    baseline: Baseline = field(
        default="moving_average",
        metadata={"help": "'moving_average' (EMA of rewards), 'learned' (a value head) or 'none'."},
    )
    baseline_decay: float = field(
        default=0.9, metadata={"help": "weight of the old average in the EMA baseline; 0.9 ~ 10 batches."}
    )
    vf_coef: float = field(
        default=0.1, metadata={"help": "weight of the value loss with baseline='learned'."}
    )
    normalize_advantage: bool = field(
        default=False, metadata={"help": "whiten advantages over the batch (response tokens only)."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.baseline not in BASELINES:
            raise ValueError(
                f"baseline must be one of {BASELINES}, got {self.baseline!r}; 'learned' needs "
                "policy='LMActorCriticPolicy'"
            )
        if not (isinstance(self.baseline_decay, int | float) and 0.0 <= self.baseline_decay < 1.0):
            raise ValueError(
                f"baseline_decay must be in [0, 1), got {self.baseline_decay!r}; 0.9 averages over ~10 batches"
            )
        if not (isinstance(self.vf_coef, int | float) and math.isfinite(self.vf_coef) and self.vf_coef >= 0):
            raise ValueError(f"vf_coef must be a finite number >= 0, got {self.vf_coef!r}")


class REINFORCE(BaseAlgorithm):
    """REINFORCE with a baseline on a textrl vector env; Stable-Baselines3's calling convention.

    Example::

        agent = REINFORCE("LMPolicy", envs, learning_rate=1e-5, baseline="moving_average")
        agent.learn(total_timesteps=50_000, progress_bar=True)

        critic = REINFORCE("LMActorCriticPolicy", envs, baseline="learned", vf_coef=0.1)

    Each env row samples one response to its own prompt. See :class:`~agents.base.BaseAlgorithm`
    for the shared arguments and :class:`REINFORCEConfig` for the rest.
    """

    algo_name = "REINFORCE"
    config_class = REINFORCEConfig
    config: REINFORCEConfig

    def __init__(self, policy: str | type, env: Any, **kwargs: Any) -> None:
        super().__init__(policy, env, **kwargs)
        if self.config.baseline == "learned" and not has_values(self.policy):
            raise ValueError(
                f"baseline='learned' needs a policy with a value head, but {type(self.policy).__name__} has "
                "none; use policy='LMActorCriticPolicy', or baseline='moving_average'"
            )
        self.baseline = MovingAverageBaseline(self.config.baseline_decay)

    def _trains_values(self) -> bool:
        return self.config.baseline == "learned"

    # ------------------------------------------------------------------ advantages

    def _sequence_baseline(self, rewards: torch.Tensor) -> float:
        """The baseline for this batch, read before the batch is folded into the moving average."""
        if self.config.baseline != "moving_average":
            return 0.0
        value = self.baseline.value  # 0 before the first batch, so the first update is plain REINFORCE
        self.baseline.update(distributed.all_gather(rewards))  # every rank's rewards
        return value

    def _learned_baseline(
        self, values: torch.Tensor | None, rewards: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-token advantages ``r - V(s_t)`` ``(B, T)`` and the value loss regressing ``V`` on ``r``."""
        if values is None:
            raise ValueError(
                f"baseline='learned' needs values, but {type(self.policy).__name__}.evaluate_actions "
                "returned None for them; use a policy with a value head (LMActorCriticPolicy)"
            )
        # V(s_t) is the value of the state *before* token t, so it does not depend on the token it
        # weighs: the gradient stays unbiased although V comes from the same forward as the log-probs.
        targets = rewards.unsqueeze(1).expand_as(values)  # (B, T) with one reward, every return-to-go is r
        advantages = (targets - values.detach()) * mask
        if self.config.normalize_advantage:  # per minibatch, since V moves between minibatches
            advantages = whiten(advantages, mask)
        value_loss = 0.5 * masked_mean((values - targets).square(), mask)
        return advantages, value_loss

    # ------------------------------------------------------------------ update

    def _update(self, episodes: Episodes, sequence_rewards: SequenceRewards) -> dict[str, Any]:
        rewards = sequence_rewards.total  # (N,)
        learned = self.config.baseline == "learned"
        baseline = self._sequence_baseline(rewards)
        advantages = rewards - baseline  # (N,)
        if self.config.normalize_advantage and not learned:
            advantages = whiten(advantages)
        input_ids, attention_mask = episodes.input_ids, episodes.attention_mask  # (N, P + T)
        start = episodes.response_start
        steps, stopped = [], False
        for idx in self.iter_minibatches(len(rewards)):
            values, logprobs, entropy = self.evaluate_sequence(input_ids[idx], attention_mask[idx], start)
            mask = episodes.response_mask[idx]
            # Entropy is only logged: take its value now and let its graph (a softmax over the
            # vocabulary per token) go, instead of holding it through the backward.
            entropy_mean = masked_mean(entropy.detach(), mask)
            del entropy
            step_advantages = advantages[idx]  # (B,) one per sequence
            value_loss = torch.zeros((), device=self.device)
            if learned:
                step_advantages, value_loss = self._learned_baseline(values, rewards[idx], mask)  # (B, T)
            # The env's log-probs are the sampling policy's: the ratio is 1 on the first pass, where
            # the clipped loss has exactly the REINFORCE gradient; later epochs stay in the trust region.
            policy_loss, stats = clipped_policy_loss(
                logprobs, episodes.logprobs[idx], step_advantages, mask, self.config.clip_range
            )
            if self.stop_early(stats["approx_kl"]):
                stopped = True
                break
            grad_norm = self.step_optimizer(policy_loss + self.config.vf_coef * value_loss)
            step_stats = {
                "train/policy_loss": policy_loss.detach(),
                "train/approx_kl": stats["approx_kl"],
                "train/clip_fraction": stats["clip_fraction"],
                "train/entropy": entropy_mean,
                "train/grad_norm": grad_norm.detach(),
            }
            if learned:
                step_stats["train/value_loss"] = value_loss.detach()
            steps.append(step_stats)
        result = self.update_stats(steps, stopped)
        if not learned:  # a learned baseline's advantages are per token, logged through value_loss
            result["train/baseline"] = baseline
            result["train/advantage_std"] = advantages.std()
        return result

    # ------------------------------------------------------------------ checkpoints

    def _extra_state(self) -> dict[str, Any]:
        """The shared checkpoint state plus the moving-average baseline."""
        return super()._extra_state() | {"baseline": self.baseline.state_dict()}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        super()._load_extra_state(extra)
        if "baseline" not in extra:
            raise ValueError(
                "this checkpoint has no REINFORCE baseline state; it was not written by REINFORCE.save"
            )
        self.baseline.load_state_dict(extra["baseline"])
