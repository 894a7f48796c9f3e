"""PPO for language models (Schulman et al. 2017; Ziegler et al. 2019's RLHF recipe).

Unlike REINFORCE and RLOO, PPO credits each token separately. The env's return is laid out per
token: ``-kl_coef * KL_t`` on every response token and the score added on the last one
(:func:`reward_models.shaping.shaped_rewards`), so the per-token rewards of a response sum to its
sequence reward. A value head estimates the return from the state before each token; GAE
(``gamma=1``, ``gae_lambda=0.95``) turns rewards and values into advantages, which are whitened over the
batch's response tokens. Several epochs of shuffled minibatches then minimise the clipped policy
loss plus ``vf_coef`` times the clipped value loss; ``target_kl`` (as in Stable-Baselines3) stops
the epochs early once the policy has moved too far from the one that sampled.

Read top to bottom: config, rollout values, per-token rewards and advantages, update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from agents.advantages import gae
from agents.base import BaseAlgorithm
from agents.collect import Episodes
from agents.config import AlgoConfig, _help
from agents.distributed import whiten  # over the global batch when several ranks train
from agents.losses import clipped_policy_loss, clipped_value_loss, masked_mean
from agents.policies import has_values, protocol
from agents.rewards import SequenceRewards
from reward_models.shaping import shaped_rewards


@dataclass
class PPOConfig(AlgoConfig):
    """PPO settings (plus those of :class:`~agents.config.AlgoConfig`; ``n_epochs`` defaults to 4 here)."""

    n_epochs: int = _help("passes of shuffled minibatches over each rollout batch.", 4)
    gamma: float = _help(
        "discount over response tokens; RLHF uses 1 (the score is paid once, at the end).", 1.0
    )
    gae_lambda: float = _help(
        "GAE lambda: 1 = Monte Carlo returns, 0 = one-step TD; 0.95 trades the two.", 0.95
    )
    vf_coef: float = _help("weight of the value loss in the total loss.", 0.1)
    clip_range_vf: float | None = _help(
        "clip of the value change per update around the rollout values; None = plain squared error.", 0.2
    )
    ent_coef: float = _help(
        "weight of the entropy bonus; 0 as in RLHF, where the KL penalty regularises.", 0.0
    )
    normalize_advantage: bool = _help("whiten advantages over the batch's response tokens.", True)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("gamma", "gae_lambda"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and 0.0 <= value <= 1.0):
                raise ValueError(
                    f"{name} must be in [0, 1], got {value!r}; RLHF PPO uses gamma=1, gae_lambda=0.95"
                )
        for name in ("vf_coef", "ent_coef"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        value = self.clip_range_vf
        if value is not None and not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise ValueError(f"clip_range_vf must be None (off) or a finite number > 0, got {value!r}")


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``1 - Var(returns - values) / Var(returns)`` over response tokens (SB3's; NaN when returns are constant).

    1 means the critic predicts the returns exactly, 0 that it does no better than their mean.
    """
    residual = returns - values

    def variance(x: torch.Tensor) -> torch.Tensor:
        return masked_mean((x - masked_mean(x, mask)).square(), mask)

    var_returns = variance(returns)
    nan = torch.full_like(var_returns, float("nan"))
    return torch.where(var_returns > 0, 1.0 - variance(residual) / var_returns, nan)


