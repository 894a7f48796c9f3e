"""The single text-generation environment: one token per step, reward at the end."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from reward_models import RewardModel
from textrl_env.core import CoreAttributes, GenerationCore
from textrl_env.models import ModelLike
from textrl_env.space_registry import register_space

ObsType = dict[str, np.ndarray]


class TextGenerationEnv(CoreAttributes, gym.Env[ObsType, np.int64]):
    """A language model writes a response to a prompt, one token per step.

    ## Description
    Each episode starts from a prompt (chosen with the env's seeded RNG, or given in
    ``reset(options={"prompt": ...})``). Every action appends one token to the response. When the
    response ends, a reward model scores the text and a KL penalty to a frozen reference model
    (by default a copy of ``model`` made at construction) keeps the policy close to where it started.
    ``model`` is the policy: an agent built on this env trains that very module.

    ## Action Space
    ``Discrete(vocab_size)``: the id of the next token.

    ## Observation Space
    ``Dict(input_ids=Box(0, vocab_size - 1, (P + T,), int64), attention_mask=Box(0, 1, (P + T,), int64))``
    where ``P`` is the prompt window and ``T`` is ``max_new_tokens``. The prompt is left-padded in
    columns ``[0, P)``; response tokens fill ``[P, P + t)``; later columns are PAD with mask 0.

    ## Rewards
    0 on every step but the last. On the last step: ``score - kl_coef * sum_t KL_t`` where ``score``
    is the reward model's score of the completion and ``KL_t`` the per-token estimate (``k1``,
    ``k2`` or ``k3``) between the policy and the reference. So the episode return is
    ``score - kl_coef * sum(KL)``. ``info`` on the last step carries ``score``, ``kl``, ``logprobs``,
    ``ref_logprobs`` (``(T,)`` float32 arrays, 0 past the response), ``response_length``, ``prompt``
    and ``completion``.

    ## Starting State
    The chosen prompt, left-padded, with an empty response.

    ## Episode End
    Terminated when the action is the EOS token. Truncated when ``max_new_tokens`` tokens were
    emitted without EOS.

    ## Arguments
    - ``model``: the policy: a transformers model id, a local path, or a causal LM module.
    - ``tokenizer``: its tokenizer (loaded from the model's id/path when None); needs a PAD token.
    - ``prompts``: the prompts episodes start from.
    - ``reward_model``: ``reward(prompts, completions) -> list[float]``, or a Hugging Face TRL reward
      function as it is, called ``reward(prompts=..., completions=...)`` (see ``reward_models.protocol``).
    - ``kl_coef`` (0.05), ``kl_estimator`` (``"k1"``): the KL penalty.
    - ``max_new_tokens`` (16): response length limit. ``max_prompt_tokens``: prompt window
      (default: the longest given prompt).
    - ``temperature`` (1.0): sampling temperature the log-probs are measured at.
    - ``ref_model``: the frozen reference (default: a copy of ``model``). ``device``: where the
      models run (default: where ``model`` is).
    - ``on_reward_error`` (``"raise"``): a reward that raises, returns NaN/inf or the wrong number or
      type of values stops with a ``RewardError`` naming the reward, the batch index and the prompt.
      ``"skip"`` drops the episode instead: its return is 0, ``info["reward_error"]`` is True and
      ``env.reward_errors`` counts it (agents give it no weight and log ``rollout/reward_errors``).
    - ``render_mode``: ``"ansi"`` returns the prompt and the response so far as text.

    ## Version History
    - v0: initial version.
    """

    metadata = {"render_modes": ["ansi"], "render_fps": 4}

    def __init__(
        self,
        model: ModelLike,
        tokenizer: Any = None,
        prompts: Sequence[str] = (),
        reward_model: RewardModel | None = None,
        kl_coef: float = 0.05,
        kl_estimator: str = "k1",
        max_new_tokens: int = 16,
        max_prompt_tokens: int | None = None,
        temperature: float = 1.0,
        ref_model: nn.Module | None = None,
        device: str | torch.device | None = None,
        on_reward_error: str = "raise",
        render_mode: str | None = None,
    ) -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(
                f"render_mode must be None or one of {self.metadata['render_modes']}, got {render_mode!r}"
            )
        self.core = GenerationCore(
            model, tokenizer, prompts, reward_model, kl_coef, kl_estimator, max_new_tokens,
            max_prompt_tokens, temperature, ref_model, device, on_reward_error,
        )  # fmt: skip
        self.render_mode = render_mode
        self.action_space = spaces.Discrete(self.core.vocab_size)
        self.observation_space = cast(spaces.Space[ObsType], self.core.observation_space())
        # So stable_baselines3.PPO(TextRLSB3Policy, env), given only this space, can find `model`.
        register_space(self.observation_space, self)
        self._ids = np.zeros(self.core.seq_length, dtype=np.int64)
        self._mask = np.zeros(self.core.seq_length, dtype=np.int64)
        self._t = 0
        self._prompt: str | None = None
        self._done = True

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[ObsType, dict]:
        """Start an episode from a prompt: ``options["prompt"]`` or one drawn with the seeded RNG."""
        super().reset(seed=seed)
        prompt = (options or {}).get("prompt")
        if prompt is None:
            index = int(self.np_random.integers(len(self.core.prompts)))
            prompt = self.core.prompts[index]
            ids, mask = self.core.prompt_ids[index], self.core.prompt_mask[index]
        else:
            ids, mask = self.core.encode_prompt(prompt)
        self._ids[:] = self.core.pad_token_id
        self._mask[:] = 0
        self._ids[: self.core.prompt_length] = ids.cpu().numpy()
        self._mask[: self.core.prompt_length] = mask.cpu().numpy()
        self._t, self._prompt, self._done = 0, prompt, False
        return self._obs(), {"prompt": prompt}

    def step(self, action: Any) -> tuple[ObsType, float, bool, bool, dict]:
        """Append the token ``action``; score the response when it ends."""
        if self._prompt is None:  # set by the first reset()
            raise RuntimeError("step() called before reset(); call env.reset() to start an episode")
        if self._done:
            raise RuntimeError("step() called after the episode ended; call env.reset() to start a new one")
        token = self._check_action(action)
        column = self.core.prompt_length + self._t
        self._ids[column], self._mask[column] = token, 1
        self._t += 1
        terminated = token == self.core.eos_token_id
        truncated = not terminated and self._t >= self.core.max_new_tokens
        if not (terminated or truncated):
            return self._obs(), 0.0, False, False, {}
        self._done = True
        reward, info = self._finish()
        return self._obs(), reward, terminated, truncated, info

    def _finish(self) -> tuple[float, dict[str, Any]]:
        ids = torch.as_tensor(self._ids, device=self.core.device).unsqueeze(0)  # (1, P + T)
        mask = torch.as_tensor(self._mask, device=self.core.device).unsqueeze(0)
        assert self._prompt is not None
        result = self.core.score(ids, mask, [self._prompt])
        info = {
            "score": float(result.score[0]),
            # Fixed (T,) arrays, zero past the response, so SyncVectorEnv can stack them.
            "kl": result.kl[0].float().cpu().numpy(),
            "logprobs": result.logprobs[0].float().cpu().numpy(),
            "ref_logprobs": result.ref_logprobs[0].float().cpu().numpy(),
            "response_length": self._t,
            "prompt": self._prompt,
            "completion": result.completions[0],
            "reward_error": bool(result.reward_error[0]),
        }
        return float(result.reward[0]), info

    def _check_action(self, action: Any) -> int:
        array = np.asarray(action)
        if array.size != 1 or not np.issubdtype(array.dtype, np.integer):
            raise ValueError(f"action must be one integer token id, got {action!r}")
        token = int(array.reshape(()))
        if not 0 <= token < self.core.vocab_size:
            raise ValueError(
                f"action {token} is not a token id of this env's vocabulary (0 <= id < {self.core.vocab_size}); "
                "sample actions from env.action_space or from the policy's logits"
            )
        return token

    def _obs(self) -> ObsType:
        return {"input_ids": self._ids.copy(), "attention_mask": self._mask.copy()}

    def render(self) -> str | None:
        """With ``render_mode="ansi"``: the prompt and the response so far."""
        if self.render_mode != "ansi" or self._prompt is None:
            return None
        start = self.core.prompt_length
        response = self._ids[start : start + self._t].tolist()
        return self._prompt + self.core.tokenizer.decode(response, skip_special_tokens=True)
