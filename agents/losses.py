"""Clipped PPO-style policy and value losses, GRPO's token losses and their aggregation, with masked means.

Stats come back as detached 0-d tensors, so nothing here forces a host sync; the logger turns them
into numbers once per dump.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch

from reward_models.shaping import kl_penalty


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over the positions where ``mask`` is 1.

    Args:
        x: values, e.g. ``(B, T)``.
        mask: 0/1 (or bool) tensor broadcastable to ``x``.
        dim: reduce over this dimension only; None reduces over everything.

    Returns:
        The masked mean; 0 (not NaN) where the mask is empty.
    """
    mask = mask.to(x.dtype)
    total = (x * mask).sum() if dim is None else (x * mask).sum(dim)
    count = mask.expand_as(x).sum() if dim is None else mask.expand_as(x).sum(dim)
    return total / count.clamp(min=1.0)


def mean_stats(steps: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Key-wise mean of per-minibatch stats (detached tensors stay tensors); ``{}`` for no steps."""
    totals: dict[str, Any] = {}
    for stats in steps:
        for key, value in stats.items():
            totals[key] = totals.get(key, 0.0) + value
    return {key: value / len(steps) for key, value in totals.items()}


def _token_advantages(advantages: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-token advantages: ``(B, T)`` as is, a sequence-level ``(B,)`` broadcast over tokens."""
    if advantages.shape == like.shape:
        return advantages
    if advantages.dim() == 1 and like.dim() == 2 and advantages.shape[0] == like.shape[0]:
        return advantages.unsqueeze(1)  # (B, 1) broadcasts over T
    raise ValueError(
        f"advantages of shape {tuple(advantages.shape)} do not fit logprobs of shape {tuple(like.shape)}; "
        "pass per-token (B, T) advantages or one per sequence (B,)"
    )


def _check_same(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{k}={v}" for k, v in shapes.items())
        raise ValueError(f"shape mismatch: {listed}; all must have the same (B, T) shape")


def _check_clip(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value}; PPO commonly uses 0.2")


def clipped_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_range: float,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's clipped surrogate ``mean(max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)))``.

    Args:
        logprobs: ``(B, T)`` log-probs under the current policy (with grad).
        old_logprobs: ``(B, T)`` log-probs under the policy that sampled the tokens.
        advantages: ``(B, T)`` or ``(B,)`` advantages.
        mask: ``(B, T)`` 1 on response tokens.
        clip_range: epsilon, > 0.

    Returns:
        ``(loss, stats)``; stats holds detached 0-d tensors: ``clip_fraction`` (share of tokens with
        ``|ratio - 1| > eps``), ``approx_kl`` (the k3 estimator ``(ratio - 1) - log ratio``) and ``ratio_mean``.
    """
    _check_same(logprobs=logprobs, old_logprobs=old_logprobs, mask=mask)
    _check_clip("clip_range", clip_range)
    adv = _token_advantages(advantages, logprobs).detach()
    log_ratio = logprobs - old_logprobs.detach()  # (B, T)
    ratio = torch.exp(log_ratio)
    unclipped = -adv * ratio
    clipped = -adv * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {
            "clip_fraction": masked_mean(((ratio - 1.0).abs() > clip_range).to(ratio.dtype), mask),
            "approx_kl": masked_mean((ratio - 1.0) - log_ratio, mask),
            "ratio_mean": masked_mean(ratio, mask),
        }
    return loss, stats


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip_range_vf: float | None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """PPO's value loss ``0.5 * mean(max((V - R)^2, (clip(V, V_old ± eps) - R)^2))``.

    Args:
        values: ``(B, T)`` current value predictions (with grad).
        old_values: ``(B, T)`` predictions at rollout time.
        returns: ``(B, T)`` value targets (e.g. GAE returns).
        mask: ``(B, T)`` 1 on response tokens.
        clip_range_vf: epsilon for the value clip; None for the plain squared error.

    Returns:
        ``(loss, stats)``; stats holds ``value_clip_fraction`` (share of tokens where the clipped
        error was the larger one), detached.
    """
    _check_same(values=values, old_values=old_values, returns=returns, mask=mask)
    returns, old_values = returns.detach(), old_values.detach()
    unclipped = (values - returns).square()  # (B, T)
    if clip_range_vf is None:
        zero = torch.zeros((), dtype=values.dtype, device=values.device)
        return 0.5 * masked_mean(unclipped, mask), {"value_clip_fraction": zero}
    _check_clip("clip_range_vf", clip_range_vf)
    clipped = (torch.clamp(values, old_values - clip_range_vf, old_values + clip_range_vf) - returns).square()
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {"value_clip_fraction": masked_mean((clipped > unclipped).to(values.dtype), mask)}
    return loss, stats


LossType = Literal["grpo", "bnpo", "dr_grpo", "dapo"]
LOSS_TYPES: tuple[str, ...] = ("grpo", "bnpo", "dr_grpo", "dapo")


def grpo_token_losses(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    epsilon: float,
    epsilon_high: float | None = None,
    ref_logprobs: torch.Tensor | None = None,
    beta: float = 0.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """GRPO's per-token loss ``-min(ratio * A, clip(ratio, 1 - eps, 1 + eps_high) * A) + beta * KL``.

    The clip is asymmetric when ``epsilon_high`` differs from ``epsilon`` (DAPO's clip-higher, Yu et
    al. 2025: a larger upper bound lets unlikely tokens with positive advantage grow). With
    ``ref_logprobs`` and ``beta > 0`` the k3 estimate ``exp(r) - r - 1``, ``r = log pi_ref - log pi``,
    of the KL to the reference is added per token with its gradient (GRPO's KL-in-the-loss, Shao et al.
    2024), exactly as TRL's GRPOTrainer does. Aggregate the result with :func:`aggregate_token_losses`.

    Args:
        logprobs: ``(B, T)`` log-probs under the current policy (with grad).
        old_logprobs: ``(B, T)`` log-probs under the policy that sampled the tokens.
        advantages: ``(B,)`` per-sequence or ``(B, T)`` per-token advantages.
        mask: ``(B, T)`` 1 on response tokens (only used for the stats).
        epsilon: lower clip bound, > 0.
        epsilon_high: upper clip bound, > 0; None uses ``epsilon``.
        ref_logprobs: ``(B, T)`` reference log-probs; needed when ``beta > 0``.
        beta: weight of the k3 KL term, >= 0.

    Returns:
        ``(per_token_loss (B, T), stats)``; stats are detached 0-d tensors: ``clip_fraction_low``
        (tokens with ratio below ``1 - eps`` and A < 0, where the clip zeroes the gradient),
        ``clip_fraction_high`` (ratio above ``1 + eps_high`` and A > 0), ``clip_fraction`` (either),
        ``approx_kl`` (k3 to the sampling policy), ``ratio_mean`` and, with a reference, ``ref_kl``.
    """
    _check_same(logprobs=logprobs, old_logprobs=old_logprobs, mask=mask)
    high = epsilon if epsilon_high is None else epsilon_high
    _check_clip("epsilon", epsilon)
    _check_clip("epsilon_high", high)
    if not beta >= 0:
        raise ValueError(f"beta must be >= 0, got {beta}; 0 leaves the KL out of the loss")
    if beta > 0 and ref_logprobs is None:
        raise ValueError("beta > 0 puts the KL to the reference in the loss: pass ref_logprobs")
    adv = _token_advantages(advantages, logprobs).detach()
    log_ratio = logprobs - old_logprobs.detach()  # (B, T)
    ratio = torch.exp(log_ratio)
    clipped = torch.clamp(ratio, 1.0 - epsilon, 1.0 + high)
    per_token = -torch.minimum(ratio * adv, clipped * adv)  # (B, T)
    ref_kl = None
    if ref_logprobs is not None:
        _check_same(logprobs=logprobs, ref_logprobs=ref_logprobs)
        ref_kl = kl_penalty(logprobs, ref_logprobs.detach(), estimator="k3")  # (B, T), with grad
        if beta > 0:
            per_token = per_token + beta * ref_kl
    with torch.no_grad():
        low_clipped = (ratio < 1.0 - epsilon) & (adv < 0)
        high_clipped = (ratio > 1.0 + high) & (adv > 0)
        stats = {
            "clip_fraction_low": masked_mean(low_clipped.to(ratio.dtype), mask),
            "clip_fraction_high": masked_mean(high_clipped.to(ratio.dtype), mask),
            "clip_fraction": masked_mean((low_clipped | high_clipped).to(ratio.dtype), mask),
            "approx_kl": masked_mean((ratio - 1.0) - log_ratio, mask),
            "ratio_mean": masked_mean(ratio, mask),
        }
        if ref_kl is not None:
            stats["ref_kl"] = masked_mean(ref_kl, mask)
    return per_token, stats


def aggregate_token_losses(
    per_token_loss: torch.Tensor,
    mask: torch.Tensor,
    loss_type: LossType,
    max_completion_length: int | None = None,
    num_items: torch.Tensor | float | None = None,
) -> torch.Tensor:
    """Reduce ``(B, T)`` per-token losses to the scalar loss the way TRL's ``loss_type`` names it.

    - ``"grpo"``: each sequence's mean over its tokens, then the mean over sequences (Shao et al.
      2024). A token of a short response weighs more than one of a long response.
    - ``"bnpo"``: the mean over every token of this minibatch.
    - ``"dapo"``: the sum over tokens divided by ``num_items``, the token count of the whole
      rollout batch per optimizer step (Yu et al. 2025): every token of the batch weighs the same,
      whichever minibatch it falls in. ``num_items=None`` counts this minibatch's tokens (= bnpo).
    - ``"dr_grpo"``: the sum over tokens divided by ``B * max_completion_length``, a constant that
      does not depend on the lengths at all (Liu et al. 2025, "Dr. GRPO").

    Args:
        per_token_loss: ``(B, T)`` losses, e.g. from :func:`grpo_token_losses`.
        mask: ``(B, T)`` 1 on response tokens.
        loss_type: ``"grpo"``, ``"bnpo"``, ``"dapo"`` or ``"dr_grpo"``.
        max_completion_length: the response length limit; required by ``"dr_grpo"``.
        num_items: the token normaliser of ``"dapo"`` (> 0).

    Returns:
        The scalar loss.
    """
    _check_same(per_token_loss=per_token_loss, mask=mask)
    mask = mask.to(per_token_loss.dtype)
    total = (per_token_loss * mask).sum()
    if loss_type == "grpo":
        return ((per_token_loss * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if loss_type == "bnpo":
        return total / mask.sum().clamp(min=1.0)
    if loss_type == "dapo":
        count = (
            mask.sum()
            if num_items is None
            else torch.as_tensor(num_items, dtype=total.dtype, device=total.device)
        )
        return total / count.clamp(min=1.0)
    if loss_type == "dr_grpo":
        if isinstance(max_completion_length, bool) or not (
            isinstance(max_completion_length, int) and max_completion_length >= 1
        ):
            raise ValueError(
                f"loss_type='dr_grpo' divides by batch size x max_completion_length; pass the response length "
                f"limit (the env's max_new_tokens) as an int >= 1, got {max_completion_length!r}"
            )
        return total / (per_token_loss.shape[0] * max_completion_length)
    raise ValueError(f"unknown loss_type {loss_type!r}; expected one of {LOSS_TYPES}")
