"""What every textrl algorithm shares: Stable-Baselines3's surface on a text-generation vector env.

``Algo(policy, env, **config)``, ``learn``, ``predict``, ``evaluate``, ``save`` / ``Algo.load``,
``set_random_seed``, callbacks and logging live here. An algorithm subclass sets ``algo_name`` and
``config_class`` and implements one hook, :meth:`BaseAlgorithm._update` (a batch of episodes and
their :class:`~agents.rewards.SequenceRewards` become gradient steps); it may override
``_check_batch``, ``_rollout_prompts`` and ``_extra_state`` / ``_load_extra_state``. How the agent
attaches to the env, and what it may change there, is in :mod:`agents.attach`.
"""

from __future__ import annotations

import difflib
import os
import random
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from agents.attach import as_vector_env, attach_policy
from agents.callbacks import CallbackRunner, MaybeCallback
from agents.collect import Episodes, collect_episodes
from agents.config import AlgoConfig, check_renamed
from agents.guards import (
    check_agent_args,
    check_device,
    check_int,
    check_learn_args,
)
from agents.logger import Logger
from agents.parallel import DataParallel
from agents.policies import protocol
from agents.rewards import SequenceRewards, drop_failed_episodes, sequence_rewards
from agents.sampling import Evaluation, evaluate_prompts
from agents.saving import load_agent, save_agent
from agents.update_steps import UpdateSteps, make_adam
from reward_models.kl_control import make_kl_controller
from textrl_env import TextGenerationVectorEnv
from textrl_env.core import check_prompts

__all__ = ["BaseAlgorithm", "Evaluation", "SequenceRewards"]


