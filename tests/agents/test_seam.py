"""The seam between agents and env: attaching, what an agent may change, renamed settings, old checkpoints."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
from gymnasium.vector import AutoresetMode

from agents import PPO, REINFORCE, RLOO
from agents.checkpoint import META_FILE
from agents.rewards import sequence_rewards
from tests.agents.test_ppo import make_env as make_ppo_env
from tests.agents.test_ppo import make_episodes
from tests.agents.test_rloo import make_env
from tests.conftest import build_tiny_lm

ROOT = Path(__file__).resolve().parents[2]

# --------------------------------------------------------------------------- renamed settings


@pytest.mark.parametrize(
    ("algo", "policy", "old", "new"),
    [
        (PPO, "LMActorCriticPolicy", "lam", "gae_lambda"),
        (PPO, "LMActorCriticPolicy", "whiten_advantages", "normalize_advantage"),
        (PPO, "LMActorCriticPolicy", "target_policy_kl", "target_kl"),
        (RLOO, "LMPolicy", "normalize_advantages", "normalize_advantage"),
        (REINFORCE, "LMPolicy", "normalize_advantages", "normalize_advantage"),
    ],
)
def test_an_old_setting_name_raises_naming_the_new_one(algo: type, policy: str, old: str, new: str) -> None:
    with pytest.raises(TypeError, match=rf"{old!r} is now called {new!r}"):
        algo(policy, make_env(8), verbose=0, **{old: 0.5})


def test_kl_target_steers_the_controller_and_target_kl_is_every_algorithms_early_stop() -> None:
    agent = RLOO("LMPolicy", make_env(8), kl_target=2.0, target_kl=0.01, verbose=0)
    assert agent.kl_controller.state_dict()["target"] == 2.0
    assert agent.config.target_kl == 0.01
    for algo in (REINFORCE, RLOO, PPO):
        assert (
            "target_kl" in algo.config_class.field_names() and "kl_target" in algo.config_class.field_names()
        )


def test_kl_target_from_a_zero_coefficient_is_refused_naming_both() -> None:
    """An adaptive coefficient is scaled, so from 0 it would stay 0: say so, not init_kl_coef's error."""
    env = make_env(8)
    env.set_kl_coef(0.0)  # an earlier agent (or the user) turned the penalty off
    with pytest.raises(ValueError, match=r"kl_target=1.0 .* the env's kl_coef is 0.*pass kl_coef="):
        RLOO("LMPolicy", env, kl_target=1.0, verbose=0)
    with pytest.raises(ValueError, match=r"kl_target=1.0 .* kl_coef is 0"):
        RLOO("LMPolicy", make_env(8), kl_target=1.0, kl_coef=0.0, verbose=0)
    assert RLOO("LMPolicy", env, kl_target=1.0, kl_coef=0.05, verbose=0).kl_controller.value == 0.05


@pytest.mark.parametrize("algo", [RLOO, REINFORCE])
def test_target_kl_stops_rloo_and_reinforce_early_and_is_logged(algo: type) -> None:
    env = make_ppo_env(num_envs=4)
    kwargs = {"k": 4} if algo is RLOO else {}
    agent = algo("LMPolicy", env, n_epochs=4, minibatch_size=2, target_kl=1e-3, verbose=0, **kwargs)
    episodes = make_episodes(env, [4, 2, 3, 1], [1.0, -0.5, 0.25, 0.75], torch.zeros(4, 4), logprob_noise=1.0)
    before = {k: v.clone() for k, v in agent.policy.state_dict().items()}
    stats = agent._update(episodes, agent._sequence_rewards(episodes))
    assert stats["train/n_updates"] == 0 and stats["train/stopped_early"] == 1.0
    assert all(torch.equal(v, before[k]) for k, v in agent.policy.state_dict().items())
    # Without it, every minibatch of every epoch steps.
    free = algo("LMPolicy", env, n_epochs=4, minibatch_size=2, verbose=0, **kwargs)
    stats = free._update(episodes, free._sequence_rewards(episodes))
    assert stats["train/n_updates"] == 8 and stats["train/stopped_early"] == 0.0


def test_the_vector_env_names_logits_source_for_the_old_policy_logits() -> None:
    with pytest.raises(TypeError, match="policy_logits= is now logits_source="):
        make_env(4, policy_logits="external")
    with pytest.raises(ValueError, match="logits_source must be one of"):
        make_env(4, logits_source="external")


# --------------------------------------------------------------------------- sequence rewards


