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


# --------------------------------------------------------------------------- GRPO: clip-higher, k3, aggregation


def _grpo_case(ratio: float, advantage: float, epsilon: float = 0.2, epsilon_high: float | None = 0.28):
    """(loss, d loss / d logprob, stats) for one token with the given ratio and advantage."""
    from agents.losses import grpo_token_losses

    logprob = torch.tensor([[math.log(ratio)]], dtype=F64, requires_grad=True)
    per_token, stats = grpo_token_losses(
        logprob, torch.zeros(1, 1, dtype=F64), torch.tensor([advantage], dtype=F64), torch.ones(1, 1),
        epsilon, epsilon_high,
    )  # fmt: skip
    per_token.sum().backward()
    return per_token.item(), logprob.grad.item(), {k: v.item() for k, v in stats.items()}


def test_grpo_clip_higher_is_asymmetric() -> None:
    # A > 0, ratio 1.25: inside 1 + epsilon_high = 1.28, so not clipped (symmetric 0.2 would clip it)
    loss, grad, stats = _grpo_case(1.25, 1.0)
    assert loss == pytest.approx(-1.25) and grad == pytest.approx(-1.25) and stats["clip_fraction"] == 0.0
    loss, grad, stats = _grpo_case(1.25, 1.0, epsilon_high=None)
    assert loss == pytest.approx(-1.2) and grad == 0.0 and stats["clip_fraction_high"] == 1.0
    # A > 0, ratio 1.5 > 1.28: clipped at 1.28, no gradient
    loss, grad, stats = _grpo_case(1.5, 2.0)
    assert loss == pytest.approx(-2.0 * 1.28) and grad == 0.0
    assert stats["clip_fraction_high"] == 1.0 and stats["clip_fraction_low"] == 0.0
    # A < 0, ratio 0.7 < 1 - 0.2: clipped at 0.8, no gradient
    loss, grad, stats = _grpo_case(0.7, -1.0)
    assert loss == pytest.approx(0.8) and grad == 0.0 and stats["clip_fraction_low"] == 1.0
    # A > 0, ratio 0.7: the unclipped term is the smaller one, gradient flows
    loss, grad, stats = _grpo_case(0.7, 1.0)
    assert loss == pytest.approx(-0.7) and grad == pytest.approx(-0.7) and stats["clip_fraction"] == 0.0


def test_grpo_k3_term_known_value_and_gradient() -> None:
    from agents.losses import grpo_token_losses

    # log pi = log 0.5, log pi_ref = log 0.25: r = log 0.5, k3 = 0.5 - log 0.5 - 1, dk3/dlogpi = 1 - 0.5
    logprob = torch.tensor([[math.log(0.5)]], dtype=F64, requires_grad=True)
    ref = torch.tensor([[math.log(0.25)]], dtype=F64)
    per_token, stats = grpo_token_losses(
        logprob,
        logprob.detach(),
        torch.zeros(1, dtype=F64),
        torch.ones(1, 1),
        0.2,
        ref_logprobs=ref,
        beta=0.1,
    )
    per_token.sum().backward()
    k3 = 0.5 - math.log(0.5) - 1.0
    assert per_token.item() == pytest.approx(0.1 * k3)
    assert logprob.grad.item() == pytest.approx(0.1 * 0.5)
    assert stats["ref_kl"].item() == pytest.approx(k3)
    with pytest.raises(ValueError, match="pass ref_logprobs"):
        grpo_token_losses(logprob, logprob.detach(), torch.zeros(1), torch.ones(1, 1), 0.2, beta=0.1)
    with pytest.raises(ValueError, match="epsilon_high must be > 0"):
        grpo_token_losses(logprob, logprob.detach(), torch.zeros(1), torch.ones(1, 1), 0.2, epsilon_high=0.0)


def test_aggregate_token_losses_known_answers() -> None:
    from agents.losses import aggregate_token_losses

    losses = torch.tensor([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 100.0, 100.0]], dtype=F64)  # 100s are masked out
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    assert aggregate_token_losses(losses, mask, "grpo").item() == pytest.approx((2.5 + 5.5) / 2)
    assert aggregate_token_losses(losses, mask, "bnpo").item() == pytest.approx(21 / 6)
    assert aggregate_token_losses(losses, mask, "dapo").item() == pytest.approx(21 / 6)
    assert aggregate_token_losses(losses, mask, "dapo", num_items=12).item() == pytest.approx(21 / 12)
    assert aggregate_token_losses(losses, mask, "dr_grpo", max_completion_length=8).item() == pytest.approx(
        21 / 16
    )
    with pytest.raises(ValueError, match="pass the response length limit"):
        aggregate_token_losses(losses, mask, "dr_grpo")
    with pytest.raises(ValueError, match="unknown loss_type 'ppo'"):
        aggregate_token_losses(losses, mask, "ppo")  # type: ignore[arg-type]
