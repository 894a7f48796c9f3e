"""Reward shaping as pure, batched torch functions.

Shapes follow the rest of textrl: ``(B, T)`` tensors over response tokens, with a ``mask`` that is
1 on real response tokens and 0 on padding and on everything after the first EOS.
"""

from __future__ import annotations

from typing import Any, Literal

import torch

from reward_models.checks import positive_finite

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


def _last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last nonzero entry of each row of a ``(B, T)`` mask; every row must have one."""
    present = mask != 0  # (B, T)
    empty = ~present.any(dim=1)  # (B,)
    if bool(empty.any()):
        rows = empty.nonzero().flatten().tolist()
        raise ValueError(
            f"mask rows {rows} are all zero, so they have no response token to carry the score; "
            "every row needs at least one unmasked token (drop empty responses, or keep their EOS unmasked)"
        )
    # cumsum peaks first at the last nonzero entry, and argmax returns the first peak.
    return present.long().cumsum(dim=1).argmax(dim=1)  # (B,)


def shaped_rewards(
    scores: torch.Tensor,
    kl: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
) -> torch.Tensor:
    """Per-token rewards: the KL penalty on every response token plus the score on the last one.

    ``rewards[b, t] = -kl_coef * kl[b, t] * mask[b, t]``, and ``scores[b]`` is added at the last
    position where ``mask[b]`` is nonzero (the EOS, or the final token of a truncated response).
    So ``rewards.sum(dim=1) == scores - kl_coef * (kl * mask).sum(dim=1)``: the episode return.

    Args:
        scores: ``(B,)`` reward-model scores of the finished responses.
        kl: ``(B, T)`` per-token KL estimates, e.g. from :func:`kl_penalty`.
        mask: ``(B, T)`` 1 on response tokens, 0 on padding (any dtype; nonzero counts as 1).
        kl_coef: weight of the KL penalty (>= 0), e.g. ``controller.value``.

    Returns:
        ``(B, T)`` rewards in the dtype of ``kl``; masked positions are 0.

    Raises:
        ValueError: shapes disagree, ``kl_coef`` is negative or not finite, or a row of ``mask`` is
            all zero.
    """
    kl_coef = positive_finite("kl_coef", kl_coef, allow_zero=True)
    _check_same_shape(kl=kl, mask=mask)
    if kl.dim() != 2 or tuple(scores.shape) != (kl.shape[0],):
        raise ValueError(
            f"shape mismatch: scores={tuple(scores.shape)}, kl={tuple(kl.shape)}; "
            "expected scores of shape (B,) and kl, mask of shape (B, T)"
        )
    last = _last_token_index(mask)  # (B,)
    rewards = -kl_coef * kl * (mask != 0).to(kl.dtype)  # (B, T)
    rows = torch.arange(kl.shape[0], device=kl.device)
    rewards[rows, last] += scores.to(device=kl.device, dtype=kl.dtype)
    return rewards


def whiten(values: torch.Tensor, mask: torch.Tensor | None = None, shift_mean: bool = True) -> torch.Tensor:
    """Scale ``values`` to unit variance (and zero mean) over the unmasked entries.

    The statistics use only entries where ``mask`` is nonzero (all entries when ``mask`` is None),
    with the unbiased variance; masked entries come back as 0. Used for PPO advantages.

    Args:
        values: tensor of any shape.
        mask: same shape as ``values``; 1 where an entry counts, 0 where it is padding.
        shift_mean: if False, keep the original mean (for rewards, whose sign carries meaning).

    Returns:
        Tensor of the shape and dtype of ``values``.

    Raises:
        ValueError: shapes disagree or no entry is unmasked.
    """
    keep = torch.ones_like(values) if mask is None else (mask != 0).to(values.dtype)
    if mask is not None:
        _check_same_shape(values=values, mask=mask)
    n = keep.sum()
    if float(n) < 1:
        raise ValueError("whiten() got no unmasked values; the mask must have at least one nonzero entry")
    mean = (values * keep).sum() / n
    centred = (values - mean) * keep
    # Bessel's correction, as TRL and OpenRLHF do; a single value has no spread, so its variance is 0.
    var = centred.square().sum() / (n - 1).clamp(min=1)
    out = centred * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * keep


def missing_eos_penalty(scores: torch.Tensor, has_eos: torch.Tensor, penalty: float) -> torch.Tensor:
    """Subtract ``penalty`` from the score of every response that ended without an EOS token.

    Truncated responses otherwise collect a full score, which teaches the policy to ramble
    (the "N+ implementation details" missing-EOS trick).

    Args:
        scores: ``(B,)`` scores.
        has_eos: ``(B,)`` bool (or 0/1) tensor, True where the response contains an EOS.
        penalty: amount to subtract (>= 0).

    Returns:
        ``(B,)`` new scores; the input is not modified.

    Raises:
        ValueError: shapes disagree or ``penalty`` is negative or not finite.
    """
    penalty = positive_finite("penalty", penalty, allow_zero=True)
    if scores.dim() != 1 or tuple(has_eos.shape) != tuple(scores.shape):
        raise ValueError(
            f"shape mismatch: scores={tuple(scores.shape)}, has_eos={tuple(has_eos.shape)}; "
            "both must have shape (B,)"
        )
    missing = (has_eos == 0).to(device=scores.device, dtype=scores.dtype)  # (B,)
    return scores - penalty * missing


class RunningMeanStd:
    """Running mean and variance of a stream of batches (Chan et al.'s parallel Welford update).

    Used to normalise rewards across rollouts. Statistics are kept in float64 on the CPU so that
    millions of updates do not drift; ``normalize`` returns the input's dtype and device.

    Args:
        shape: shape of one sample; ``()`` for scalars such as rewards.
        epsilon: added to the variance before taking the square root in ``normalize``.

    Example:
        >>> rms = RunningMeanStd()
        >>> rms.update(torch.tensor([1.0, 2.0, 3.0]))
        >>> round(rms.mean.item(), 3), round(rms.var.item(), 3), rms.count
        (2.0, 0.667, 3.0)
    """

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-8) -> None:
        self.shape = tuple(shape)
        self.epsilon = positive_finite("epsilon", epsilon, allow_zero=True)
        self.mean = torch.zeros(self.shape, dtype=torch.float64)
        self.var = torch.ones(self.shape, dtype=torch.float64)
        self.count = 0.0

    def update(self, x: torch.Tensor) -> None:
        """Fold a batch ``x`` of shape ``(N, *shape)`` (or just ``shape`` for a single sample) in."""
        x = torch.as_tensor(x).detach().to(device="cpu", dtype=torch.float64)
        if tuple(x.shape) == self.shape:
            x = x.unsqueeze(0)  # one sample -> (1, *shape)
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(
                f"shape mismatch: got a batch of shape {tuple(x.shape)}, expected (N, *{self.shape})"
            )
        if not bool(torch.isfinite(x).all()):
            raise ValueError(
                "RunningMeanStd.update() got NaN or infinite values; check the rewards fed to it"
            )
        n = float(x.shape[0])
        if n == 0:
            return
        batch_mean = x.mean(dim=0)
        batch_var = x.var(dim=0, unbiased=False)
        total = self.count + n
        delta = batch_mean - self.mean
        m2 = self.var * self.count + batch_var * n + delta.square() * self.count * n / total
        self.mean = self.mean + delta * n / total
        self.var = m2 / total
        self.count = total

    @property
    def std(self) -> torch.Tensor:
        """Standard deviation, ``sqrt(var + epsilon)``."""
        return torch.sqrt(self.var + self.epsilon)

    def normalize(self, x: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
        """``(x - mean) / std`` (or ``x / std`` when ``shift_mean`` is False); identity-like before data."""
        mean = self.mean.to(device=x.device, dtype=x.dtype) if shift_mean else 0.0
        return (x - mean) / self.std.to(device=x.device, dtype=x.dtype)

    def state_dict(self) -> dict[str, Any]:
        """Tensors and floats only, so ``torch.load(..., weights_only=True)`` restores it."""
        return {"mean": self.mean.clone(), "var": self.var.clone(), "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        missing = {"mean", "var", "count"} - set(state)
        if missing:
            raise ValueError(
                f"RunningMeanStd state is missing {sorted(missing)}; pass a dict from state_dict()"
            )
        mean = torch.as_tensor(state["mean"], dtype=torch.float64)
        var = torch.as_tensor(state["var"], dtype=torch.float64)
        if tuple(mean.shape) != self.shape or tuple(var.shape) != self.shape:
            raise ValueError(
                f"RunningMeanStd state has shape {tuple(mean.shape)}, this one has {self.shape}; "
                "build it with the same shape= it was saved with"
            )
        self.mean, self.var = mean.clone(), var.clone()
        self.count = positive_finite("count", state["count"], allow_zero=True)
