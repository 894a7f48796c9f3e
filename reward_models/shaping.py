"""Reward shaping as pure, batched torch functions.

Shapes follow the rest of textrl: ``(B, T)`` tensors over response tokens, with a ``mask`` that is
1 on real response tokens and 0 on padding and on everything after the first EOS.
"""

from __future__ import annotations

from typing import Literal

import torch

KLEstimator = Literal["k1", "k2", "k3"]
KL_ESTIMATORS: tuple[str, ...] = ("k1", "k2", "k3")

# exp() of a log-ratio beyond ~±20 overflows float16 / explodes k3; every RLHF codebase clamps it.
LOG_RATIO_CLAMP = 20.0


def _check_same_shape(**tensors: torch.Tensor) -> None:
    shapes = {name: tuple(t.shape) for name, t in tensors.items()}
    if len(set(shapes.values())) > 1:
        listed = ", ".join(f"{k}={v}" for k, v in shapes.items())
        raise ValueError(f"shape mismatch: {listed}; all must be the same (B, T) shape")


def kl_penalty(
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor | None = None,
    estimator: KLEstimator = "k1",
    clamp: float = LOG_RATIO_CLAMP,
) -> torch.Tensor:
    """Per-token KL estimate between the policy and the reference (Schulman's k1/k2/k3).

    With ``r = ref_logprobs - logprobs`` (log of the ratio ref/policy, clamped to ``±clamp``):
    ``k1 = -r`` (unbiased, can be negative), ``k2 = r**2 / 2`` (biased, >= 0),
    ``k3 = exp(r) - 1 - r`` (unbiased, >= 0).

    Args:
        logprobs: ``(B, T)`` log-probabilities of the sampled tokens under the policy.
        ref_logprobs: ``(B, T)`` log-probabilities of the same tokens under the reference.
        mask: ``(B, T)`` 1 on response tokens, 0 elsewhere; masked positions come back as 0.
        estimator: ``"k1"``, ``"k2"`` or ``"k3"``.
        clamp: bound on the absolute log-ratio, for numerical safety.

    Returns:
        ``(B, T)`` tensor of per-token KL estimates.
    """
    if estimator not in KL_ESTIMATORS:
        raise ValueError(f"unknown KL estimator {estimator!r}; expected one of {KL_ESTIMATORS}")
    if mask is None:
        _check_same_shape(logprobs=logprobs, ref_logprobs=ref_logprobs)
    else:
        _check_same_shape(logprobs=logprobs, ref_logprobs=ref_logprobs, mask=mask)
    log_ratio = (ref_logprobs - logprobs).clamp(-clamp, clamp)  # log(pi_ref / pi)
    if estimator == "k1":
        kl = -log_ratio
    elif estimator == "k2":
        kl = 0.5 * log_ratio.square()
    else:
        kl = torch.expm1(log_ratio) - log_ratio
    if mask is not None:
        kl = kl * mask.to(kl.dtype)
    return kl
