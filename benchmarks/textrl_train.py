"""The textrl side of ``train_vs_trl``: textrl's RLOO or GRPO (``settings.algo``) on the shared ``BenchSettings``.

One step is one iteration of the agent: B prompts x k completions rolled out through the native
vector env (KV-cached, the env's own log-probs reused as the old log-probs, the reference's
log-probs and the KL from the env's end-of-episode pass), the reward function, the advantages
(RLOO: leave-one-out; GRPO: group mean and std, ``scale_rewards``), and one forward/backward plus
one Adam update over all B*k completions. Step i uses exactly the prompts TRL's step i uses
(``settings.prompts_for_step(i)``, each k times).

The KL is placed as TRL places it: RLOO subtracts ``kl_coef * sum(k1)`` from the reward (the env's
KL); GRPO adds ``beta * k3`` (``beta = kl_coef``) to the loss, against the env's reference
log-probs, and its reward is the score alone.

With ``target_reward`` set (time-to-reward mode), training stops at the first step whose moving
mean score over ``reward_window`` steps reaches it (``steps`` is the cap).

    python -m benchmarks.textrl_train --steps 10 --json benchmarks/out/textrl_rloo.json
    python -m benchmarks.textrl_train --algo grpo --steps 10 --json benchmarks/out/textrl_grpo.json
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from agents import GRPO, RLOO, BaseAlgorithm
from agents.collect import Episodes
from agents.rewards import SequenceRewards
from benchmarks import common, compute_floor, measure, phase_clock
from textrl_env import TextGenerationVectorEnv


def scheduled(algo_class: type[BaseAlgorithm]) -> type[BaseAlgorithm]:
    """``algo_class`` whose step ``i`` draws ``settings.prompts_for_step(i)`` (each k times) and records
    each step's mean score and response tokens."""

    class Scheduled(algo_class):  # type: ignore[valid-type, misc]
        def __init__(self, *args: Any, settings: common.BenchSettings, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.settings = settings
            self.score_history: list[float] = []
            self.token_counts: list[int] = []

        def _rollout_prompts(self) -> list[str]:
            return [p for p in self.settings.prompts_for_step(self.iteration) for _ in range(self.settings.k)]

        def _update(self, episodes: Episodes, rewards: SequenceRewards) -> dict[str, Any]:
            self.score_history.append(float(episodes.scores.mean()))  # the score alone, as TRL's "reward"
            self.token_counts.append(int(episodes.response_mask.sum()))
            return super()._update(episodes, rewards)

    Scheduled.__name__ = f"Scheduled{algo_class.__name__}"
    return Scheduled


def algo_settings(settings: common.BenchSettings) -> tuple[type[BaseAlgorithm], dict[str, Any]]:
    """The agent class and its settings for ``settings.algo``, the same objective as TRL's trainer."""
    shared = {
        "learning_rate": settings.learning_rate,
        "adam_eps": settings.adam_eps,
        "max_grad_norm": settings.max_grad_norm,
    }
    if settings.algo == "rloo":
        return RLOO, {**shared, "k": settings.k}
    grpo = {
        "num_generations": settings.k,
        "beta": settings.kl_coef,  # k3 in the loss, as TRL's GRPOTrainer; the reward is the score alone
        "loss_type": settings.loss_type,
        "scale_rewards": settings.scale_rewards,
        "epsilon": 0.2,
    }
    return GRPO, {**shared, **grpo}


def run_textrl(settings: common.BenchSettings) -> dict[str, Any]:
    """Train textrl's ``settings.algo`` for ``settings.steps`` steps (or until the target reward);
    return the shared result record.

    Throughput is completions / wall time of the training steps; building the policy, the env
    (with its reference copy) and the agent is excluded, as on the TRL side.
    """
    common.configure_torch(settings)
    # Measure memory from the same point as the TRL side, whose `import trl` has already loaded
    # transformers' model and generation code: everything imported, nothing built yet.
    import transformers.generation.utils  # noqa: F401
    import transformers.models.gpt2.modeling_gpt2  # noqa: F401

    algo_class, config = algo_settings(settings)
    with measure.PeakMemory() as memory:
        model, tokenizer = common.build_policy_and_tokenizer(settings)
        info = common.model_info(settings, model, tokenizer)
        env = TextGenerationVectorEnv(
            model,
            tokenizer,
            prompts=list(settings.prompts),
            reward_model=common.get_reward(settings.reward),
            num_envs=settings.completions_per_step,
            kl_coef=settings.kl_coef,
            kl_estimator=settings.kl_estimator,
            max_new_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            device=settings.device,
        )
        agent: Any = scheduled(algo_class)("LMPolicy", env, settings=settings, seed=settings.seed, verbose=0,
                                           **config)  # fmt: skip
        clock = phase_clock.textrl_clock() if settings.profile_phases else None
        step_times = []
        start = time.perf_counter()
        for _ in range(settings.steps):
            step_start = time.perf_counter()
            agent.learn(total_timesteps=1, reset_num_timesteps=False)  # exactly one rollout + update
            step_times.append(time.perf_counter() - step_start)
            if common.target_reached(settings, agent.score_history):
                break
        wall = time.perf_counter() - start
    phases = None
    if clock is not None:
        clock.restore()
        phases = clock.report(step_times)
    if agent.iteration != len(step_times):
        raise RuntimeError(f"expected {len(step_times)} iterations, ran {agent.iteration}")
    floor = step_floor(settings, info, tokenizer, sum(agent.token_counts) / (len(step_times) * env.num_envs))
    return common.side_result(
        "textrl",
        settings,
        train_wall_s=wall,
        step_times_s=step_times,
        completions=len(step_times) * settings.completions_per_step,
        completion_tokens=sum(agent.token_counts),
        reward_history=agent.score_history,
        memory=memory.report(),
        model=info,
        algo_config=config,
        compute_floor=floor,
        phases=phases,
        optimizer="Adam (eps from settings, no weight decay = TRL's AdamW with weight_decay 0)",
        loss=(
            "token-mean of -A * ratio (ratio == 1: one update per batch)"
            if settings.algo == "rloo"
            else f"-min(r*A, clip(r)*A) + beta*k3, aggregated by loss_type={settings.loss_type!r} (r == 1)"
        ),
    )


def step_floor(
    settings: common.BenchSettings, info: dict[str, Any], tokenizer: Any, response: float
) -> dict[str, Any]:
    """The step's compute floor: its multiply-adds (``compute_floor.training_step_macs``, at the
    mean prompt and response lengths of the run) at this machine's measured fp32 matmul rate."""
    prompt = sum(len(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in settings.prompts) / len(
        settings.prompts
    )
    macs = compute_floor.training_step_macs(info["config"], prompt, response, settings.completions_per_step)
    rate = compute_floor.matmul_rate(settings.torch_threads)
    return {
        "macs": macs,
        "matmul_macs_per_s": rate,
        "step_s": sum(macs.values()) / rate,
        "prompt_tokens_mean": prompt,
        "response_tokens_mean": response,
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common.add_settings_arguments(parser)
    args = parser.parse_args(argv)
    settings = common.settings_from_args(args)
    result = run_textrl(settings)
    if args.json:
        measure.write_json(args.json, result)
    if not args.quiet:
        measure.print_table(
            f"textrl {settings.algo.upper()}: {settings.prompts_per_step} prompts x k={settings.k}, "
            f"{settings.max_new_tokens} new tokens, {result['steps_run']} steps",
            ["metric", "value"],
            common.side_rows(result),
        )
    return result


if __name__ == "__main__":
    main()
