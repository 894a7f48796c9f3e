"""Property-test your own reward shaping with Hypothesis, using textrl's strategies.

A shaping function spreads an episode's reward over its tokens. Whatever it does, two properties
should hold: the per-token rewards of a response sum to its return ``score - kl_coef * sum(KL)``
(so the agent optimises what the env pays), and padding gets no reward. ``textrl_env.testing``
draws the tensors textrl passes around (masks that are a prefix of 1s, finite log-probs <= 0).

    python examples/property_test_shaping.py          # runs the properties (a few seconds)
    python -m pytest examples/property_test_shaping.py
"""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reward_models import kl_penalty
from textrl_env.testing import kl_coefs, logprob_tensors, reward_batches


def spread_score_shaping(
    scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float
) -> torch.Tensor:
    """Yours to replace: the KL penalty per token, and the score spread evenly over the response."""
    mask = mask.to(kl.dtype)  # (B, T)
    lengths = mask.sum(dim=1, keepdim=True)  # (B, 1), >= 1 for textrl's strategies
    return (-kl_coef * kl + scores[:, None] / lengths) * mask  # (B, T)


@settings(max_examples=50, deadline=None)
@given(st.data(), kl_coefs())
def test_shaping_keeps_the_return(data: st.DataObject, kl_coef: float) -> None:
    logprobs, ref_logprobs, mask = data.draw(logprob_tensors())
    scores = data.draw(reward_batches(batch_size=logprobs.shape[0]))
    kl = kl_penalty(logprobs, ref_logprobs, mask, estimator="k3")  # (B, T)
    rewards = spread_score_shaping(scores, kl, mask, kl_coef)
    expected = scores - kl_coef * (kl * mask).sum(dim=1)
    torch.testing.assert_close(rewards.sum(dim=1), expected, rtol=1e-4, atol=1e-3)


@settings(max_examples=50, deadline=None)
@given(st.data(), kl_coefs())
def test_padding_gets_no_reward(data: st.DataObject, kl_coef: float) -> None:
    logprobs, ref_logprobs, mask = data.draw(logprob_tensors())
    scores = data.draw(reward_batches(batch_size=logprobs.shape[0]))
    kl = kl_penalty(logprobs, ref_logprobs, mask, estimator="k1")
    rewards = spread_score_shaping(scores, kl, mask, kl_coef)
    assert bool((rewards[mask == 0] == 0).all())


def main() -> None:
    """Run both properties (a Hypothesis test is a plain function you can call)."""
    test_shaping_keeps_the_return()
    test_padding_gets_no_reward()
    print("both shaping properties hold on every drawn example")


if __name__ == "__main__":
    main()
