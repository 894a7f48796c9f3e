"""What each process runs in the agents' distributed tests: ``python -m tests.agents.distributed_agents ...``.

``train ALGO OUT``: 3 updates on this rank's share; records each rollout's episodes and the final
parameters. ``replay ALGO OUT``: one process, twice the rows, replays both ranks' recorded episodes
(the same global batch, the same prompts) through the same 3 updates. ``checkpoint OUT STAGE``:
logs and checkpoints from rank 0 only, resumed across world sizes. ``crash OUT WHERE``: rank 1
raises in the reward function (or in the update); every rank writes down how it ended.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from agents import GRPO, PPO, RLOO, BaseAlgorithm, distributed, fsdp
from agents.collect import Episodes
from tests.conftest import build_char_tokenizer, build_tiny_lm
from textrl_env import TextGenerationVectorEnv

PROMPTS = ["the movie", "i liked", "bb", "a day"]
ROWS = 4  # env rows per rank


def a_fraction(prompts: list[str], completions: list[str]) -> list[float]:
    return [c.count("a") / max(len(c), 1) for c in completions]


def launcher_rank() -> int:
    """The rank the launcher gave this process (the agent itself joins the group when it is built)."""
    return int(os.environ.get("RANK", "0"))


def make_env(num_envs: int, reward: Any = a_fraction) -> TextGenerationVectorEnv:
    return TextGenerationVectorEnv(
        build_tiny_lm(),
        build_char_tokenizer(),
        PROMPTS,
        reward,
        num_envs=num_envs,
        max_new_tokens=6,
        kl_coef=0.05,
    )


# Every statistic that must be global is on: reward normalisation, advantage whitening, the adaptive
# KL controller, GRPO's batch-std scaling and DAPO's token normaliser, sequence-mean losses.
CASES: dict[str, tuple[type[BaseAlgorithm], str, dict[str, Any]]] = {
    "RLOO": (RLOO, "LMPolicy", dict(k=2, n_epochs=2, normalize_advantage=True, normalize_rewards=True, kl_target=0.5)),
    "PPO": (PPO, "LMActorCriticPolicy", dict(n_epochs=2, normalize_advantage=True, normalize_rewards=True, kl_target=0.5)),
    "GRPO-dapo": (GRPO, "LMPolicy", dict(num_generations=2, num_iterations=2, scale_rewards="batch", beta=0.04)),
    "GRPO-grpo": (GRPO, "LMPolicy", dict(num_generations=2, num_iterations=2, loss_type="grpo", normalize_rewards=True)),
}  # fmt: skip


def make_agent(
    case: str, env: TextGenerationVectorEnv, cls: type | None = None, **kwargs: Any
) -> BaseAlgorithm:
    base, policy, settings = CASES[case]
    kwargs = {"seed": 0, "verbose": 0, "learning_rate": 1e-2, **settings, **kwargs}
    return (cls or base)(policy, env, **kwargs)


def recording(base: type) -> type:
    class Recording(base):  # type: ignore[misc, valid-type]
        """Saves each rollout's episodes, so one process can replay the same global batch."""

        out: Path

        def _collect(self, runner: Any) -> Episodes | None:
            episodes = super()._collect(runner)
            assert episodes is not None
            fields = {f.name: getattr(episodes, f.name) for f in dataclasses.fields(episodes)}
            rank = distributed.info().rank
            torch.save(fields, self.out / f"episodes_it{self.iteration}_rank{rank}.pt")
            return episodes

    return Recording


def replaying(base: type) -> type:
    class Replaying(base):  # type: ignore[misc, valid-type]
        """Collects nothing: returns both ranks' recorded episodes of this iteration, rank 0's rows first."""

        out: Path

        def _collect(self, runner: Any) -> Episodes | None:
            parts = [
                torch.load(self.out / f"episodes_it{self.iteration}_rank{r}.pt", weights_only=True)
                for r in range(2)
            ]
            merged: dict[str, Any] = {}
            for name, first in parts[0].items():
                if isinstance(first, torch.Tensor):
                    merged[name] = torch.cat([p[name] for p in parts])
                elif isinstance(first, list):
                    merged[name] = first + parts[1][name]
                else:
                    merged[name] = max(p[name] for p in parts)
            self.num_timesteps += merged["env_steps"] * self.env.num_envs
            return Episodes(**merged)

    return Replaying


