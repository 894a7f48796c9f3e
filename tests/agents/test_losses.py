from __future__ import annotations

import math

import pytest
import torch

from agents.losses import clipped_policy_loss, clipped_value_loss, masked_mean

F64 = torch.float64
EPS = 0.5  # exp(log(1.5)) == 1.5 and exp(log(0.5)) == 0.5 exactly in float64, so the boundary is exact
DELTA = 1e-3


def _policy_case(ratio: float, advantage: float) -> tuple[float, float, float]:
    """(loss, d loss / d logprob, clip_fraction) for one token with the given ratio and advantage."""
    logprob = torch.tensor([[math.log(ratio)]], dtype=F64, requires_grad=True)
    old = torch.zeros(1, 1, dtype=F64)
    loss, stats = clipped_policy_loss(
        logprob, old, torch.tensor([[advantage]], dtype=F64), torch.ones(1, 1), EPS
    )
    loss.backward()
    return loss.item(), logprob.grad.item(), stats["clip_fraction"].item()


def test_ratio_exactly_at_boundary_is_not_clipped() -> None:
    for ratio, adv in [(1 + EPS, 1.0), (1 - EPS, -1.0), (1 + EPS, -1.0), (1 - EPS, 1.0)]:
        loss, grad, clip_fraction = _policy_case(ratio, adv)
        assert loss == pytest.approx(-adv * ratio)
        assert grad == pytest.approx(-adv * ratio)  # d(-A * exp(logp)) / d logp, still flowing
        assert clip_fraction == 0.0


def test_positive_advantage_beyond_upper_bound_is_clipped() -> None:
    loss, grad, clip_fraction = _policy_case(1 + EPS + DELTA, 1.0)
    assert loss == pytest.approx(-(1 + EPS))
    assert grad == 0.0
    assert clip_fraction == 1.0


def test_negative_advantage_beyond_upper_bound_keeps_the_pessimistic_unclipped_term() -> None:
    loss, grad, clip_fraction = _policy_case(1 + EPS + DELTA, -1.0)
    assert loss == pytest.approx(1 + EPS + DELTA)
    assert grad == pytest.approx(1 + EPS + DELTA)
    assert clip_fraction == 1.0


def test_negative_advantage_below_lower_bound_is_clipped() -> None:
    loss, grad, _ = _policy_case(1 - EPS - DELTA, -1.0)
    assert loss == pytest.approx(1 - EPS)
    assert grad == 0.0


def test_positive_advantage_below_lower_bound_keeps_the_unclipped_term() -> None:
    loss, grad, _ = _policy_case(1 - EPS - DELTA, 1.0)
    assert loss == pytest.approx(-(1 - EPS - DELTA))
    assert grad == pytest.approx(-(1 - EPS - DELTA))


def test_policy_loss_stats_and_mask() -> None:
    logprobs = torch.log(torch.tensor([[1.0, 1.5, 3.0]], dtype=F64))  # last token masked out
    old = torch.zeros(1, 3, dtype=F64)
    adv = torch.tensor([2.0], dtype=F64)  # one advantage per sequence, broadcast over tokens
    loss, stats = clipped_policy_loss(logprobs, old, adv, torch.tensor([[1, 1, 0]]), 0.2)
    # token 0: ratio 1 -> -2 ; token 1: ratio 1.5 clipped to 1.2 -> -2.4
    assert loss.item() == pytest.approx((-2.0 - 2.4) / 2)
    assert stats["clip_fraction"].item() == pytest.approx(0.5)
    assert stats["approx_kl"].item() == pytest.approx((0.0 + (0.5 - math.log(1.5))) / 2)
    assert stats["ratio_mean"].item() == pytest.approx(1.25)
    assert not stats["approx_kl"].requires_grad


def test_value_loss_known_answers_and_boundary() -> None:
    old, mask = torch.tensor([[1.0]]), torch.ones(1, 1)
    # far from the target: unclipped error (2-0)^2=4 beats clipped (1.5-0)^2=2.25
    v = torch.tensor([[2.0]], requires_grad=True)
    loss, stats = clipped_value_loss(v, old, torch.tensor([[0.0]]), mask, 0.5)
    loss.backward()
    assert loss.item() == pytest.approx(2.0) and v.grad.item() == pytest.approx(2.0)
    assert stats["value_clip_fraction"].item() == 0.0
    # the clip pulls V back towards V_old, away from the target: clipped (1.5-3)^2=2.25 beats (2-3)^2=1, no gradient
    v = torch.tensor([[2.0]], requires_grad=True)
    loss, stats = clipped_value_loss(v, old, torch.tensor([[3.0]]), mask, 0.5)
    loss.backward()
    assert loss.item() == pytest.approx(1.125) and v.grad.item() == 0.0
    assert stats["value_clip_fraction"].item() == 1.0
    # exactly at the boundary: both terms equal, not counted as clipped
    loss, stats = clipped_value_loss(torch.tensor([[1.5]]), old, torch.tensor([[3.0]]), mask, 0.5)
    assert loss.item() == pytest.approx(0.5 * 1.5**2) and stats["value_clip_fraction"].item() == 0.0
    # no clip
    loss, _ = clipped_value_loss(torch.tensor([[2.0]]), old, torch.tensor([[3.0]]), mask, None)
    assert loss.item() == pytest.approx(0.5)


def test_masked_mean() -> None:
    x = torch.tensor([[1.0, 2.0, 100.0], [3.0, 100.0, 100.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    assert masked_mean(x, mask).item() == pytest.approx(2.0)
    torch.testing.assert_close(masked_mean(x, mask, dim=1), torch.tensor([1.5, 3.0]))
    assert masked_mean(x, torch.zeros_like(mask)).item() == 0.0  # empty mask: 0, not NaN


def test_loss_input_errors() -> None:
    x = torch.zeros(2, 3)
    with pytest.raises(ValueError, match="clip_range must be > 0"):
        clipped_policy_loss(x, x, x, x, 0.0)
    with pytest.raises(ValueError, match="do not fit logprobs"):
        clipped_policy_loss(x, x, torch.zeros(3), x, 0.2)
    with pytest.raises(ValueError, match="shape mismatch"):
        clipped_value_loss(x, torch.zeros(2, 2), x, x, 0.2)
