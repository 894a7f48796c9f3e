"""A round's policy optimisation: the agent against the round's reward model, KL penalty to the SFT model.

One agent runs through the whole loop: round 1 builds it on the SFT model, each later round loads
the previous round's checkpoint (policy, optimizer, adaptive KL coefficient, RNG states, counters)
onto an env with the new reward model and trains ``rl_timesteps`` more. An interrupted round
continues from ``rl_partial/`` the same way, with ``learn(reset_num_timesteps=False)``.

Under a launcher every rank runs this stage as one data-parallel agent (each rank ``num_envs``
rows of the global batch; ``rl_timesteps`` counts the global batch's timesteps); rank 0 alone
writes ``rl.json``, the checkpoints, metrics and TensorBoard.
"""

from __future__ import annotations

import shutil
import statistics
import time
from typing import Any

import torch

from agents import distributed
from agents.base import BaseAlgorithm
from agents.callbacks import ProgressBarCallback
from agents.evaluation import sample_completions
from agents.logger import Logger
from agents.pipeline.config import agent_settings
from agents.pipeline.context import RunContext
from agents.pipeline.control import GoldProxyDivergence, MetricsWriter, PipelineInterrupted, SaveOnInterrupt
from agents.pipeline.data import heldout_prompts, sampling_env
from agents.pipeline.rundir import read_json, write_json_atomic
from reward_models import RewardModel, compute_rewards


def build_agent(run: RunContext, round_: int, reward: RewardModel, resumed: bool) -> BaseAlgorithm:
    """The round's agent: resumed from ``rl_partial/`` (``resumed``), else the previous round's, else a fresh one."""
    from agents.train import ALGORITHMS

    config = run.config
    algo = ALGORITHMS[config.agent]
    model = run.load_causal_lm(run.dir.sft_model)  # the weights are replaced when a checkpoint loads
    env = sampling_env(model, run.tokenizer, reward, run.sft_model, config, config.num_envs or 16)
    partial = run.dir.round(round_) / "rl_partial"
    previous = run.dir.policy_checkpoint(round_ - 1)
    if resumed:
        agent = algo.load(partial, env=env, verbose=0)
    elif round_ > 1:
        agent = algo.load(previous, env=env, verbose=0)
    else:
        policy, kwargs = agent_settings(config)
        agent = algo(policy, env, seed=config.seed, verbose=0, **kwargs)
    if not run.ranks.is_main:  # rank 0 logs for the whole run
        agent.logger = Logger(None, formats=(), quiet=True)
        return agent
    # TensorBoard events, and each iteration's statistics as an "rl" event of metrics.jsonl.
    agent.logger = Logger(run.dir.tensorboard, formats=("tensorboard",), quiet=True)
    agent.logger.output_formats.append(MetricsWriter(run.metrics.log, round_))
    return agent


def divergence_check(
    run: RunContext, agent: BaseAlgorithm, reward: RewardModel
) -> GoldProxyDivergence | None:
    """The gold-vs-proxy early stop, when asked for and a gold scorer exists."""
    config, gold = run.config, run.gold
    if config.early_stop_tolerance is None or gold is None:
        return None
    env = sampling_env(agent.env.model, run.tokenizer, reward, run.sft_model, config, config.num_envs or 16)
    prompts = heldout_prompts()

    def measure() -> tuple[float, float]:
        # Under a launcher each rank samples its own stream and the means are averaged, so every
        # rank sees the same figures (and so takes the same decision).
        seed = distributed.rank_seed(run.seed("early-stop", 0))
        error, means = None, torch.zeros(2)
        try:
            done = sample_completions(env, prompts, config.early_stop_samples, seed=seed)
            gold_mean = statistics.fmean(compute_rewards(gold, done.prompts, done.completions).tolist())
            means = torch.tensor([gold_mean, float(done.scores.mean())])
        except Exception as exc:  # every rank fails with it, rather than one waiting in the all-reduce
            error = exc
        distributed.agree(error, phase="gold-vs-proxy check")
        means = distributed.all_reduce_mean(means)
        return float(means[0]), float(means[1])

    return GoldProxyDivergence(measure, config.early_stop_check_every, config.early_stop_tolerance)


def train_policy(run: RunContext, round_: int, reward: RewardModel) -> dict[str, Any]:
    """RL for the round, or what an earlier run of it recorded (``rl.json``).

    Raises:
        PipelineInterrupted: Ctrl-C; the agent was saved to ``rl_partial/`` (or, if RL had just
            finished, to ``policy/``) and ``--resume`` continues from there.
    """
    folder = run.dir.round(round_)
    checkpoint, info_file, partial = (
        run.dir.policy_checkpoint(round_),
        folder / "rl.json",
        folder / "rl_partial",
    )
    main = run.ranks.is_main
    finished, resumed = map(bool, run.ranks.from_main(checkpoint.is_dir(), partial.is_dir()))
    if finished:  # the record is rank 0's to read and report; the other ranks only move on
        return read_json(info_file) if main else {}
    agent = build_agent(run, round_, reward, resumed)
    info = read_json(info_file) if resumed and main else {"start_timesteps": agent.num_timesteps}
    info.setdefault("target_timesteps", info["start_timesteps"] + run.config.rl_timesteps)
    (info["target_timesteps"],) = run.ranks.from_main(info["target_timesteps"])
    agent.parallel.on_main(lambda: write_json_atomic(info_file, info), phase="rl.json")
    save = SaveOnInterrupt(run.interrupt, partial)
    early = divergence_check(run, agent, reward)
    callbacks = [save, ProgressBarCallback(run.console, f"round {round_}: RL ({run.config.agent})")]
    callbacks += [early] if early is not None else []
    started = time.perf_counter()
    with run.interrupt.active():
        remaining = info["target_timesteps"] - agent.num_timesteps
        agent.learn(total_timesteps=max(remaining, 0), callback=callbacks, reset_num_timesteps=False)
        if save.saved:
            raise PipelineInterrupted(f"RL of round {round_} stopped at timestep {agent.num_timesteps:,}")
        info |= {
            "end_timesteps": agent.num_timesteps,
            "seconds": info.get("seconds", 0.0) + time.perf_counter() - started,
            "early_stopped_at": early.stopped_at if early is not None else None,
            "early_stop_checks": early.history if early is not None else [],
            "kl_coef": agent.kl_controller.value,
        }
        agent.save(checkpoint)  # inside the handler: a Ctrl-C now cannot cut the finished round short

        def record() -> None:
            write_json_atomic(info_file, info)
            shutil.rmtree(partial, ignore_errors=True)

        agent.parallel.on_main(record, phase="rl.json")
    if run.interrupt.requested_anywhere():
        raise PipelineInterrupted(f"stopped after the RL of round {round_}")
    return info


__all__ = ["build_agent", "divergence_check", "train_policy"]
