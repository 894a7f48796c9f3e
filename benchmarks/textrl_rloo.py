"""The textrl side of ``train_vs_trl``: textrl's RLOO on the shared ``BenchSettings``.

One step is one RLOO iteration: B prompts x k completions rolled out through the native vector env
(KV-cached, the env's own log-probs reused as the old log-probs, the reference's log-probs and the
KL from the env's end-of-episode pass), the reward function, leave-one-out advantages, and one
forward/backward plus one Adam update over all B*k completions. Step i uses exactly the prompts
TRL's step i uses (``settings.prompts_for_step(i)``, each k times).

    python -m benchmarks.textrl_rloo --steps 10 --json benchmarks/out/textrl_rloo.json
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from agents import RLOO
from agents.collect import Episodes
from agents.rewards import SequenceRewards
from benchmarks import common, measure
from textrl_env import TextGenerationVectorEnv


class ScheduledRLOO(RLOO):
    """RLOO whose step ``i`` draws ``settings.prompts_for_step(i)`` and records each step's scores."""

    def __init__(self, *args: Any, settings: common.BenchSettings, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.settings = settings
        self.score_history: list[float] = []
        self.token_counts: list[int] = []

    def _rollout_prompts(self) -> list[str]:
        return [p for p in self.settings.prompts_for_step(self.iteration) for _ in range(self.config.k)]

    def _update(self, episodes: Episodes, rewards: SequenceRewards) -> dict[str, Any]:
        self.score_history.append(float(episodes.scores.mean()))  # the score alone, as TRL's "reward"
        self.token_counts.append(int(episodes.response_mask.sum()))
        return super()._update(episodes, rewards)


def run_textrl_rloo(settings: common.BenchSettings) -> dict[str, Any]:
    """Train textrl's RLOO for ``settings.steps`` steps; return the shared result record.

    Throughput is completions / wall time of the training steps; building the policy, the env
    (with its reference copy) and the agent is excluded, as on the TRL side.
    """
    common.configure_torch(settings)
    # Measure memory from the same point as the TRL side, whose `import trl` has already loaded
    # transformers' model and generation code: everything imported, nothing built yet.
    import transformers.generation.utils  # noqa: F401
    import transformers.models.gpt2.modeling_gpt2  # noqa: F401

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
        agent = ScheduledRLOO(
            "LMPolicy",
            env,
            settings=settings,
            k=settings.k,
            learning_rate=settings.learning_rate,
            adam_eps=settings.adam_eps,
            max_grad_norm=settings.max_grad_norm,
            seed=settings.seed,
            verbose=0,
        )
        step_times = []
        start = time.perf_counter()
        for _ in range(settings.steps):
            step_start = time.perf_counter()
            agent.learn(total_timesteps=1, reset_num_timesteps=False)  # exactly one rollout + update
            step_times.append(time.perf_counter() - step_start)
        wall = time.perf_counter() - start
    if agent.iteration != settings.steps:
        raise RuntimeError(f"expected {settings.steps} iterations, ran {agent.iteration}")
    return common.side_result(
        "textrl",
        settings,
        train_wall_s=wall,
        step_times_s=step_times,
        completions=settings.steps * settings.completions_per_step,
        completion_tokens=sum(agent.token_counts),
        reward_history=agent.score_history,
        memory=memory.report(),
        model=info,
        optimizer="Adam (eps from settings, no weight decay = TRL's AdamW with weight_decay 0)",
        loss="token-mean of -A * ratio (ratio == 1: one update per batch)",
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common.add_settings_arguments(parser)
    args = parser.parse_args(argv)
    settings = common.settings_from_args(args)
    result = run_textrl_rloo(settings)
    if args.json:
        measure.write_json(args.json, result)
    if not args.quiet:
        measure.print_table(
            f"textrl RLOO: {settings.prompts_per_step} prompts x k={settings.k}, {settings.max_new_tokens} new "
            f"tokens, {settings.steps} steps",
            ["metric", "value"],
            [
                ["completions/s (total / train wall)", result["completions_per_s"]],
                ["completions/s (median step)", result["completions_per_s_median_step"]],
                ["train wall s", result["train_wall_s"]],
                ["peak RSS delta MB", result["peak_mb"]],
                ["reward step 1", result["reward_history"][0]],
                [f"reward last {min(settings.reward_window, settings.steps)} steps", result["reward_final"]],
            ],
        )
    return result


if __name__ == "__main__":
    main()
