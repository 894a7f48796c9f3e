"""An adapter policy so that Stable-Baselines3's own ``PPO`` trains on a textrl environment.

For users who already live in Stable-Baselines3::

    import gymnasium as gym
    import stable_baselines3 as sb3
    import textrl_env
    from agents.sb3 import TextRLSB3Policy

    env = gym.make("textrl/Sentiment-v0", max_new_tokens=8)
    model = sb3.PPO(TextRLSB3Policy, env, n_steps=256, batch_size=64, learning_rate=1e-4, device="cpu")
    model.learn(total_timesteps=10_000)

The actor is the env's causal LM itself, not a copy: SB3's optimizer updates the very module the env
samples with and measures its KL penalty against. SB3 builds a policy from the spaces alone, so the
policy finds that module through the observation space object the env created
(:mod:`textrl_env.space_registry`), or takes it from ``policy_kwargs={"model": env.unwrapped.model}``.
The critic is a linear value head on the LM's last hidden state at the last real token.

What differs from SB3's MLP policies, and why:

- Observations stay token ids. SB3 may hand them back as floats; they are turned into int64 again
  (exact for ids below 2**24), and the LM runs on them with position ids from the attention mask.
- The next-token logits sit at each row's last real column (the response grows into right padding).
- Dropout stays off even in ``train()`` mode: a token's log-prob at sampling time and at update time
  must be measured by the same network, or PPO's ratio is noise.
- The value of an observation whose response slots are all filled is 0. The env always ends there
  (truncation at ``max_new_tokens``), so the state has no future; SB3 bootstraps truncated episodes with
  ``gamma * V(terminal_obs)``, which would otherwise add an unlearnable term to the last reward.
- The policy cannot be moved off the env's device: the env keeps scoring with the same module.

Loading a saved agent: ``PPO.load(path, env=env, custom_objects={"observation_space": env.observation_space})``
hands SB3 the env's own space (rather than the unpickled copy, which belongs to no env), so the loaded
weights go into the env's model.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from typing import Any, cast

import torch
from gymnasium import spaces
from stable_baselines3.common.distributions import CategoricalDistribution, Distribution
from stable_baselines3.common.policies import ActorCriticPolicy
from stable_baselines3.common.type_aliases import PyTorchObs, Schedule
from torch import nn

from agents.policies.base import obs_to_tensors, right_align, set_training_flag
from agents.policies.lm import _model_vocab_size, _run_lm, _value_head
from textrl_env.logprobs import real_vocab_logits
from textrl_env.space_registry import env_for_space, registered_models


class TextRLSB3Policy(ActorCriticPolicy):
    """Stable-Baselines3 actor-critic policy whose actor is a textrl env's causal language model.

    Args:
        observation_space: the env's ``Dict(input_ids, attention_mask)`` space. When it is the very
            object a textrl env created, the env's model is found from it.
        action_space: ``Discrete(vocab_size)``.
        lr_schedule: SB3's learning-rate schedule.
        model: the causal LM to train; must be the env's own ``env.unwrapped.model`` (default: found
            from ``observation_space``).
        temperature: sampling temperature; logits are divided by it before the softmax (default: the
            env's temperature, else 1.0). It must equal the env's, which measures the KL at its own.
        value_head_init_std: std of the value head's initial weights; 0 starts every value at 0, so the
            first value-loss gradients do not jolt the shared LM.
        use_sde: passed by SB3's on-policy algorithms; gSDE has no meaning for token actions.
        optimizer_class, optimizer_kwargs: as in SB3 (Adam with eps 1e-5 by default). The optimizer
            holds the LM's trainable parameters and the value head's.

    Raises:
        ValueError: no model can be found, the model is another env's, vocabularies or temperatures
            disagree.
        TypeError: the spaces are not a textrl env's.
    """

    def __init__(
        self,
        observation_space: spaces.Space,
        action_space: spaces.Space,
        lr_schedule: Schedule,
        model: nn.Module | None = None,
        temperature: float | None = None,
        value_head_init_std: float = 0.0,
        use_sde: bool = False,
        optimizer_class: type[torch.optim.Optimizer] = torch.optim.Adam,
        optimizer_kwargs: dict[str, Any] | None = None,
    ) -> None:
        _check_spaces(observation_space, action_space)
        if use_sde:
            raise ValueError("use_sde=True (gSDE) is for continuous actions; token actions are categorical")
        model, temperature = _find_model(observation_space, model, temperature)
        n_actions = int(action_space.n)  # type: ignore[attr-defined]
        if _model_vocab_size(model) < n_actions:  # more is a padded vocabulary: the extra logits are dropped
            raise ValueError(
                f"the model emits {_model_vocab_size(model)} logits per token but the env's action space is "
                f"Discrete({n_actions}); actions are token ids, so every one needs a logit. Train the env's "
                "own model (the default), or resize its embeddings: "
                f"model.resize_token_embeddings({n_actions})"
            )
        # The parent builds its networks in _build(), before `model` could be attached (nn.Module
        # forbids assigning submodules before its __init__), so _build() is a no-op and the LM, the
        # value head and the optimizer are set up below.
        super().__init__(
            observation_space,
            action_space,
            lr_schedule,
            net_arch=[],
            ortho_init=False,
            optimizer_class=optimizer_class,
            optimizer_kwargs=optimizer_kwargs,
        )
        self.model = model.eval()
        self.temperature = float(temperature)
        self.value_head_init_std = float(value_head_init_std)
        self.value_head = _value_head(model, self.value_head_init_std, device=next(model.parameters()).device)
        params = [p for p in self.parameters() if p.requires_grad]
        self.optimizer = self.optimizer_class(params, lr=lr_schedule(1), **self.optimizer_kwargs)  # type: ignore[call-arg]

    def _build(self, lr_schedule: Schedule) -> None:
        """Nothing to build here: the LM and the value head are attached in ``__init__``."""

    def _get_constructor_parameters(self) -> dict[str, Any]:
        # No `model`: it is found again from the env's observation space (see the module docstring).
        return dict(
            observation_space=self.observation_space,
            action_space=self.action_space,
            lr_schedule=self._dummy_schedule,
            temperature=self.temperature,
            value_head_init_std=self.value_head_init_std,
            optimizer_class=self.optimizer_class,
            optimizer_kwargs=self.optimizer_kwargs,
        )

    # ------------------------------------------------------------------ modes and devices

    def train(self, mode: bool = True) -> TextRLSB3Policy:
        """Set the training flag but keep every submodule in eval mode (dropout off)."""
        set_training_flag(self, mode)
        return self

    def to(self, *args: Any, **kwargs: Any) -> TextRLSB3Policy:
        """Move dtype/device, refusing a device other than the env model's (the env scores with it)."""
        device = torch._C._nn._parse_to(*args, **kwargs)[0]
        current = next(self.model.parameters()).device
        if device is not None and not _same_device(torch.device(device), current):
            raise ValueError(
                f"TextRLSB3Policy trains the env's own model, which lives on {current}; moving it to {device} "
                f"would leave the env computing its rewards on the wrong device. Pass device='{current}' to the "
                "SB3 algorithm, or build the env on the device you want (gym.make(id, device=...))"
            )
        return super().to(*args, **kwargs)

    # ------------------------------------------------------------------ the networks

    def _heads(self, obs: PyTorchObs) -> tuple[torch.Tensor, torch.Tensor]:
        """``(next-token logits (B, V), values (B, 1))`` in one forward of the LM."""
        # int64 again, whatever SB3 stored; a bare tensor (not the env's dict) is rejected there.
        ids, mask, _ = obs_to_tensors(cast(Mapping[str, Any], obs), self.device)
        # Trailing right padding becomes left padding, so every row's next-token logits are in the
        # last column and only that column is projected onto the vocabulary.
        aligned_ids, aligned_mask = right_align(ids, mask)
        out = _run_lm(self.model, aligned_ids, aligned_mask, keep=1, hidden=True)
        # Drop the logits of ids past the action space (a padded vocabulary): never sampled, and
        # every softmax over the real tokens, as the env measures its log-probs.
        n_actions = int(self.action_space.n)  # type: ignore[attr-defined]
        logits = real_vocab_logits(out.logits[:, -1], n_actions)  # (B, V)
        hidden = out.hidden_states[-1][:, -1]  # (B, H) at the last real token
        values = self.value_head(hidden.to(self.value_head.weight.dtype))  # (B, 1)
        # A full response is a state the env always ends in: its value is 0 (see the module docstring).
        values = values * (1 - mask[:, -1:]).to(values.dtype)
        return logits, values

    def _distribution(self, logits: torch.Tensor) -> Distribution:
        assert isinstance(self.action_dist, CategoricalDistribution)
        # The temperature divides the logits before the softmax, as the env measures its log-probs.
        return self.action_dist.proba_distribution(action_logits=logits.float() / self.temperature)

    # ------------------------------------------------------------------ SB3's policy interface

    def forward(
        self, obs: PyTorchObs, deterministic: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(actions (B,), values (B, 1), log_prob (B,))`` for a batch of observations."""
        logits, values = self._heads(obs)
        distribution = self._distribution(logits)
        actions = distribution.get_actions(deterministic=deterministic)
        return actions, values, distribution.log_prob(actions)

    def evaluate_actions(
        self, obs: PyTorchObs, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(values (B, 1), log_prob (B,), entropy (B,))`` of ``actions`` (with grad)."""
        logits, values = self._heads(obs)
        distribution = self._distribution(logits)
        entropy = distribution.entropy()
        assert entropy is not None  # categorical distributions always have one
        return values, distribution.log_prob(actions.long().reshape(-1)), entropy

    def get_distribution(self, obs: PyTorchObs) -> Distribution:
        """The next-token distribution at each observation."""
        return self._distribution(self._heads(obs)[0])

    def predict_values(self, obs: PyTorchObs) -> torch.Tensor:
        """Values ``(B, 1)``; 0 for observations with a full response."""
        return self._heads(obs)[1]

    def _predict(self, observation: PyTorchObs, deterministic: bool = False) -> torch.Tensor:
        return self.get_distribution(observation).get_actions(deterministic=deterministic)


def _check_spaces(observation_space: spaces.Space, action_space: spaces.Space) -> None:
    keys = set(getattr(observation_space, "spaces", {}) or {})
    if not isinstance(observation_space, spaces.Dict) or keys != {"input_ids", "attention_mask"}:
        raise TypeError(
            "TextRLSB3Policy needs a textrl env's observation space, Dict(input_ids, attention_mask), "
            f"got {observation_space}; build the env with gym.make('textrl/...') or TextGenerationEnv"
        )
    if not isinstance(action_space, spaces.Discrete):
        raise TypeError(f"TextRLSB3Policy needs a Discrete(vocab_size) action space, got {action_space}")


def _find_model(
    observation_space: spaces.Space, model: nn.Module | None, temperature: float | None
) -> tuple[nn.Module, float]:
    """The env's model and temperature, from ``policy_kwargs`` or from the env that made the space."""
    env = env_for_space(observation_space)
    if model is None:
        if env is None:
            raise ValueError(
                "TextRLSB3Policy cannot find the language model to train: the observation space was not "
                "created by a live textrl env (a copy, e.g. after PPO.load, belongs to no env). Pass it: "
                "PPO(TextRLSB3Policy, env, policy_kwargs={'model': env.unwrapped.model}), or when loading "
                "PPO.load(path, env=env, custom_objects={'observation_space': env.observation_space})"
            )
        model = env.model
    elif env is not None and model is not env.model:
        raise ValueError(
            "policy_kwargs['model'] is not the model of the env being trained; the env would measure its KL "
            "against a module the optimizer never updates. Pass policy_kwargs={'model': env.unwrapped.model} "
            "or leave 'model' out"
        )
    elif not any(model is m for m in registered_models()):
        warnings.warn(
            "policy_kwargs['model'] belongs to no live textrl env; train the env's own model "
            "(env.unwrapped.model) so the env's KL penalty is measured against the model being trained",
            stacklevel=3,
        )
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a causal LM module (env.unwrapped.model), got {type(model).__name__}")
    env_temperature = None if env is None else float(env.temperature)
    if temperature is None:
        temperature = env_temperature if env_temperature is not None else 1.0
    elif env_temperature is not None and float(temperature) != env_temperature:
        raise ValueError(
            f"temperature={temperature} differs from the env's temperature {env_temperature}; the env measures "
            "log-probs and the KL at its own temperature, so leave temperature out (it defaults to the env's)"
        )
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    return model, float(temperature)


def _same_device(a: torch.device, b: torch.device) -> bool:
    """Whether two devices are the same, taking ``cuda`` without an index to be any ``cuda:i``."""
    return a.type == b.type and (a.index is None or b.index is None or a.index == b.index)
