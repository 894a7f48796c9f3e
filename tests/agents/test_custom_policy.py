"""Custom policies: the example's subclass and a protocol-only class train, and hand the env their log-probs."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path
from types import ModuleType

import pytest
import torch
from torch import nn

from agents import RLOO, resolve_policy
from agents.collect import collect_episodes
from agents.policies.protocol import evaluate_sequence
from tests.conftest import build_char_tokenizer, build_tiny_lm
from textrl_env import TextGenerationVectorEnv
from textrl_env.default_model import DEFAULT_MODEL_PATH
from textrl_env.logprobs import position_ids_from_mask, sequence_logprobs

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "custom_policy.py"
PROMPTS = ["hello", "the cat", "go"]


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("custom_policy_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = load_example()


def vowel_fraction(prompts: list[str], completions: list[str]) -> list[float]:
    """An easy reward: the share of vowels in the completion."""
    return [sum(ch in "aeiou" for ch in c) / max(len(c), 1) for c in completions]


def make_env(num_envs: int = 16, temperature: float = 1.0) -> TextGenerationVectorEnv:
    return TextGenerationVectorEnv(build_tiny_lm(), build_char_tokenizer(), PROMPTS, vowel_fraction,
                                   num_envs=num_envs, max_new_tokens=6, kl_coef=0.01, temperature=temperature)  # fmt: skip


def full_sequence(episodes) -> tuple[torch.Tensor, torch.Tensor, int]:
    ids = torch.cat([episodes.prompt_ids, episodes.response_ids], dim=1)  # (N, P + T)
    mask = torch.cat([episodes.prompt_mask, episodes.response_mask], dim=1)
    return ids, mask, episodes.prompt_ids.shape[1]


# ---------------------------------------------------------------------- the example


@pytest.mark.skipif(not (DEFAULT_MODEL_PATH / "config.json").exists(), reason="default model not built")
def test_example_runs_with_a_tiny_budget(capsys: pytest.CaptureFixture[str]) -> None:
    before, after = example.main(["--timesteps", "256", "--num-envs", "8"])
    assert math.isfinite(before) and math.isfinite(after)
    assert "mean VADER score on held-out openers" in capsys.readouterr().out


def test_the_examples_policy_trains_and_the_env_measures_its_logprobs() -> None:
    envs = make_env()
    agent = RLOO(
        example.ResidualHeadPolicy,
        envs,
        policy_kwargs={"head_size": 32},
        k=4,
        learning_rate=3e-3,
        seed=0,
        verbose=0,
    )
    assert envs.logits_source == "policy"  # its logits are not the env model's
    before = agent.evaluate(PROMPTS, n_samples=32, seed=1)
    agent.learn(total_timesteps=1536)
    after = agent.evaluate(PROMPTS, n_samples=32, seed=1)
    print(f"custom policy, mean vowel fraction: {before.score_mean:.3f} -> {after.score_mean:.3f}")
    assert after.score_mean - before.score_mean >= 0.3

    # After training the head is far from zero, so the policy and the env's model disagree: the env's
    # log-probs must be the policy's own (the hand-off), not its model's.
    episodes = collect_episodes(envs, PROMPTS[:1] * envs.num_envs, agent.policy.forward, agent.generator)
    assert episodes is not None
    ids, mask, start = full_sequence(episodes)
    with torch.no_grad():
        _, own, _ = agent.policy.evaluate_sequence(ids, mask, start)
        lm_only = sequence_logprobs(envs.model, ids, mask, start)
    torch.testing.assert_close(episodes.logprobs, own, atol=1e-4, rtol=1e-4)
    assert (episodes.logprobs - lm_only).abs().max() > 0.1


def test_the_examples_forward_and_evaluate_sequence_agree() -> None:
    """Sampling and update see the same numbers: each response token's log-prob from ``forward`` on the prefix."""
    policy = example.ResidualHeadPolicy(build_tiny_lm(), temperature=0.7, head_size=16)
    nn.init.normal_(policy.head[-1].weight, std=0.5)  # a head that changes the logits
    envs = make_env(num_envs=4, temperature=0.7)
    envs.attach_policy(logits_source="policy")
    episodes = collect_episodes(envs, PROMPTS[:2] * 2, policy.forward, torch.Generator().manual_seed(0))
    assert episodes is not None
    ids, mask, start = full_sequence(episodes)
    with torch.no_grad():
        _, teacher_forced, _ = policy.evaluate_sequence(ids, mask, start)
        step_by_step = evaluate_sequence(StepwiseView(policy), ids, mask, start)[1]
    torch.testing.assert_close(teacher_forced, step_by_step, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(episodes.logprobs, teacher_forced, atol=1e-4, rtol=1e-4)


def test_freeze_lm_trains_the_head_only() -> None:
    envs = make_env(num_envs=8)
    start = {k: v.clone() for k, v in envs.model.state_dict().items()}
    agent = RLOO(example.ResidualHeadPolicy, envs, policy_kwargs={"head_size": 8, "freeze_lm": True}, k=4,
                 learning_rate=1e-2, seed=0, verbose=0)  # fmt: skip
    trained = {id(p) for group in agent.optimizer.param_groups for p in group["params"]}
    assert trained == {id(p) for p in agent.policy.head.parameters()}
    agent.learn(total_timesteps=2 * 8 * 6)
    assert all(torch.equal(v, envs.model.state_dict()[k]) for k, v in start.items())
    assert agent.policy.head[-1].weight.abs().sum() > 0


class StepwiseView:
    """Hides ``evaluate_sequence`` so the agents ask the policy token by token through ``forward``."""

    def __init__(self, policy: nn.Module) -> None:
        self.policy = policy

    def evaluate_actions(self, obs, actions):  # noqa: ANN001, ANN201
        return self.policy.evaluate_actions(obs, actions)


# ---------------------------------------------------------------------- a protocol-only policy


class BiasOnlyProtocolPolicy(nn.Module):
    """Meets the policy protocol without subclassing BasePolicy: the LM's logits plus a learned bias.

    Deliberately plain torch (full forward, read at the last real column), so the test checks
    agents.base's token-by-token fallback against an independent teacher-forced computation.
    """

    def __init__(self, model: nn.Module, tokenizer: object = None, temperature: float = 1.0) -> None:
        super().__init__()
        self.model = model
        self.temperature = temperature
        self.vocab_size = model.get_output_embeddings().out_features
        self.bias = nn.Parameter(torch.zeros(self.vocab_size))

    def _all_logits(self, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask))
        return out.logits + self.bias  # (B, L, V)

    def forward(self, obs: dict) -> torch.Tensor:
        ids, mask = torch.as_tensor(obs["input_ids"]).long(), torch.as_tensor(obs["attention_mask"]).long()
        last = mask.cumsum(-1).argmax(-1)  # (B,) last real column
        return self._all_logits(ids, mask)[torch.arange(ids.shape[0]), last]  # (B, V)

    def act(self, obs: dict, deterministic: bool = False) -> torch.Tensor:
        with torch.no_grad():
            logits = self(obs) / self.temperature
        return logits.argmax(-1) if deterministic else torch.multinomial(logits.softmax(-1), 1).squeeze(-1)

    def evaluate_actions(self, obs: dict, actions: torch.Tensor) -> tuple[None, torch.Tensor, torch.Tensor]:
        logp = torch.log_softmax(self(obs) / self.temperature, dim=-1)  # (B, V)
        entropy = -(logp.exp() * logp).sum(-1)
        return None, logp.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1), entropy

    def predict_values(self, obs: dict) -> None:
        return None

    def teacher_forced(self, ids: torch.Tensor, mask: torch.Tensor, start: int) -> torch.Tensor:
        """Log-probs ``(B, T)`` of ``ids[:, start:]`` from one full forward."""
        logp = torch.log_softmax(self._all_logits(ids, mask)[:, start - 1 : -1] / self.temperature, dim=-1)
        return logp.gather(-1, ids[:, start:].unsqueeze(-1)).squeeze(-1) * mask[:, start:]