class PPO(BaseAlgorithm):
    """Proximal Policy Optimization on a textrl vector env; Stable-Baselines3's calling convention.

    Example::

        agent = PPO("LMActorCriticPolicy", envs, learning_rate=1e-5, n_epochs=4, minibatch_size=8)
        agent.learn(total_timesteps=50_000, progress_bar=True)

    The policy must have a value head: ``"LMActorCriticPolicy"`` (shared backbone by default, or
    ``policy_kwargs={"value_head": "separate"}``) or a class of yours that returns values. See
    :class:`~agents.base.BaseAlgorithm` for the shared arguments and :class:`PPOConfig` for the rest.
    """

    algo_name = "PPO"
    config_class = PPOConfig
    config: PPOConfig

    def __init__(self, policy: str | type, env: Any, **kwargs: Any) -> None:
        super().__init__(policy, env, **kwargs)
        if not has_values(self.policy):
            raise ValueError(
                f"PPO needs a policy with a value head, but {type(self.policy).__name__} has none; "
                "use PPO('LMActorCriticPolicy', env, ...) (or RLOO / REINFORCE, which need no critic)"
            )

    def _trains_values(self) -> bool:
        return True  # the value loss trains the critic

    # ------------------------------------------------------------------ rollout values

    @torch.no_grad()
    def _rollout_values(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, start: int
    ) -> torch.Tensor:
        """``(N, T)`` values of the states before each response token, under the sampling-time critic."""
        values = protocol.sequence_values(self.policy, input_ids, attention_mask, start)
        if values is None:
            raise ValueError(
                f"PPO needs values, but {type(self.policy).__name__}.evaluate_actions returned None for them; "
                "use a policy with a value head (LMActorCriticPolicy)"
            )
        return values.float()

    # ------------------------------------------------------------------ per-token rewards and advantages

    def _token_rewards(self, episodes: Episodes, rewards: SequenceRewards) -> torch.Tensor:
        """``(N, T)`` per-token rewards that sum, per response, to ``rewards.total``.

        ``-kl_coef * KL_t`` on every response token and the score on the last one, both divided by
        the scale the sequence rewards were (``normalize_rewards``), straight from their parts.
        """
        kl_coef = rewards.kl_coef / rewards.scale
        return shaped_rewards(rewards.score / rewards.scale, rewards.kl, episodes.response_mask, kl_coef)

    def _advantages(
        self, token_rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """GAE ``(advantages, returns)``, each ``(N, T)``; advantages whitened over response tokens."""
        advantages, returns = gae(token_rewards, values, mask, self.config.gamma, self.config.gae_lambda)
        if self.config.normalize_advantage:
            advantages = whiten(advantages, mask)
        return advantages, returns

    # ------------------------------------------------------------------ update

    def _update(self, episodes: Episodes, rewards: SequenceRewards) -> dict[str, Any]:
        cfg = self.config
        input_ids, attention_mask = episodes.input_ids, episodes.attention_mask  # (N, P + T)
        start = episodes.response_start
        response_mask = episodes.response_mask
        old_values = self._rollout_values(input_ids, attention_mask, start)  # (N, T)
        token_rewards = self._token_rewards(episodes, rewards)  # (N, T)
        advantages, returns = self._advantages(token_rewards, old_values, response_mask)
        steps, stopped = [], False
        for idx in self.iter_minibatches(len(rewards.total)):
            mask = response_mask[idx]
            values, logprobs, entropy = self.evaluate_sequence(input_ids[idx], attention_mask[idx], start)
            assert values is not None  # _rollout_values already refused a policy without values
            # The env's log-probs are the sampling policy's: they are PPO's old log-probs.
            policy_loss, policy_stats = clipped_policy_loss(
                logprobs, episodes.logprobs[idx], advantages[idx], mask, cfg.clip_range
            )
            if self.stop_early(policy_stats["approx_kl"]):
                stopped = (
                    True  # as SB3: this minibatch has moved too far already, so it is not stepped on either
                )
                break
            value_loss, value_stats = clipped_value_loss(
                values.float(), old_values[idx], returns[idx], mask, cfg.clip_range_vf
            )
            entropy_mean = masked_mean(entropy, mask)
            grad_norm = self.step_optimizer(
                policy_loss + cfg.vf_coef * value_loss - cfg.ent_coef * entropy_mean
            )
            steps.append(
                {
                    "train/policy_loss": policy_loss.detach(),
                    "train/value_loss": value_loss.detach(),
                    "train/approx_kl": policy_stats["approx_kl"],
                    "train/clip_fraction": policy_stats["clip_fraction"],
                    "train/value_clip_fraction": value_stats["value_clip_fraction"],
                    "train/entropy": entropy_mean.detach(),
                    "train/grad_norm": grad_norm.detach(),
                }
            )
        result = self.update_stats(steps, stopped)
        result["train/explained_variance"] = explained_variance(old_values, returns, response_mask)
        result["train/value_mean"] = masked_mean(old_values, response_mask)
        result["train/return_mean"] = masked_mean(returns, response_mask)
        return result
