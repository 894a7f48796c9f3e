"""Advantage estimators and baselines, as small pure torch functions.

Shapes follow the rest of textrl: ``(B, T)`` tensors over response tokens with a ``mask`` that is
1 on real response tokens (up to and including the first EOS) and 0 after. Whitening and running
reward normalisation live in :mod:`reward_models.shaping`.
"""

from __future__ import annotations

from typing import Literal

import torch

from agents.losses import _check_same


def _check_shapes(**tensors: torch.Tensor) -> None:
    _check_same(**tensors)
    for name, t in tensors.items():
        if t.dim() != 2:
            raise ValueError(f"{name} must be (B, T), got shape {tuple(t.shape)}; add a batch dimension")


def gae(
    rewards: torch.Tensor,
    values: torch.Tensor,
    mask: torch.Tensor,
    gamma: float = 1.0,
    lam: float = 0.95,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation over response tokens (Schulman et al. 2016).

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and ``A_t = delta_t + gamma * lam * A_{t+1}``, where
    the value after the last unmasked token is 0: an episode ends at EOS or at the length limit,
    and in both cases the score has already been paid, so there is nothing left to bootstrap.

    Args:
        rewards: ``(B, T)`` per-token rewards (e.g. ``-kl_coef * kl`` plus the score on the last token).
        values: ``(B, T)`` value estimates of the state before each token.
        mask: ``(B, T)`` 1 on response tokens, 0 after the episode ended.
        gamma: discount factor in [0, 1]; RLHF uses 1.
        lam: GAE lambda in [0, 1].

    Returns:
        ``(advantages, returns)``, each ``(B, T)`` and 0 where the mask is 0; ``returns = advantages + values``.
    """
    _check_shapes(rewards=rewards, values=values, mask=mask)
    for name, x in (("gamma", gamma), ("lam", lam)):
        if not 0.0 <= x <= 1.0:
            raise ValueError(f"{name} must be in [0, 1], got {x}")
    mask = mask.to(values.dtype)
    rewards, values = rewards * mask, values * mask
    steps = rewards.shape[1]
    advantages = torch.zeros_like(values)  # (B, T)
    last = torch.zeros_like(values[:, 0])  # (B,) advantage of the next step
    for t in reversed(range(steps)):
        next_mask = mask[:, t + 1] if t + 1 < steps else torch.zeros_like(last)
        next_value = values[:, t + 1] * next_mask if t + 1 < steps else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * next_mask * last
        advantages[:, t] = last
    advantages = advantages * mask
    return advantages, (advantages + values) * mask


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0) -> torch.Tensor:
    """Reward-to-go ``G_t = sum_{s >= t} gamma^(s-t) r_s`` over unmasked tokens, for REINFORCE.

    Args:
        rewards: ``(B, T)`` per-token rewards.
        mask: ``(B, T)`` 1 on response tokens.
        gamma: discount factor in [0, 1].

    Returns:
        ``(B, T)`` returns, 0 where the mask is 0.
    """
    _check_shapes(rewards=rewards, mask=mask)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    mask = mask.to(rewards.dtype)
    rewards = rewards * mask
    returns = torch.zeros_like(rewards)  # (B, T)
    running = torch.zeros_like(rewards[:, 0])  # (B,)
    for t in reversed(range(rewards.shape[1])):
        running = rewards[:, t] + gamma * running
        returns[:, t] = running
    return returns * mask


def _grouped(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """View ``rewards`` as ``(P, k)``: 1-D input holds contiguous groups of k samples per prompt."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 2:
        raise ValueError(
            f"k must be an int >= 2 for a leave-one-out baseline, got {k!r}: with one sample per prompt "
            "there is no other sample to compare against; sample k >= 2 completions per prompt"
        )
    if rewards.dim() == 2:
        if rewards.shape[1] != k:
            raise ValueError(
                f"rewards of shape {tuple(rewards.shape)} must be (P, k) with k={k} columns; "
                "pass k equal to rewards.shape[1] or a flat (P*k,) tensor"
            )
        return rewards
    if rewards.dim() != 1:
        raise ValueError(f"rewards must be (P*k,) or (P, k), got shape {tuple(rewards.shape)}")
    if rewards.numel() % k != 0:
        raise ValueError(
            f"a batch of {rewards.numel()} rewards is not divisible into groups of k={k}; "
            "the batch must hold k samples for each prompt (batch size = num_prompts * k)"
        )
    return rewards.view(-1, k)  # (P, k)


def rloo_baseline(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """Leave-one-out baseline ``b_i = (sum_j r_j - r_i) / (k - 1)`` within each prompt's group.

    Args:
        rewards: ``(P, k)`` or flat ``(P*k,)`` sequence rewards. A flat tensor is read prompt-major:
            entries ``i*k .. i*k + k - 1`` belong to prompt ``i`` (the layout of
            ``prompts.repeat_interleave(k)``).
        k: samples per prompt, >= 2.

    Returns:
        Baselines with the shape of ``rewards``.

    Raises:
        ValueError: ``k < 2`` or the batch is not divisible by ``k``.
    """
    grouped = _grouped(rewards, k)  # (P, k)
    baseline = (grouped.sum(dim=1, keepdim=True) - grouped) / (k - 1)  # (P, k)
    return baseline.reshape(rewards.shape)


def rloo_advantages(rewards: torch.Tensor, k: int) -> torch.Tensor:
    """RLOO advantages ``r_i - b_i`` (Ahmadian et al. 2024); same shapes and layout as :func:`rloo_baseline`."""
    return rewards - rloo_baseline(rewards, k)


class MovingAverageBaseline:
    """Exponential moving average of the mean reward, a baseline for REINFORCE.

    The first update sets the average to the batch mean (no bias towards 0); later ones apply
    ``b <- decay * b + (1 - decay) * mean(rewards)``. Use the baseline *before* updating it with the
    batch it is subtracted from, so a sample's reward never enters its own baseline.

    Args:
        decay: weight of the old average, in [0, 1).
    """

    def __init__(self, decay: float = 0.9) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be in [0, 1), got {decay}; 0.9 averages over ~10 batches")
        self.decay = float(decay)
        self.value = 0.0
        self.count = 0

    def update(self, rewards: torch.Tensor | float) -> float:
        """Fold a batch's mean reward into the average and return the new baseline."""
        mean = float(torch.as_tensor(rewards, dtype=torch.float64).mean())  # one host sync per batch
        self.value = mean if self.count == 0 else self.decay * self.value + (1.0 - self.decay) * mean
        self.count += 1
        return self.value

    def state_dict(self) -> dict[str, float | int]:
        return {"decay": self.decay, "value": self.value, "count": self.count}

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        self.decay = float(state["decay"])
        self.value = float(state["value"])
        self.count = int(state["count"])

    def __repr__(self) -> str:
        return f"MovingAverageBaseline(decay={self.decay}, value={self.value:.4g}, count={self.count})"


ScaleRewards = Literal["group", "batch", "none"]
SCALE_REWARDS: tuple[str, ...] = ("group", "batch", "none")


def group_advantages(
    rewards: torch.Tensor,
    num_generations: int,
    scale_rewards: ScaleRewards = "group",
    eps: float = 1e-4,
) -> torch.Tensor:
    """GRPO's group-relative advantages ``(r_i - mean_group) / (std + eps)`` (Shao et al. 2024).

    Each prompt's ``num_generations`` samples form a group; the mean of the group is the baseline.
    The standard deviation is Bessel-corrected, and ``eps`` is 1e-4, both as in TRL's GRPOTrainer,
    so the advantages match TRL's for the same rewards.

    Args:
        rewards: ``(P, G)`` or flat ``(P*G,)`` sequence rewards; a flat tensor is read prompt-major
            (entries ``i*G .. i*G + G - 1`` are prompt ``i``'s samples).
        num_generations: samples per prompt ``G``, >= 2.
        scale_rewards: ``"group"`` divides by each group's std (GRPO); ``"batch"`` by the std of the
            whole batch (PPO Lite, Liu et al. 2025); ``"none"`` does not divide (Dr. GRPO, Liu et al.
            2025: the group std weighs prompts by their difficulty).
        eps: added to the std, so a group whose samples all scored alike gets advantages 0, not NaN.

    Returns:
        Advantages with the shape of ``rewards``.

    Raises:
        ValueError: ``num_generations < 2``, a batch not divisible by it, or an unknown ``scale_rewards``.
    """
    if isinstance(num_generations, bool) or not isinstance(num_generations, int) or num_generations < 2:
        raise ValueError(
            f"num_generations must be an int >= 2, got {num_generations!r}: a group baseline needs several "
            "samples of the same prompt; sample num_generations >= 2 completions per prompt"
        )
    if scale_rewards not in SCALE_REWARDS:
        raise ValueError(f"scale_rewards must be one of {SCALE_REWARDS}, got {scale_rewards!r}")
    if rewards.dim() == 2 and rewards.shape[1] != num_generations:
        raise ValueError(
            f"rewards of shape {tuple(rewards.shape)} must be (P, G) with G=num_generations={num_generations} "
            "columns; pass num_generations equal to rewards.shape[1] or a flat (P*G,) tensor"
        )
    if rewards.dim() not in (1, 2):
        raise ValueError(f"rewards must be (P*G,) or (P, G), got shape {tuple(rewards.shape)}")
    if rewards.numel() % num_generations != 0:
        raise ValueError(
            f"a batch of {rewards.numel()} rewards is not divisible into groups of num_generations="
            f"{num_generations}; the batch must hold num_generations samples of each prompt"
        )
    grouped = rewards.reshape(-1, num_generations)  # (P, G)
    advantages = grouped - grouped.mean(dim=1, keepdim=True)
    if scale_rewards == "group":
        advantages = advantages / (grouped.std(dim=1, keepdim=True) + eps)
    elif scale_rewards == "batch":
        advantages = advantages / (grouped.std() + eps)
    return advantages.reshape(rewards.shape)