def test_a_protocol_only_policy_is_accepted_and_its_fallback_logprobs_are_exact() -> None:
    assert resolve_policy(BiasOnlyProtocolPolicy) is BiasOnlyProtocolPolicy
    envs = make_env(num_envs=8, temperature=0.7)
    agent = RLOO(BiasOnlyProtocolPolicy, envs, k=4, learning_rate=1e-2, seed=0, verbose=0)
    assert envs.logits_source == "policy" and not hasattr(agent.policy, "evaluate_sequence")
    with torch.no_grad():
        agent.policy.bias.normal_(std=1.0)  # the policy now differs from the env's model

    episodes = collect_episodes(envs, PROMPTS[:2] * 4, agent.policy.forward, agent.generator)
    assert episodes is not None
    ids, mask, start = full_sequence(episodes)
    with torch.no_grad():
        _, fallback, entropy = evaluate_sequence(agent.policy, ids, mask, start)
        expected = agent.policy.teacher_forced(ids, mask, start)
    torch.testing.assert_close(fallback, expected, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(episodes.logprobs, expected, atol=1e-4, rtol=1e-4)  # the env got its logits
    assert (entropy[mask[:, start:] == 0] == 0).all() and (entropy[mask[:, start:] == 1] > 0).all()

    # And it trains end to end through the fallback: the bias moves.
    bias = agent.policy.bias.detach().clone()
    agent.learn(total_timesteps=2 * 8 * 6)
    assert not torch.equal(bias, agent.policy.bias.detach())
