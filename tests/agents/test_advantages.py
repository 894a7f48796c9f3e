from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.advantages import (
    MovingAverageBaseline,
    discounted_returns,
    gae,
    rloo_advantages,
    rloo_baseline,
)

F64 = torch.float64


def t(rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=F64)


def test_gae_hand_computed_three_steps() -> None:
    # gamma=1, lam=0.95, r=[0,0,1], V=[.5,.6,.7]:
    # t=2: delta=1-.7=.3 -> A=.3 ; t=1: delta=.7-.6=.1 -> A=.1+.95*.3=.385 ; t=0: delta=.1 -> A=.1+.95*.385=.46575
    adv, ret = gae(t([[0, 0, 1]]), t([[0.5, 0.6, 0.7]]), t([[1, 1, 1]]), gamma=1.0, lam=0.95)
    torch.testing.assert_close(adv, t([[0.46575, 0.385, 0.3]]))
    torch.testing.assert_close(ret, t([[0.96575, 0.985, 1.0]]))


def test_gae_hand_computed_with_discount() -> None:
    # gamma=.9, lam=.8: t=2: .3 ; t=1: .9*.7-.6=.03 -> .03+.72*.3=.246 ; t=0: .9*.6-.5=.04 -> .04+.72*.246=.21712
    adv, _ = gae(t([[0, 0, 1]]), t([[0.5, 0.6, 0.7]]), t([[1, 1, 1]]), gamma=0.9, lam=0.8)
    torch.testing.assert_close(adv, t([[0.21712, 0.246, 0.3]]))


def test_gae_ignores_everything_after_the_mask() -> None:
    # episode ended after 2 tokens: the value beyond is terminal (0) and the garbage there is ignored
    # t=1: delta=1-.6=.4 -> A=.4 ; t=0: delta=.6-.5=.1 -> A=.1+.95*.4=.48
    adv, ret = gae(t([[0, 1, 5.0]]), t([[0.5, 0.6, 9.0]]), t([[1, 1, 0]]), gamma=1.0, lam=0.95)
    torch.testing.assert_close(adv, t([[0.48, 0.4, 0.0]]))
    torch.testing.assert_close(ret, t([[0.98, 1.0, 0.0]]))


@settings(max_examples=30, deadline=None)
@given(
    rewards=st.lists(st.floats(-5, 5), min_size=1, max_size=6),
    values=st.lists(st.floats(-5, 5), min_size=6, max_size=6),
    gamma=st.floats(0.0, 1.0),
    length=st.integers(0, 6),
)
def test_gae_limits(rewards: list[float], values: list[float], gamma: float, length: int) -> None:
    steps = len(rewards)
    r = t([rewards])
    v = t([values[:steps]])
    mask = t([[1.0 if i < min(length, steps) else 0.0 for i in range(steps)]])
    # lam=1: Monte-Carlo return minus the value
    adv1, ret1 = gae(r, v, mask, gamma=gamma, lam=1.0)
    torch.testing.assert_close(adv1, (discounted_returns(r, mask, gamma) - v) * mask)
    torch.testing.assert_close(ret1, discounted_returns(r, mask, gamma))
    # lam=0: one-step TD error
    adv0, _ = gae(r, v, mask, gamma=gamma, lam=0.0)
    next_v = torch.cat([v[:, 1:] * mask[:, 1:], torch.zeros(1, 1, dtype=F64)], dim=1)
    torch.testing.assert_close(adv0, (r + gamma * next_v - v) * mask)


def test_discounted_returns_known_answer() -> None:
    got = discounted_returns(t([[1, 2, 4], [1, 1, 7]]), t([[1, 1, 1], [1, 1, 0]]), gamma=0.5)
    torch.testing.assert_close(got, t([[1 + 0.5 * 2 + 0.25 * 4, 2 + 0.5 * 4, 4], [1.5, 1, 0]]))


def test_gae_rejects_bad_input() -> None:
    ones = torch.ones(2, 3)
    with pytest.raises(ValueError, match="shape mismatch"):
        gae(ones, torch.ones(2, 4), ones)
    with pytest.raises(ValueError, match="lam must be in"):
        gae(ones, ones, ones, lam=1.5)


def test_rloo_baseline_known_numbers() -> None:
    # one prompt, k=4, sum=12: b_i = (12 - r_i) / 3
    rewards = t([[1, 2, 3, 6]])
    torch.testing.assert_close(rloo_baseline(rewards, 4), t([[11 / 3, 10 / 3, 3, 2]]))
    torch.testing.assert_close(rloo_advantages(rewards, 4), t([[-8 / 3, -4 / 3, 0, 4]]))


def test_rloo_flat_layout_is_prompt_major() -> None:
    flat = torch.tensor([1.0, 3.0, 10.0, 20.0])  # prompt 0: [1, 3], prompt 1: [10, 20]
    torch.testing.assert_close(rloo_baseline(flat, 2), torch.tensor([3.0, 1.0, 20.0, 10.0]))
    torch.testing.assert_close(rloo_advantages(flat, 2), torch.tensor([-2.0, 2.0, -10.0, 10.0]))