class BaseAlgorithm(UpdateSteps):
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
        data_parallel: under ``torchrun`` / ``accelerate launch``, ``"ddp"`` or ``"fsdp"`` (FSDP2);
            ignored in one process. ``num_envs`` and ``minibatch_size`` are per rank (:mod:`agents.parallel`).
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
        data_parallel: str = "ddp",
        **config: Any,
    ) -> None:
        self.config = self._make_config(config)
        self.parallel = DataParallel(data_parallel)  # first: it puts this rank on its own GPU
        if device != "auto":
            device = str(check_device(device))
        self.env = as_vector_env(env, check_int("n_envs", n_envs, 1, 16), device)
        if device != "auto" and torch.device(device) != self.env.device:
            raise ValueError(
                f"device={device!r} but the env's model is on {self.env.device}; build the env on the same device "
                f"(gym.make_vec(id, num_envs=..., vectorization_mode='vector_entry_point', device={device!r}))"
            )
        self.device = self.env.device
        self._check_batch(self.env.num_envs)
        self.parallel.check_env(self.device, self.env.num_envs)
        # Seed before building the policy (as SB3 does): a custom head, a value head or LoRA
        # weights are initialised from the global RNG (with the same seed on every rank).
        seed = self.parallel.run_seed(check_agent_args(seed, policy_kwargs, verbose))
        self.generator = torch.Generator(device=self.device)
        self._prompt_generator: torch.Generator | None = None  # made on first use, see _cpu_generator
        self.seed = seed
        if seed is not None:
            self.set_random_seed(seed)
        self.policy_class = protocol.resolve_policy(policy)
        if not issubclass(self.policy_class, torch.nn.Module):
            raise TypeError(
                f"policy class {self.policy_class.__name__} must be a torch.nn.Module (the agent trains its "
                "parameters); subclass agents.policies.BasePolicy or LMPolicy"
            )
        self.policy_kwargs = dict(policy_kwargs or {})
        try:
            policy_module = self.policy_class(
                self.env.model,
                tokenizer=self.env.tokenizer,
                temperature=self.env.temperature,
                **self.policy_kwargs,
            )
        except TypeError as err:
            if "unexpected keyword argument" not in str(err):
                raise
            raise TypeError(
                f"policy_kwargs={self.policy_kwargs!r} do not fit {self.policy_class.__name__}: {err}"
            ) from err
        self.policy = policy_module.to(self.device)
        self._env_logits = attach_policy(self.policy, self.env)
        self.parallel.spread_global_rngs()
        find_unused = protocol.has_values(self.policy) and not self._trains_values()
        self.parallel.wrap(self.policy, self.env.model, self.env.ref_model, find_unused)
        params = [p for p in self.policy.parameters() if p.requires_grad]
        self.optimizer = make_adam(params, lr=self.config.learning_rate, eps=self.config.adam_eps)
        init_coef = self.env.kl_coef if self.config.kl_coef is None else self.config.kl_coef
        if self.config.kl_target is not None and init_coef == 0:
            # The adaptive controller scales its coefficient: from 0 it would stay 0.
            source = "the env's kl_coef" if self.config.kl_coef is None else "kl_coef"
            raise ValueError(
                f"kl_target={self.config.kl_target!r} adapts the KL coefficient multiplicatively, but "
                f"{source} is 0, so it would stay 0; pass kl_coef=<a starting value > 0> (e.g. 0.05) "
                "or drop kl_target"
            )
        self.kl_controller = make_kl_controller(
            init_coef, target=self.config.kl_target, horizon=self.config.kl_horizon
        )
        self.env.set_kl_coef(self.kl_controller.value)
        self.reward_stats = self.parallel.running_mean_std()
        self.verbose = verbose
        self.tensorboard_log = tensorboard_log
        quiet = verbose == 0 or not self.parallel.is_main  # rank 0 logs for the whole run
        self.logger = Logger(self.parallel.log_folder(tensorboard_log), quiet=quiet)
        self.num_timesteps = 0
        self.iteration = 0
        self._nonfinite_skips = 0  # gradient steps dropped by on_nonfinite="skip" in the current update

    def _make_config(self, config: dict[str, Any]) -> AlgoConfig:
        check_renamed(config, self.algo_name)
        unknown = set(config) - self.config_class.field_names()
        if unknown:
            name = sorted(unknown)[0]
            close = difflib.get_close_matches(name, sorted(self.config_class.field_names()), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise TypeError(f"{self.algo_name} got an unknown setting {name!r}.{hint}")
        return self.config_class(**config)

    # ------------------------------------------------------------------ hooks for subclasses

    def _check_batch(self, n_envs: int) -> None:
        """Validate the rollout size (one episode per env row) against the config."""
        size = self.config.minibatch_size
        if size is not None and n_envs % size != 0:
            raise ValueError(
                f"a rollout of {n_envs} episodes (one per env row) does not divide into minibatches of {size}; "
                f"choose a minibatch_size that divides {n_envs}, or change num_envs"
            )

    def _trains_values(self) -> bool:
        """Whether the loss trains the policy's value head (else DDP is told some go unused)."""
        return False

    def _token_mean_loss(self) -> bool:
        """Whether the loss is a mean over the minibatch's tokens (:meth:`DataParallel.evaluate`)."""
        return True

    @property
    def rollout_rows(self) -> int:
        """Rows of the global batch: ``num_envs`` on every rank (``world_size * num_envs``)."""
        return self.env.num_envs * self.parallel.world_size

    def _rollout_prompts(self) -> list[str]:
        """One prompt per row of the global batch (every rank draws the same), from the agent's generator."""
        prompts = self.env.prompts
        index = torch.randint(len(prompts), (self.rollout_rows,), generator=self._cpu_generator)
        return [prompts[i] for i in index.tolist()]

    def _update(self, episodes: Episodes, rewards: SequenceRewards) -> dict[str, Any]:
        """One rollout's gradient steps; returns ``train/...`` statistics.

        ``rewards.total`` ``(N,)`` is the sequence reward to optimise; ``rewards.score``,
        ``rewards.kl``, ``rewards.kl_coef`` and ``rewards.scale`` are its parts.
        """
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
        total_timesteps, log_interval = check_learn_args(total_timesteps, log_interval)
        if reset_num_timesteps:
            self.num_timesteps = 0
        elif isinstance(self.logger, Logger):  # a continued run's progress.csv goes on, not afresh
            self.logger.continue_files()
        target = self.num_timesteps + total_timesteps
        self.optimizer = self.parallel.ready(self.optimizer)
        runner = CallbackRunner(callback, self, progress_bar and self.parallel.is_main)
        runner.on_training_start(total_timesteps=target)
        while self.num_timesteps < target:
            runner.on_rollout_start()
            start = time.perf_counter()
            with self._oom_hint("rollout"):
                episodes = self._collect(runner)
            if episodes is None:
                break
            runner.on_rollout_end()
            episodes = drop_failed_episodes(episodes)
            if self._all_dropped(episodes):
                continue
            rewards = self._sequence_rewards(episodes)
            self.policy.train()
            with self._autocast(), self._oom_hint("update"):
                stats = self._update(episodes, rewards)
            self._after_update(episodes, rewards, stats, time.perf_counter() - start, log_interval)
        runner.on_training_end()
        return self

    def _act(self) -> Any:
        """What :func:`collect_episodes` samples with: None (the env's logits are the policy's) or ``forward``."""
        return None if self._env_logits else self.policy.forward

    def _collect(self, runner: CallbackRunner) -> Episodes | None:
        def on_step() -> bool:
            self.num_timesteps += self.rollout_rows
            return runner.on_step()

        self.policy.eval()
        if self.parallel.enabled:  # callbacks run after the rollout, in step on every rank
            modules = (self.policy, self.env.ref_model)
            return self.parallel.collect(
                self.env, self._rollout_prompts(), self._act(), self.generator, on_step, modules
            )
        return collect_episodes(self.env, self._rollout_prompts(), self._act(), self.generator, on_step)

    def _all_dropped(self, episodes: Episodes) -> bool:
        """True (and logged) when the reward failed on every episode of the rollout: no update then."""
        every = episodes.dropped is not None and bool(episodes.dropped.all())
        if not self.parallel.all_ranks(every):  # a rank with none kept still steps, with zero weight
            return False
        self.iteration += 1
        self.logger.record("rollout/reward_errors", self.rollout_rows)
        self.logger.record("time/iterations", self.iteration)
        self.logger.dump(self.num_timesteps)
        return True

    def _sequence_rewards(self, episodes: Episodes) -> SequenceRewards:
        """The env's return ``score - kl_coef * sum(KL)`` per episode, in its parts, with optional shaping."""
        return sequence_rewards(
            episodes,
            self.kl_controller.value,
            self.config.missing_eos_penalty,
            self.reward_stats if self.config.normalize_rewards else None,
        )

    def _after_update(
        self,
        episodes: Episodes,
        rewards: SequenceRewards,
        stats: dict[str, Any],
        seconds: float,
        log_interval: int,
    ) -> None:
        # Kept episodes only, over the global batch: every rank's KL controller moves alike.
        n_kept, score_mean, reward_mean, kl_per_seq, tokens = self.parallel.rollout_stats(
            episodes, rewards.total
        )
        self.kl_controller.update(kl_per_seq, n_steps=n_kept)
        self.env.set_kl_coef(self.kl_controller.value)
        self.iteration += 1
        record = self.logger.record
        record("rollout/score_mean", score_mean)
        record("rollout/reward_errors", self.rollout_rows - n_kept)
        record("rollout/reward_mean", reward_mean)
        record("rollout/kl_mean", kl_per_seq)
        record("rollout/response_length", tokens / n_kept)
        for key, value in stats.items():
            record(key, value)
        record("train/nonfinite_skips", self._nonfinite_skips)
        self._nonfinite_skips = 0
        record("train/kl_coef", self.kl_controller.value)
        record("time/tokens_per_s", tokens / max(seconds, 1e-9))
        record("time/iterations", self.iteration)
        record("time/total_timesteps", self.num_timesteps)
        if self.iteration % max(log_interval, 1) == 0:
            self.logger.dump(self.num_timesteps)

    @property
    def _cpu_generator(self) -> torch.Generator:
        """The CPU generator that draws prompts and minibatch orders (seeded from torch's on first use)."""
        if self._prompt_generator is None:
            self._prompt_generator = torch.Generator()
            self._prompt_generator.manual_seed(int(torch.randint(2**31, (1,), generator=None)))
        return self._prompt_generator

    def _named_generators(self) -> dict[str, torch.Generator]:
        """The agent's own random streams, by the names checkpoints store them under."""
        return {"sampler": self.generator, "prompts": self._cpu_generator}

    def evaluate(
        self, prompts: Sequence[str], deterministic: bool = False, n_samples: int = 1, seed: int = 0
    ) -> Evaluation:
        """Complete each prompt ``n_samples`` times with the current policy; no training, no side effects.

        Uses the env (so scores and KL are the env's) and a sampler seeded by ``seed``, so the
        training run's own random streams are untouched.
        """
        check_prompts(prompts)
        n_samples, seed = check_int("n_samples", n_samples, 1, 1), check_int("seed", seed, 0, 0, 2**63 - 1)
        self.optimizer = self.parallel.ready(self.optimizer)
        self.policy.eval()
        with self.parallel.rollout(self.policy, self.env.ref_model):  # every rank evaluates all prompts
            return evaluate_prompts(self.env, self._act(), prompts, deterministic, n_samples, seed)

    def predict(
        self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = False
    ) -> tuple[np.ndarray, None]:
        """Stable-Baselines3's ``predict``: the next token(s) for an observation (single or batched)."""
        self.policy.eval()
        return protocol.predict(self.policy, observation, deterministic)

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

    # ------------------------------------------------------------------ checkpoints

    def save(self, path: str | os.PathLike) -> None:
        """Write a checkpoint directory (atomically): model, optimizer, KL controller, RNGs, counters.

        Distributed, every rank calls it: rank 0 writes, and a failure there raises on every rank.
        """
        self.parallel.save(self.policy, self.optimizer, lambda *state: save_agent(self, path, *state))

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

        Checkpoints written before the config renames (format 1) load too: their settings are
        mapped onto today's names.

        Args:
            path: the checkpoint directory.
            env: the env to continue on (built like the one the agent was saved with).
            policy: the policy class, needed only when it was a custom class.
            **kwargs: constructor overrides (``verbose``, ``tensorboard_log``, ...).
        """
        agent = load_agent(cls, path, env, device, policy, **kwargs)
        agent.parallel.spread_global_rngs()  # the checkpoint holds rank 0's global streams
        return agent