def params(agent: BaseAlgorithm) -> dict[str, torch.Tensor]:
    if fsdp.is_sharded(agent.policy):
        return fsdp.full_state_dict(agent.policy)
    return {k: v.detach().clone().contiguous() for k, v in agent.policy.state_dict().items()}


def train(algo: str, out: Path, replay: bool = False, strategy: str = "ddp") -> dict[str, Any]:
    base = CASES[algo][0]
    cls = replaying(base) if replay else recording(base)
    cls.out = out
    agent = make_agent(algo, make_env(2 * ROWS if replay else ROWS), cls=cls, data_parallel=strategy)
    if replay:
        save_file(params(agent), out / "params_init.safetensors")
    for _ in range(3):
        agent.learn(1, reset_num_timesteps=False)
    rank = distributed.info().rank
    name = "single" if replay else f"rank{rank}"
    save_file(params(agent), out / f"params_{name}.safetensors")
    if not replay:
        agent.save(out / "checkpoint")
    return {"kl_coef": agent.kl_controller.value, "reward_count": agent.reward_stats.count}


def checkpoint(out: Path, stage: str) -> dict[str, Any]:
    """``two``: 2 ranks train and save; ``one``: 1 process resumes it and saves; ``two_again``: 2 ranks resume that."""
    rank = launcher_rank()
    result: dict[str, Any] = {}
    if stage == "two":
        agent = make_agent("RLOO", make_env(ROWS), tensorboard_log=out / f"logs_rank{rank}", verbose=1)
        agent.learn(2 * 6 * 2 * ROWS)  # two rollouts of at most 6 steps on 2 x ROWS rows
        agent.save(out / f"own_rank{rank}")  # every rank calls save; only rank 0 writes
        agent.save(out / "two")
    elif stage == "one":
        agent = RLOO.load(out / "two", env=make_env(ROWS), verbose=0)
        result["loaded_equal"] = _equal(params(agent), load_file(out / "params_two.safetensors"))
        result["num_timesteps"] = agent.num_timesteps
        agent.learn(1, reset_num_timesteps=False)
        agent.save(out / "one")
    else:
        agent = RLOO.load(out / "one", env=make_env(ROWS), verbose=0)
        result["loaded_equal"] = _equal(params(agent), load_file(out / "params_one.safetensors"))
        agent.learn(1, reset_num_timesteps=False)
    name = {"two": "two", "one": "one", "two_again": f"two_again_rank{rank}"}[stage]
    if rank == 0 or stage == "two_again":
        save_file(params(agent), out / f"params_{name}.safetensors")
    result.update(num_timesteps_end=agent.num_timesteps, iteration=agent.iteration)
    result["prompt_state"] = int(agent._cpu_generator.get_state().sum())
    return result


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return sorted(a) == sorted(b) and all(torch.equal(a[k], b[k]) for k in a)


def crash(out: Path, where: str) -> dict[str, Any]:
    rank = launcher_rank()
    calls = {"n": 0}

    def reward(prompts: list[str], completions: list[str]) -> list[float]:
        calls["n"] += 1
        if where == "reward" and rank == 1 and calls["n"] == 2:
            raise ValueError("reward exploded on rank 1")
        return a_fraction(prompts, completions)

    agent = make_agent("RLOO", make_env(ROWS, reward))
    if where == "update" and rank == 1:

        def broken_update(*args: Any) -> dict[str, Any]:
            raise RuntimeError("update exploded on rank 1")

        agent._update = broken_update  # type: ignore[method-assign]
    try:
        agent.learn(10_000)
    except Exception as exc:
        result = {"error": type(exc).__name__, "message": str(exc), "trace": traceback.format_exc()[-1500:]}
        result["ended_at"] = time.time()
        return result
    return {"error": None}


def main(argv: list[str]) -> None:
    scenario = argv[0]
    if scenario == "train":
        out = Path(argv[2])
        result = train(argv[1], out, strategy=argv[3] if len(argv) > 3 else "ddp")
    elif scenario == "replay":
        out = Path(argv[2])
        result = train(argv[1], out, replay=True)
    elif scenario == "checkpoint":
        out = Path(argv[1])
        result = checkpoint(out, argv[2])
        scenario = f"checkpoint_{argv[2]}"
    else:
        out = Path(argv[1])
        result = crash(out, argv[2])
        scenario = f"crash_{argv[2]}"
    (out / f"{scenario}_rank{launcher_rank()}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