@settings(max_examples=30, deadline=None)
@given(st.integers(2, 5), st.integers(1, 4), st.randoms(use_true_random=False))
def test_rloo_advantage_is_scaled_deviation_from_group_mean(k: int, prompts: int, rnd) -> None:  # noqa: ANN001
    rewards = torch.tensor([[rnd.uniform(-3, 3) for _ in range(k)] for _ in range(prompts)], dtype=F64)
    expected = k / (k - 1) * (rewards - rewards.mean(1, keepdim=True))
    torch.testing.assert_close(rloo_advantages(rewards, k), expected)


def test_rloo_rejects_k_below_two_and_indivisible_batches() -> None:
    with pytest.raises(ValueError, match="k must be an int >= 2"):
        rloo_baseline(torch.ones(4), 1)
    with pytest.raises(ValueError, match="not divisible into groups of k=3"):
        rloo_baseline(torch.ones(4), 3)
    with pytest.raises(ValueError, match="must be \\(P, k\\) with k=3"):
        rloo_baseline(torch.ones(2, 4), 3)


def test_moving_average_baseline() -> None:
    base = MovingAverageBaseline(decay=0.5)
    assert base.update(torch.tensor([2.0, 4.0])) == pytest.approx(3.0)  # first update: the mean
    assert base.update(torch.tensor([1.0])) == pytest.approx(0.5 * 3 + 0.5 * 1)
    restored = MovingAverageBaseline()
    restored.load_state_dict(base.state_dict())
    assert restored.state_dict() == base.state_dict() == {"decay": 0.5, "value": 2.0, "count": 2}
    with pytest.raises(ValueError, match="decay must be in"):
        MovingAverageBaseline(decay=1.0)


# --------------------------------------------------------------------------- GRPO group advantages

GROUP_REWARDS = [1.0, 0.0, 0.5, 0.5, 2.0, 2.0, 2.0, 2.0]  # two prompts x 4 samples; the second all alike


def test_group_advantages_known_numbers_for_each_scaling() -> None:
    from agents.advantages import group_advantages

    rewards = torch.tensor(GROUP_REWARDS, dtype=F64)
    deviation = torch.tensor([0.5, -0.5, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0], dtype=F64)  # r - group mean
    # group 1: Bessel std = sqrt((0.25 + 0.25) / 3); group 2: std 0, so its advantages are 0 (not NaN)
    group_std = torch.tensor([(0.5 / 3) ** 0.5] * 4 + [0.0] * 4, dtype=F64)
    # batch: mean 1.25, squared deviations sum to 5.0, over 7 (Bessel)
    batch_std = (5.0 / 7) ** 0.5
    torch.testing.assert_close(group_advantages(rewards, 4, "group"), deviation / (group_std + 1e-4))
    torch.testing.assert_close(group_advantages(rewards, 4, "batch"), deviation / (batch_std + 1e-4))
    torch.testing.assert_close(group_advantages(rewards, 4, "none"), deviation)
    torch.testing.assert_close(
        group_advantages(rewards, 4, "group", eps=0.0)[:4], deviation[:4] / group_std[:4]
    )


def test_group_advantages_match_trl_formula_and_keep_the_2d_layout() -> None:
    from agents.advantages import group_advantages

    rewards = torch.tensor(GROUP_REWARDS, dtype=F64)
    # TRL's GRPOTrainer, written out: mean and Bessel std per group, repeat_interleave, eps 1e-4.
    grouped = rewards.view(-1, 4)
    mean = grouped.mean(1).repeat_interleave(4)
    std = grouped.std(1).repeat_interleave(4)
    torch.testing.assert_close(group_advantages(rewards, 4), (rewards - mean) / (std + 1e-4))
    torch.testing.assert_close(group_advantages(grouped, 4), group_advantages(rewards, 4).view(2, 4))


@given(st.integers(2, 6), st.integers(1, 4), st.sampled_from(["group", "batch", "none"]), st.randoms())
def test_group_advantages_sum_to_zero_and_ignore_a_shift(g: int, prompts: int, scale: str, rnd) -> None:  # noqa: ANN001
    from agents.advantages import group_advantages

    rewards = torch.tensor([rnd.uniform(-3, 3) for _ in range(g * prompts)], dtype=F64)
    adv = group_advantages(rewards, g, scale)  # type: ignore[arg-type]
    torch.testing.assert_close(adv.view(-1, g).sum(1), torch.zeros(prompts, dtype=F64), atol=1e-9, rtol=0)
    shifted = group_advantages(rewards + 7.0, g, scale)  # type: ignore[arg-type]
    torch.testing.assert_close(shifted, adv, atol=1e-9, rtol=1e-9)


def test_group_advantages_reject_bad_input() -> None:
    from agents.advantages import group_advantages

    rewards = torch.zeros(8)
    with pytest.raises(ValueError, match="num_generations must be an int >= 2"):
        group_advantages(rewards, 1)
    with pytest.raises(ValueError, match="not divisible into groups of num_generations=3"):
        group_advantages(rewards, 3)
    with pytest.raises(ValueError, match="scale_rewards must be one of"):
        group_advantages(rewards, 4, "std")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="must be \\(P, G\\) with G=num_generations=4"):
        group_advantages(torch.zeros(2, 3), 4)
