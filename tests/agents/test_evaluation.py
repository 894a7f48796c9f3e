"""evaluate_policy: reward, KL and win-rate of a policy against its reference, and the JSON report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import gymnasium as gym
import pytest
import torch

import textrl_env  # noqa: F401  (registers the textrl/... ids)
from agents import RLOO
from agents.evaluation import evaluate_policy, reference_env, sample_completions, win_rate
from textrl_env.default_model import HELDOUT_SENTIMENT_PROMPTS

PROMPTS = list(HELDOUT_SENTIMENT_PROMPTS[:6])


def sentiment_envs(num_envs: int = 8):
    return gym.make_vec("textrl/Sentiment-v0", num_envs=num_envs, vectorization_mode="vector_entry_point")


def test_win_rate_known_answers() -> None:
    assert win_rate(torch.tensor([1.0, 0.0, 2.0, 3.0]), torch.tensor([0.0, 1.0, 2.0, 1.0])) == 0.625
    assert win_rate(torch.ones(3), torch.ones(3)) == 0.5
    with pytest.raises(ValueError, match="one shape"):
        win_rate(torch.ones(3), torch.ones(2))


def test_a_policy_equal_to_its_reference_ties_every_pair() -> None:
    envs = sentiment_envs()
    report = evaluate_policy(envs.unwrapped, PROMPTS, n_samples=2, seed=3)
    assert report.win_rate == 0.5  # same weights, same sampler seed: the same completions
    assert abs(report.kl_mean) < 1e-4
    assert report.reference_reward_mean == pytest.approx(report.reward_mean)
    assert report.n_prompts == 6 and report.n_samples == 2 and len(report.samples) == 12
    assert [s.prompt for s in report.samples[:2]] == [PROMPTS[0]] * 2
    assert report.judge is not None


def test_rewards_and_kl_match_the_agents_own_evaluation_and_the_pairs_decide_the_win_rate() -> None:
    envs = sentiment_envs()
    agent = RLOO("LMPolicy", envs, learning_rate=1e-3, seed=0, verbose=0)
    agent.learn(total_timesteps=8 * 16 * 4)
    mine = evaluate_policy(envs.unwrapped, PROMPTS, n_samples=3, seed=7)
    theirs = agent.evaluate(PROMPTS, n_samples=3, seed=7)
    assert [s.completion for s in mine.samples] == theirs.completions
    assert mine.reward_mean == pytest.approx(theirs.score_mean, abs=1e-6)
    assert mine.kl_mean == pytest.approx(theirs.kl_mean, abs=1e-5) and mine.kl_mean > 0
    pairs = [(s.judge_policy, s.judge_reference) for s in mine.samples]
    expected = sum(1.0 if p > r else 0.5 if p == r else 0.0 for p, r in pairs) / len(pairs)
    assert mine.win_rate == pytest.approx(expected)
    # The reference env samples the frozen reference: its KL to itself is 0.
    ref = sample_completions(reference_env(envs.unwrapped), PROMPTS, 1, seed=7)
    assert ref.kl.abs().max() < 1e-4


def test_judge_and_json(tmp_path: Path) -> None:
    envs = sentiment_envs()

    def longer(prompts: list[str], completions: list[str]) -> list[float]:
        return [float(len(c)) for c in completions]

    report = evaluate_policy(envs.unwrapped, PROMPTS, n_samples=1, judge=longer, reference=False)
    assert report.win_rate is None and report.judge is None
    report = evaluate_policy(envs.unwrapped, PROMPTS, n_samples=1, judge=longer)
    assert report.samples[0].judge_policy == float(len(report.samples[0].completion))
    path = report.save_json(tmp_path / "out" / "eval.json")
    data = json.loads(path.read_text())
    assert data["win_rate"] == report.win_rate and len(data["samples"]) == 6
    assert math.isfinite(data["reward_mean"]) and data["samples"][0]["prompt"] == PROMPTS[0]


def test_bad_prompts() -> None:
    with pytest.raises(ValueError, match="non-empty list"):
        evaluate_policy(sentiment_envs().unwrapped, [])
