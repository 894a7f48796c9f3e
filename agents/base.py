"""What every textrl algorithm shares: Stable-Baselines3's surface on a text-generation vector env.

``Algo(policy, env, **config)``, ``learn``, ``predict``, ``save`` / ``Algo.load``,
``set_random_seed``, callbacks and logging live here; each algorithm file only says how a batch of
episodes becomes a gradient step (:meth:`BaseAlgorithm._update`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import os
import random
import time
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
import torch

from agents.callbacks import CallbackRunner, MaybeCallback
from agents.checkpoint import get_rng_state, load_checkpoint, save_checkpoint, set_rng_state
from agents.collect import Episodes, collect_episodes
from agents.config import AlgoConfig
from agents.logger import Logger
from agents.lora import use_adapter_off_reference
from agents.policies import POLICY_ALIASES, LMPolicy, check_policy_vocab, resolve_policy
from reward_models.kl_control import make_kl_controller
from reward_models.shaping import RunningMeanStd, missing_eos_penalty
from textrl_env import TextGenerationEnv, TextGenerationVectorEnv


def as_vector_env(env: Any, n_envs: int, device: str) -> TextGenerationVectorEnv:
    """The native vector env behind ``env`` (an id string is made with ``n_envs`` rows)."""
    if isinstance(env, str):
        kwargs: dict[str, Any] = {} if device == "auto" else {"device": device}
        env = gym.make_vec(env, num_envs=n_envs, vectorization_mode="vector_entry_point", **kwargs)
    inner = getattr(env, "unwrapped", env)
    if isinstance(inner, TextGenerationVectorEnv):
        return inner
    hint = ""
    if isinstance(inner, TextGenerationEnv):
        hint = " (a single env was given: agents train on a batch)"
    raise TypeError(
        f"agents train on textrl's native vector env, got {type(env).__name__}{hint}; build one with "
        "gym.make_vec('textrl/Sentiment-v0', num_envs=16, vectorization_mode='vector_entry_point') "
        "or pass the env id string"
    )


def shares_env_logits(policy: Any, env: TextGenerationVectorEnv) -> bool:
    """True when the policy's logits are exactly the env model's, so the env's forward can be reused."""
    overridden = type(policy).forward is not LMPolicy.forward or (
        type(policy).sequence_logprobs is not LMPolicy.sequence_logprobs
    )
    if not isinstance(policy, LMPolicy) or overridden:
        return False
    model: Any = policy.model
    model = model.get_base_model() if hasattr(model, "get_base_model") else model
    return model is env.model and policy.temperature == env.temperature


@dataclasses.dataclass
class Evaluation:
    """Completions of :meth:`BaseAlgorithm.evaluate`, with the env's score and summed KL of each."""

    prompts: list[str]
    completions: list[str]
    scores: torch.Tensor  # (N,)
    kl: torch.Tensor  # (N,) sum over the response of the per-token KL to the reference

    @property
    def score_mean(self) -> float:
        return float(self.scores.mean())

    @property
    def kl_mean(self) -> float:
        return float(self.kl.mean())


