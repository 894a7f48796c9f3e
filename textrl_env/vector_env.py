"""The native vector environment: a batch of episodes as tensors on the model's device.

The env owns its model (the policy an agent trains), the frozen KL reference, the KV cache
(:mod:`textrl_env.decoder`), scoring and the KL coefficient. An agent configures it only through
:meth:`TextGenerationVectorEnv.attach_policy` (whose logits measure ``info["logprobs"]``, which
model is the reference), :meth:`~TextGenerationVectorEnv.set_kl_coef` and
:meth:`~TextGenerationVectorEnv.without_autoreset` (see :mod:`agents.attach`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any, Literal

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from torch import nn

from reward_models import RewardModel
from textrl_env.core import CoreAttributes, GenerationCore
from textrl_env.decoder import CachedDecoder
from textrl_env.logprobs import real_vocab_logits, token_logprobs
from textrl_env.models import ModelLike
from textrl_env.vector_info import ended_info
from textrl_env.vector_inputs import check_actions, reset_prompts, row_seeds

TensorObs = dict[str, torch.Tensor]
LogitsSource = Literal["env", "policy"]
LOGITS_SOURCES: tuple[str, ...] = ("env", "policy")


class TextGenerationVectorEnv(CoreAttributes, VectorEnv):
    """``num_envs`` copies of :class:`~textrl_env.TextGenerationEnv` stepped as one batch.

    ## Description
    Same episodes, rewards and observations as ``gym.make_vec(id, num_envs, vectorization_mode="sync")``
    for the same seeds and actions, but the batch lives as tensors on the model's device, actions
    come in as a tensor, and the policy's keys/values are kept between steps: each step runs the
    model on one new token per row, never on the whole sequence again. The env's own forward gives
    :attr:`next_token_logits`, so a sampling agent needs no forward pass of its own, and the
    log-probs of the taken tokens come from it (the reference model runs once per finished episode).

    ## Action Space
    ``MultiDiscrete([vocab_size] * num_envs)``; pass a ``(num_envs,)`` tensor or array of token ids.

    ## Observation Space
    The single env's ``Dict`` batched: ``input_ids`` and ``attention_mask`` of shape
    ``(num_envs, P + T)``, returned as int64 tensors on the model's device.

    ## Rewards
    As the single env, per row: ``score - kl_coef * sum(KL)`` on the row's last step, 0 otherwise.
    ``info`` holds ``score`` ``(N,)``, ``kl``, ``logprobs``, ``ref_logprobs`` and ``response_mask``
    ``(N, T)`` tensors, and ``prompt`` / ``completion`` arrays; each key has a boolean ``_key``
    entry marking the rows that ended this step.

    ## Episode End
    Per row, as the single env. Autoreset mode ``NEXT_STEP`` (default): the step after a row ended
    restarts it with a new prompt, ignoring its action (reward 0, not terminated, not truncated).
    ``autoreset_mode="Disabled"``: an ended row stays ended until ``reset(options={"reset_mask": m})``.

    ## Arguments
    Those of :class:`~textrl_env.TextGenerationEnv`, plus ``num_envs``, ``autoreset_mode`` and
    ``logits_source`` (where the log-probs of the taken tokens come from): ``"env"`` (default)
    measures them with ``model``'s own cached forward (:attr:`next_token_logits`); ``"policy"`` is
    for a policy with another network, which must hand its logits with :meth:`set_policy_logits`
    before every step (forgetting it raises an error). An agent sets it, and the KL reference,
    through :meth:`attach_policy`.

    ## Gymnasium's vector wrappers
    They do NumPy arithmetic on rewards and dones: wrap the env in
    :class:`textrl_env.wrappers.TorchToNumpy` first, e.g.
    ``RecordEpisodeStatistics(TorchToNumpy(envs))``. The env itself keeps returning device tensors.

    ## Host synchronisation
    One boolean per step crosses to the host (which rows ended), because finished responses must be
    decoded to text for the reward model. Everything else stays on the device.

    ## Version History
    - v0: initial version.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP, "render_modes": []}

    def __init__(
        self,
        model: ModelLike,
        tokenizer: Any = None,
        prompts: Sequence[str] = (),
        reward_model: RewardModel | None = None,
        num_envs: int = 8,
        kl_coef: float = 0.05,
        kl_estimator: str = "k1",
        max_new_tokens: int = 16,
        max_prompt_tokens: int | None = None,
        temperature: float = 1.0,
        ref_model: nn.Module | None = None,
        device: str | torch.device | None = None,
        on_reward_error: str = "raise",
        logits_source: LogitsSource = "env",
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        **renamed: Any,
    ) -> None:
        if "policy_logits" in renamed:
            raise TypeError(
                "TextGenerationVectorEnv: policy_logits= is now logits_source=: 'model' became 'env' and "
                "'external' became 'policy'"
            )
        if renamed:
            raise TypeError(f"TextGenerationVectorEnv got unexpected keyword arguments {sorted(renamed)}")
        if isinstance(num_envs, bool) or not (isinstance(num_envs, int) and num_envs >= 1):
            raise ValueError(f"num_envs must be an int >= 1, got {num_envs!r}")
        self.core = GenerationCore(
            model, tokenizer, prompts, reward_model, kl_coef, kl_estimator, max_new_tokens,
            max_prompt_tokens, temperature, ref_model, device, on_reward_error,
        )  # fmt: skip
        self.num_envs = num_envs
        self.single_observation_space = self.core.observation_space()
        self.single_action_space = spaces.Discrete(self.core.vocab_size)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        n, length, device_ = num_envs, self.core.seq_length, self.core.device
        self._ids = torch.full((n, length), self.core.pad_token_id, dtype=torch.long, device=device_)
        self._mask = torch.zeros((n, length), dtype=torch.long, device=device_)
        self._t = torch.zeros(n, dtype=torch.long, device=device_)
        self._logprobs = torch.zeros((n, self.core.max_new_tokens), dtype=torch.float32, device=device_)
        self._rows = torch.arange(n, device=device_)
        self._all_rows = torch.ones(n, dtype=torch.bool, device=device_)
        self._row_prompts: list[str] = [""] * n
        self._row_rngs: list[np.random.Generator] | None = None
        # Rows whose action the next step ignores: under NEXT_STEP those that ended last step (they
        # restart), under DISABLED every row that ended and was not reset since.
        self._idle = np.zeros(n, dtype=bool)
        self._score_together = False  # see without_autoreset
        self._unscored = np.zeros(n, dtype=bool)  # rows that ended and wait for the batch's scoring
        self._set_autoreset_mode(autoreset_mode)
        self._decoder = CachedDecoder(self.core.model, n, length, self.core.vocab_size)
        self._logits_source: LogitsSource = "env"
        self._handed_logits: torch.Tensor | None = None
        self.attach_policy(logits_source=logits_source)

    @property
    def autoreset_mode(self) -> AutoresetMode:
        """``NEXT_STEP`` (default, as ``SyncVectorEnv``) or ``DISABLED``.

        Under ``DISABLED`` a row that ended stays ended (its actions are ignored, its reward is 0)
        until ``reset(options={"reset_mask": mask})`` restarts it: an agent that wants one episode
        per row pays for no second episode it would throw away.
        """
        return self.metadata["autoreset_mode"]

    def _set_autoreset_mode(self, mode: AutoresetMode | str) -> None:
        try:
            mode = AutoresetMode(mode)
        except (ValueError, TypeError) as err:
            names = [m.value for m in (AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED)]
            raise ValueError(
                f"autoreset_mode must be one of {names} (or the AutoresetMode), got {mode!r}"
            ) from err
        if mode not in (AutoresetMode.NEXT_STEP, AutoresetMode.DISABLED):
            raise ValueError(
                f"autoreset_mode must be NEXT_STEP or DISABLED, got {mode}; SAME_STEP is not supported"
            )
        self.metadata = {**type(self).metadata, "autoreset_mode": mode}

    @contextlib.contextmanager
    def without_autoreset(self, score_together: bool = False) -> Iterator[TextGenerationVectorEnv]:
        """Run the block under ``DISABLED`` autoreset, then restore the mode it had.

        What agents use to collect one episode per row: a row that ended stays ended instead of
        starting an episode nobody keeps. Call ``reset()`` first inside the block.

        Args:
            score_together: score every row in one batched pass at the step where the last row
                ends, instead of a pass per step at which some rows end. Each row still reports
                ``terminated``/``truncated`` at its own step; its reward (0 until then) and its
                ``info`` entries (``score``, ``kl``, ...) come at that last step. One teacher-forced
                pass of each model and one reward call per batch instead of a dozen: what a
                collector that reads ``info`` once every row has ended wants.
        """
        mode, together = self.autoreset_mode, self._score_together
        self._set_autoreset_mode(AutoresetMode.DISABLED)
        self._score_together = bool(score_together)
        try:
            yield self
        finally:
            self._set_autoreset_mode(mode)
            self._score_together = together
            self._unscored[:] = False

    # ------------------------------------------------------------------ the seam to an agent

    @property
    def logits_source(self) -> LogitsSource:
        """``"env"``: log-probs from the env's own forward of ``model``; ``"policy"``: from :meth:`set_policy_logits`."""
        return self._logits_source

    @property
    def next_token_logits(self) -> torch.Tensor:
        """``(num_envs, V)`` raw next-token logits of ``model`` at each row's current state."""
        return self._decoder.next_token_logits

    def attach_policy(self, logits_source: LogitsSource = "env", reference: nn.Module | None = None) -> None:
        """Attach the acting policy: the one way an agent configures the env it trains on.

        Args:
            logits_source: ``"env"`` when the policy's next-token logits are exactly ``model``'s (it
                samples from :attr:`next_token_logits`, no second forward); ``"policy"`` when it has
                another head or network and hands its logits with :meth:`set_policy_logits` before
                every step, so ``info["logprobs"]`` and the KL are the acting policy's.
            reference: a KL reference to use instead of the env's frozen copy (a LoRA policy's model
                with its adapter switched off); None keeps the current one. The env's copy is released.
        """
        if logits_source not in LOGITS_SOURCES:
            raise ValueError(
                f"logits_source must be one of {LOGITS_SOURCES}, got {logits_source!r} ('env': the env's own "
                "forward of its model; 'policy': the policy hands its logits with set_policy_logits)"
            )
        self._logits_source = logits_source
        self._handed_logits = None
        if reference is not None:
            self.core.set_reference(reference)

    def reset(
        self, *, seed: int | Sequence[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[TensorObs, dict[str, Any]]:
        """Restart every row, or the rows of ``options["reset_mask"]`` (a bool array, as Gymnasium's).

        An int seed seeds row ``i`` with ``seed + i``, as ``SyncVectorEnv`` does. ``options["prompt"]``
        is one prompt for every row or a list with one per row.
        """
        options = dict(options or {})
        mask = self._reset_mask(options.pop("reset_mask", None))
        super().reset(seed=seed if isinstance(seed, int) else None)
        seeds = row_seeds(seed, self.num_envs)
        if seeds is not None or self._row_rngs is None:
            fresh = [seeding.np_random(s)[0] for s in (seeds or [None] * self.num_envs)]
            self._row_rngs = fresh if self._row_rngs is None else [
                new if reset else old for new, old, reset in zip(fresh, self._row_rngs, mask, strict=True)
            ]  # fmt: skip
        prompts = reset_prompts(options, self.num_envs)
        rows = np.flatnonzero(mask)
        if self._unscored[rows].any() and not mask.all():
            raise RuntimeError(
                f"rows {np.flatnonzero(self._unscored & mask).tolist()} ended but are not scored yet: under "
                "without_autoreset(score_together=True) a row is scored at the step the last row ends; reset "
                "them after that step, or collect without score_together"
            )
        if mask.all():
            self._decoder.clear()  # a full reset starts a fresh cache
        self._restart_rows(rows, None if prompts is None else [prompts[i] for i in rows])
        self._idle[rows] = False
        self._unscored[rows] = False
        return self._obs(), {"prompt": np.array(self._row_prompts, dtype=object)}

    def _reset_mask(self, mask: Any) -> np.ndarray:
        if mask is None:
            return np.ones(self.num_envs, dtype=bool)
        mask = np.asarray(mask)
        if mask.shape != (self.num_envs,) or mask.dtype != np.bool_ or not mask.any():
            raise ValueError(
                f"options['reset_mask'] must be a bool array of shape ({self.num_envs},) with at least one True, "
                f"got {mask!r}"
            )
        if not self._decoder.started and not mask.all():
            raise RuntimeError("the first reset() must reset every row; drop options['reset_mask']")
        return mask

    def step(
        self, actions: torch.Tensor | np.ndarray | Sequence[int]
    ) -> tuple[TensorObs, torch.Tensor, torch.Tensor, torch.Tensor, dict[str, Any]]:
        """Append one token per row; score the rows whose response ended."""
        if not self._decoder.started:
            raise RuntimeError("step() called before reset(); call envs.reset() first")
        idle = self._idle.copy()
        # A host-to-device copy waits for the device to finish its queued work: skip it on the
        # common step, where every row acts.
        active = torch.as_tensor(~idle, device=self.core.device) if idle.any() else self._all_rows  # (N,)
        actions = check_actions(actions, active, self.num_envs, self.core.vocab_size, self.core.pad_token_id)
        slot = self._t.clamp(max=self.core.max_new_tokens - 1)  # (N,) response slot of this token
        column = self.core.prompt_length + slot
        taken = token_logprobs(self._step_logits(), actions, self.core.temperature)  # (N,)
        if idle.any():  # idle rows keep what their slot holds
            taken = torch.where(active, taken, self._logprobs[self._rows, slot])
            actions_in = torch.where(active, actions, self._ids[self._rows, column])
            self._mask[self._rows, column] = torch.where(active, 1, self._mask[self._rows, column])
        else:  # every row takes a token (the common step): no gathers needed
            actions_in = actions
            self._mask[self._rows, column] = 1
        self._ids[self._rows, column] = actions_in
        self._logprobs[self._rows, slot] = taken
        self._t += active.long()
        terminated = active & (actions == self.core.eos_token_id)
        truncated = active & ~terminated & (self._t >= self.core.max_new_tokens)
        ended = (terminated | truncated).cpu().numpy()  # the one host sync per step
        rewards = torch.zeros(self.num_envs, dtype=torch.float32, device=self.core.device)
        scored = ended
        if self._score_together:  # hold the ended rows until no row is left running
            self._unscored |= ended
            scored = self._unscored.copy() if (idle | ended).all() else np.zeros_like(ended)
            self._unscored &= ~scored
        info = self._finish(scored, rewards) if scored.any() else {}
        going_on = ~idle & ~ended  # known on the host: skip the forward when no row goes on
        if going_on.any():
            continuing = active & ~(terminated | truncated)
            drop = self.autoreset_mode == AutoresetMode.DISABLED  # ended rows stay ended until a reset
            self._decoder.advance(actions, continuing, going_on, self.core.pad_token_id, drop_ended=drop)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            if idle.any():
                self._restart_rows(np.flatnonzero(idle))
            self._idle = ended
        else:
            self._idle = idle | ended
        obs = self._obs()  # rows that ended keep their final observation until the next step
        return obs, rewards, terminated, truncated, info

    def set_policy_logits(self, logits: torch.Tensor) -> None:
        """Hand over the policy's next-token logits ``(num_envs, V)`` for the coming step.

        Needed when the acting policy is not ``model`` itself (a custom policy with its own head or
        network): attach it with ``logits_source="policy"`` and call this before every ``step``, so
        ``info["logprobs"]`` and the KL are measured for the policy that acted.

        A policy on a model with a padded vocabulary may hand all of its ``(num_envs, V')`` logits,
        ``V' >= V``: the columns past the tokenizer's ``V`` tokens are dropped, as the env drops its own.
        """
        if logits.dim() != 2 or logits.shape[0] != self.num_envs or logits.shape[1] < self.core.vocab_size:
            raise ValueError(
                f"logits must have shape ({self.num_envs}, {self.core.vocab_size}) (num_envs, vocab_size), "
                f"or more columns for a padded vocabulary, got {tuple(logits.shape)}"
            )
        logits = real_vocab_logits(logits.detach(), self.core.vocab_size)  # (N, V)
        self._handed_logits = logits.to(self.core.device, torch.float32)

    def _step_logits(self) -> torch.Tensor:
        if self._logits_source == "env":
            return self.next_token_logits
        if self._handed_logits is None:
            raise RuntimeError(
                "this env's logits_source is 'policy': it measures log-probs with the acting policy's "
                "logits; call envs.set_policy_logits(logits) before every step()"
            )
        logits, self._handed_logits = self._handed_logits, None
        return logits

    def _finish(self, ended: np.ndarray, rewards: torch.Tensor) -> dict[str, Any]:
        """Score the rows that ended in one batched pass and build the vector ``info``."""
        rows = torch.as_tensor(np.flatnonzero(ended), device=self.core.device)
        t_max = int(self._t[rows].max())
        width = self.core.prompt_length + t_max
        prompts = [self._row_prompts[i] for i in np.flatnonzero(ended)]
        result = self.core.score(
            self._ids[rows, :width], self._mask[rows, :width], prompts, logprobs=self._logprobs[rows, :t_max]
        )
        rewards[rows] = result.reward.float()
        response_mask = self._mask[:, self.core.prompt_length :]
        return ended_info(
            result, ended, rows, t_max, response_mask, self._row_prompts, self.core.max_new_tokens
        )

    @torch.no_grad()
    def _restart_rows(self, rows_np: np.ndarray, prompts: list[str] | None = None) -> None:
        """Give each row in ``rows_np`` a new prompt (given, or drawn) and prefill its keys/values."""
        assert self._row_rngs is not None
        if prompts is None:  # autoreset, or reset without options: each row draws from its own RNG
            prompts = [
                self.core.prompts[int(self._row_rngs[i].integers(len(self.core.prompts)))] for i in rows_np
            ]
        for i, prompt in zip(rows_np, prompts, strict=True):
            self._row_prompts[i] = prompt
        prompt_ids, prompt_mask = self.core.encode_prompt_batch(prompts)  # (R, P)
        rows = torch.as_tensor(rows_np, device=self.core.device)
        p = self.core.prompt_length
        self._ids[rows] = self.core.pad_token_id
        self._ids[rows, :p] = prompt_ids
        self._mask[rows] = 0
        self._mask[rows, :p] = prompt_mask
        self._t[rows] = 0
        self._logprobs[rows] = 0.0
        self._decoder.prefill(rows, prompt_ids, prompt_mask, room=self.core.max_new_tokens)

    def _obs(self) -> TensorObs:
        return {"input_ids": self._ids.clone(), "attention_mask": self._mask.clone()}