def test_sequence_rewards_keep_their_parts() -> None:
    env = make_ppo_env(num_envs=4)
    kl = torch.tensor(
        [[0.2, 0.4, 0.1, 0.3], [0.5, -0.1, 0.0, 0.0], [0.1, 0.1, 0.1, 0.1], [0.3, 0.0, 0.0, 0.0]]
    )
    episodes = make_episodes(env, [4, 2, 4, 1], [1.0, -0.5, 0.25, 0.75], kl)
    parts = sequence_rewards(episodes, kl_coef=0.5, missing_eos=1.0)
    # Rows 0 and 2 hit the length limit (no EOS): the penalty comes off their scores.
    torch.testing.assert_close(parts.score, torch.tensor([0.0, -0.5, -0.75, 0.75]))
    torch.testing.assert_close(parts.kl_sum, torch.tensor([1.0, 0.4, 0.4, 0.3]))
    assert (parts.kl_coef, parts.scale) == (0.5, 1.0)
    torch.testing.assert_close(parts.total, parts.score - 0.5 * parts.kl_sum)


# --------------------------------------------------------------------------- what an agent may change


def test_an_agent_attaches_through_the_env_and_changes_only_what_it_may() -> None:
    env = make_env(8, autoreset_mode="NextStep")
    agent = RLOO("LMPolicy", env, k=4, kl_coef=0.3, verbose=0)
    assert env.logits_source == "env" and env.kl_coef == 0.3
    with env.without_autoreset():
        assert env.autoreset_mode == AutoresetMode.DISABLED
    assert env.autoreset_mode == AutoresetMode.NEXT_STEP
    agent.learn(8 * 6)
    assert env.autoreset_mode == AutoresetMode.NEXT_STEP  # restored after collecting
    with pytest.raises(AttributeError):
        env.kl_coef = 0.1  # type: ignore[misc]  # the one way is set_kl_coef
    with pytest.raises(ValueError, match="kl_coef must be a finite number >= 0"):
        env.set_kl_coef(-1.0)


def test_attach_policy_swaps_the_reference_and_frees_the_old_one() -> None:
    env = make_env(4)
    other = build_tiny_lm(seed=5)
    env.attach_policy(logits_source="env", reference=other)
    assert env.ref_model is other and not any(p.requires_grad for p in other.parameters())


def test_no_agent_or_env_module_probes_the_policy_or_touches_env_internals() -> None:
    probing = re.compile(r"hasattr\((self\.)?policy\b|getattr\((self\.)?policy\b")
    internals = re.compile(r"env\.core\.|\.policy_logits\b|env\.autoreset_mode\s*=|env\.kl_coef\s*=")
    for package in ("agents", "textrl_env"):
        for path in (ROOT / package).rglob("*.py"):
            text = path.read_text()
            assert not probing.search(text), path
            assert not internals.search(text), path


# --------------------------------------------------------------------------- checkpoints before the renames


def _as_format_1(path: Path, renames: dict[str, str]) -> None:
    """Rewrite a checkpoint's metadata as textrl wrote it before the renames (format 1, old names)."""
    meta = json.loads((path / META_FILE).read_text())
    meta["format_version"] = 1
    algo = meta["config"]["algo"]
    meta["config"]["algo"] = {renames.get(key, key): value for key, value in algo.items()}
    (path / META_FILE).write_text(json.dumps(meta))


def test_a_checkpoint_written_before_the_renames_still_loads(tmp_path: Path) -> None:
    ppo = PPO("LMActorCriticPolicy", make_ppo_env(), kl_target=3.0, target_kl=0.05, gae_lambda=0.9,
              normalize_advantage=False, seed=0, verbose=0)  # fmt: skip
    ppo.save(tmp_path / "ppo")
    # In format 1 PPO had no base target_kl: its early stop was target_policy_kl, and target_kl was
    # the KL controller's target.
    _as_format_1(tmp_path / "ppo", {"kl_target": "target_kl", "target_kl": "target_policy_kl",
                                    "gae_lambda": "lam", "normalize_advantage": "whiten_advantages"})  # fmt: skip
    loaded = PPO.load(tmp_path / "ppo", env=make_ppo_env(), verbose=0)
    cfg = loaded.config
    assert (cfg.kl_target, cfg.target_kl, cfg.gae_lambda, cfg.normalize_advantage) == (3.0, 0.05, 0.9, False)
    for key, value in ppo.policy.state_dict().items():
        assert torch.equal(loaded.policy.state_dict()[key], value), key

    rloo = RLOO("LMPolicy", make_env(8), k=4, kl_target=2.0, normalize_advantage=True, verbose=0)
    rloo.save(tmp_path / "rloo")
    _as_format_1(tmp_path / "rloo", {"kl_target": "target_kl", "normalize_advantage": "normalize_advantages"})
    meta = json.loads((tmp_path / "rloo" / META_FILE).read_text())
    meta["config"]["algo"].pop("target_kl")  # format 1 had no early stop outside PPO
    meta["config"]["algo"]["target_kl"] = 2.0  # ... and this was the controller's target
    (tmp_path / "rloo" / META_FILE).write_text(json.dumps(meta))
    loaded_rloo = RLOO.load(tmp_path / "rloo", env=make_env(8), verbose=0)
    assert (loaded_rloo.config.kl_target, loaded_rloo.config.target_kl) == (2.0, None)
    assert loaded_rloo.config.normalize_advantage is True
