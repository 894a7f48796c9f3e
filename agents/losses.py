"""Clipped PPO-style policy and value losses, with masked means over response tokens.

Stats come back as detached 0-d tensors, so nothing here forces a host sync; the logger turns them
into numbers once per dump.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch


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