class BaseAlgorithm:
    """Base of the textrl algorithms (see the module docstring).

    Args:
        policy: a policy alias (``"LMPolicy"``, ``"LMActorCriticPolicy"``) or class; it is built as
            ``policy(env.model, tokenizer=env.tokenizer, temperature=env.temperature, **policy_kwargs)``
            so the env scores the very model being trained.
        env: a native vector env, or a registered id (made with ``n_envs`` rows).
        device: ``"auto"`` (the env's device), or a device the env's model must already be on.
        n_envs: rows of the vector env made from an id (ignored for an env object).
        policy_kwargs: extra constructor arguments of the policy.
        seed: seeds Python, NumPy, torch and the sampler.
        tensorboard_log: folder for ``progress.csv`` and TensorBoard files; None logs to the console only.
        verbose: 0 silent, 1 a rich table every ``log_interval`` iterations.
        **config: fields of the algorithm's config dataclass.
    """

    algo_name: ClassVar[str] = ""
    config_class: ClassVar[type[AlgoConfig]] = AlgoConfig

    def __init__(
        self,
        policy: str | type,
        env: Any,
        *,
        device: str = "auto",
        n_envs: int = 16,
        policy_kwargs: dict[str, Any] | None = None,
        seed: int | None = None,
        tensorboard_log: str | os.PathLike | None = None,
        verbose: int = 1,
        **config: Any,
    ) -> None:
        unknown = set(config) - self.config_class.field_names()
        if unknown:
            name = sorted(unknown)[0]
            close = difflib.get_close_matches(name, sorted(self.config_class.field_names()), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"{self.algo_name} got an unknown setting {name!r}.{hint}")
        self.config = self.config_class(**config)
        self.env = as_vector_env(env, n_envs, device)
        if device != "auto" and torch.device(device) != self.env.device:
            raise ValueError(
                f"device={device!r} but the env's model is on {self.env.device}; build the env on the same device "
                f"(gym.make_vec(id, num_envs=..., vectorization_mode='vector_entry_point', device={device!r}))"
            )
        self.device = self.env.device
        self._check_batch(self.env.num_envs)
        # Seed before building the policy (as SB3 does): a custom head, a value head or LoRA
        # weights are initialised from the global RNG.
        self.generator = torch.Generator(device=self.device)
        self.seed = seed
        if seed is not None:
            self.set_random_seed(seed)
        self.policy_class = resolve_policy(policy)
        if not issubclass(self.policy_class, torch.nn.Module):
            raise TypeError(
                f"policy class {self.policy_class.__name__} must be a torch.nn.Module (the agent trains its "
                "parameters); subclass agents.policies.BasePolicy or LMPolicy"
            )
        self.policy_kwargs = dict(policy_kwargs or {})
        self.policy = self.policy_class(
            self.env.model,
            tokenizer=self.env.tokenizer,
            temperature=self.env.temperature,
            **self.policy_kwargs,
        ).to(self.device)
        vocab = getattr(self.policy, "vocab_size", None)
        if vocab is not None:
            check_policy_vocab(int(vocab), int(self.env.single_action_space.n))  # type: ignore[attr-defined]
        if getattr(self.policy, "has_lora", False):
            use_adapter_off_reference(self.env, self.policy)
        self._env_logits = shares_env_logits(self.policy, self.env)
        self.env.policy_logits = "model" if self._env_logits else "external"
        params = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = torch.optim.Adam(params, lr=self.config.learning_rate, eps=self.config.adam_eps)
        init_coef = self.env.kl_coef if self.config.kl_coef is None else self.config.kl_coef
        self.kl_controller = make_kl_controller(
            init_coef, target=self.config.target_kl, horizon=self.config.kl_horizon
        )
        self.env.kl_coef = self.kl_controller.value
        self.reward_stats = RunningMeanStd()
        self.verbose = verbose
        self.tensorboard_log = tensorboard_log
        self.logger = Logger(tensorboard_log, quiet=verbose == 0)
        self.num_timesteps = 0
        self.iteration = 0

    # ------------------------------------------------------------------ hooks for subclasses

    def _check_batch(self, n_envs: int) -> None:
        """Validate the rollout size (one episode per env row) against the config."""
        size = self.config.minibatch_size
        if size is not None and n_envs % size != 0:
            raise ValueError(
                f"a rollout of {n_envs} episodes (one per env row) does not divide into minibatches of {size}; "
                f"choose a minibatch_size that divides {n_envs}, or change num_envs"
            )

    def _rollout_prompts(self) -> list[str]:
        """One prompt per env row, drawn with the agent's own generator (so runs are reproducible)."""
        prompts = self.env.prompts
        index = torch.randint(len(prompts), (self.env.num_envs,), generator=self._cpu_generator)
        return [prompts[i] for i in index.tolist()]

    def _update(self, episodes: Episodes, rewards: torch.Tensor) -> dict[str, Any]:
        """One rollout's gradient steps; returns ``train/...`` statistics."""
        raise NotImplementedError

    # ------------------------------------------------------------------ the SB3 surface

    def learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        progress_bar: bool = False,
        reset_num_timesteps: bool = True,
    ) -> BaseAlgorithm:
        """Train for ``total_timesteps`` more env steps x rows (Stable-Baselines3's unit).

        As in SB3, ``reset_num_timesteps=True`` restarts the counter at 0; pass False to continue a
        run (after :meth:`load`) with the counter and logs going on from where they were.

        Returns:
            self, so ``Algo(...).learn(...)`` chains as in Stable-Baselines3.
        """
        if reset_num_timesteps:
            self.num_timesteps = 0
        target = self.num_timesteps + total_timesteps
        runner = CallbackRunner(callback, self, progress_bar)
        runner.on_training_start(total_timesteps=target)
        while self.num_timesteps < target:
            runner.on_rollout_start()
            start = time.perf_counter()
            episodes = self._collect(runner)
            if episodes is None:
                break
            runner.on_rollout_end()
            rewards = self._sequence_rewards(episodes)
            self.policy.train()
            with self._autocast():
                stats = self._update(episodes, rewards)
            self._after_update(episodes, rewards, stats, time.perf_counter() - start, log_interval)
        runner.on_training_end()
        return self

    def _collect(self, runner: CallbackRunner) -> Episodes | None:
        def on_step() -> bool:
            self.num_timesteps += self.env.num_envs
            return runner.on_step()

        act = None if self._env_logits else self.policy.forward
        self.policy.eval()
        return collect_episodes(self.env, self._rollout_prompts(), act, self.generator, on_step)

    def _sequence_rewards(self, episodes: Episodes) -> torch.Tensor:
        """``score - kl_coef * sum(KL)`` per episode (the env's return), with optional shaping."""
        scores = episodes.scores
        if self.config.missing_eos_penalty is not None:
            scores = missing_eos_penalty(scores, episodes.has_eos, self.config.missing_eos_penalty)
        rewards = scores - self.kl_controller.value * episodes.kl.sum(-1)
        if self.config.normalize_rewards:
            self.reward_stats.update(rewards)
            rewards = self.reward_stats.normalize(rewards, shift_mean=False)
        return rewards

    def _after_update(
        self,
        episodes: Episodes,
        rewards: torch.Tensor,
        stats: dict[str, Any],
        seconds: float,
        log_interval: int,
    ) -> None:
        kl_per_seq = episodes.kl.sum(-1).mean()
        self.kl_controller.update(kl_per_seq, n_steps=self.env.num_envs)
        self.env.kl_coef = self.kl_controller.value
        self.iteration += 1
        tokens = episodes.response_mask.sum()
        record = self.logger.record
        record("rollout/score_mean", episodes.scores.mean())
        record("rollout/reward_mean", rewards.mean())
        record("rollout/kl_mean", kl_per_seq)
        record("rollout/response_length", tokens / self.env.num_envs)
        for key, value in stats.items():
            record(key, value)
        record("train/kl_coef", self.kl_controller.value)
        record("time/tokens_per_s", tokens / max(seconds, 1e-9))
        record("time/iterations", self.iteration)
        record("time/total_timesteps", self.num_timesteps)
        if self.iteration % max(log_interval, 1) == 0:
            self.logger.dump(self.num_timesteps)

    def _autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast on CUDA (weights stay fp32); nothing on CPU."""
        if self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    @property
    def _cpu_generator(self) -> torch.Generator:
        if not hasattr(self, "_prompt_generator"):
            self._prompt_generator = torch.Generator()
            self._prompt_generator.manual_seed(int(torch.randint(2**31, (1,), generator=None)))
        return self._prompt_generator

    @torch.no_grad()
    def evaluate(
        self, prompts: Sequence[str], deterministic: bool = False, n_samples: int = 1, seed: int = 0
    ) -> Evaluation:
        """Complete each prompt ``n_samples`` times with the current policy; no training, no side effects.

        Uses the env (so scores and KL are the env's) and a sampler seeded by ``seed``, so the
        training run's own random streams are untouched.
        """
        if isinstance(prompts, str) or len(prompts) == 0:
            raise ValueError(f"prompts must be a non-empty list of strings, got {prompts!r}")
        wanted = [p for p in prompts for _ in range(n_samples)]
        n = self.env.num_envs
        generator = torch.Generator(device=self.device).manual_seed(seed)
        act = None if self._env_logits else self.policy.forward
        self.policy.eval()
        chunks = []
        for start in range(0, len(wanted), n):
            chunk = wanted[start : start + n]
            padded = chunk + [chunk[-1]] * (n - len(chunk))  # every row needs a prompt
            episodes = collect_episodes(self.env, padded, act, generator, deterministic=deterministic)
            assert episodes is not None
            chunks.append((chunk, episodes))
        return Evaluation(
            prompts=wanted,
            completions=[c for chunk, ep in chunks for c in ep.completions[: len(chunk)]],
            scores=torch.cat([ep.scores[: len(chunk)] for chunk, ep in chunks]).cpu(),
            kl=torch.cat([ep.kl.sum(-1)[: len(chunk)] for chunk, ep in chunks]).cpu(),
        )

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = False
    ) -> tuple[np.ndarray, None]:
        """Stable-Baselines3's ``predict``: the next token(s) for an observation (single or batched)."""
        self.policy.eval()
        policy: Any = self.policy  # BasePolicy's predict, or a protocol-only policy's own
        return policy.predict(observation, state, episode_start, deterministic)

    def get_env(self) -> TextGenerationVectorEnv:
        """The vector env the agent trains on."""
        return self.env

    def set_random_seed(self, seed: int) -> None:
        """Seed Python, NumPy, torch and the agent's own samplers."""
        random.seed(seed)
        np.random.seed(seed)
        torch.manual_seed(seed)
        self.generator.manual_seed(seed)
        self._prompt_generator = torch.Generator()
        self._prompt_generator.manual_seed(seed + 1)

    def iter_minibatches(self, n: int) -> Iterator[torch.Tensor]:
        """Shuffled index sets over ``n`` episodes, ``n_epochs`` times (drawn with the agent's generator)."""
        size = self.config.minibatch_size or n
        for _ in range(self.config.n_epochs):
            order = torch.randperm(n, generator=self._cpu_generator).to(self.device)
            yield from order.split(size)

    def step_optimizer(self, loss: torch.Tensor) -> torch.Tensor:
        """Backward, clip and step; returns the gradient norm before clipping."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for group in self.optimizer.param_groups for p in group["params"]]
        max_norm = self.config.max_grad_norm or float("inf")
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm)
        self.optimizer.step()
        return norm

    # ------------------------------------------------------------------ checkpoints

    def save(self, path: str | os.PathLike) -> None:
        """Write a checkpoint directory (atomically): model, optimizer, KL controller, RNGs, counters."""
        policy = self.policy_class.__name__ if resolve_safe(self.policy_class) else None
        save_checkpoint(
            path,
            algo_name=self.algo_name,
            policy=self.policy,
            optimizer=self.optimizer,
            kl_controller_state=self.kl_controller.state_dict(),
            rng_states=get_rng_state({"sampler": self.generator, "prompts": self._cpu_generator}),
            counters={"num_timesteps": self.num_timesteps, "iteration": self.iteration},
            config={
                "algo": dataclasses.asdict(self.config),
                "policy": policy,
                "policy_kwargs": self.policy_kwargs,
            },
            extra=self._extra_state(),
        )

    def _extra_state(self) -> dict[str, Any]:
        """Algorithm state a checkpoint carries beyond the shared one; subclasses add theirs."""
        return {"reward_stats": self.reward_stats.state_dict()}

    def _load_extra_state(self, extra: dict[str, Any]) -> None:
        """Restore what :meth:`_extra_state` saved."""
        self.reward_stats.load_state_dict(extra["reward_stats"])

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        env: Any,
        device: str = "auto",
        policy: str | type | None = None,
        **kwargs: Any,
    ) -> BaseAlgorithm:
        """Rebuild an agent from :meth:`save`'s checkpoint on ``env`` and restore its full state.

        Args:
            path: the checkpoint directory.
            env: the env to continue on (built like the one the agent was saved with).
            policy: the policy class, needed only when it was a custom class.
            **kwargs: constructor overrides (``verbose``, ``tensorboard_log``, ...).
        """
        checkpoint = load_checkpoint(path, expected_algo=cls.algo_name)
        saved = checkpoint.config
        policy = policy or saved.get("policy")
        if policy is None:
            raise ValueError(
                f"{path} was saved with a custom policy class; pass it again: {cls.__name__}.load(path, env, policy=MyPolicy)"
            )
        kwargs.setdefault("policy_kwargs", saved.get("policy_kwargs") or None)
        agent = cls(policy, env, device=device, **{**saved["algo"], **kwargs})
        checkpoint.load_policy(agent.policy)
        if checkpoint.optimizer_state is not None:
            agent.optimizer.load_state_dict(checkpoint.optimizer_state)
        if checkpoint.kl_controller_state is not None:
            agent.kl_controller.load_state_dict(checkpoint.kl_controller_state)
            agent.env.kl_coef = agent.kl_controller.value
        agent._load_extra_state(checkpoint.extra)
        set_rng_state(checkpoint.rng_states, {"sampler": agent.generator, "prompts": agent._cpu_generator})
        agent.num_timesteps = int(checkpoint.counters["num_timesteps"])
        agent.iteration = int(checkpoint.counters["iteration"])
        return agent


def resolve_safe(policy_class: type) -> bool:
    """Whether the policy class is a built-in alias (so a checkpoint can name it)."""
    return POLICY_ALIASES.get(policy_class.__name__) is policy_class


def evaluate_sequence(
    policy: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
    """``(values | None, logprobs, entropy)``, each ``(B, T)``, of the response under ``policy`` (with grad).

    Policies built on :class:`~agents.policies.LMPolicy` do it in one teacher-forced forward. A
    policy that only meets the protocol is asked token by token through ``evaluate_actions``.
    """
    if hasattr(policy, "evaluate_sequence"):
        return policy.evaluate_sequence(input_ids, attention_mask, response_start)
    mask = attention_mask[:, response_start:]
    columns = []
    for j in range(input_ids.shape[1] - response_start):
        seen = attention_mask.clone()
        seen[:, response_start + j :] = 0  # the observation before token j was emitted
        obs = {"input_ids": input_ids, "attention_mask": seen}
        columns.append(policy.evaluate_actions(obs, input_ids[:, response_start + j]))
    values = None if columns[0][0] is None else torch.stack([c[0] for c in columns], 1) * mask
    logprobs = torch.stack([c[1] for c in columns], 1) * mask  # (B, T)
    entropy = torch.stack([c[2] for c in columns], 1) * mask
    return values, logprobs, entropy
