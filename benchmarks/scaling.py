"""Scaling: rollout and update time against response length and batch size.

Each point is one ``(batch, length)`` pair and measures two things on the same env:

- **rollout**: one full rollout through the native vector env, exactly as ``benchmarks.rollout``
  times it (``rollout.native_rollout``): reset, ``length`` steps sampling from
  ``envs.next_token_logits`` with EOS suppressed (so every row runs exactly ``length`` tokens),
  and the end-of-episode scoring (reference log-probs, KL, decoding, VADER).
- **update**: one RLOO gradient step on such a batch: ``RLOO._sequence_rewards`` then ``RLOO._update``
  with ``n_epochs=1`` and no minibatches (one forward + backward of the policy over all rows, one
  Adam step), under the agent's own ``train()`` / autocast, i.e. one ``learn`` iteration minus its
  rollout and logging. RLOO needs ``k >= 2`` rows per prompt: the update uses ``--k`` rows per
  prompt when the batch is a multiple of it, else 2 when the batch is even, and is not measured at
  batch 1. (The rollout's prompts are ``rollout.prompts_for``'s; they only set the prompt padding,
  so the grouping does not change the arithmetic timed.)

The default grid is two sweeps, not the cross product: the lengths at a fixed batch
(``--fixed-batch``, 16) and the batches at a fixed length (``--fixed-length``, 64); the point
they share is measured once. ``--grid full`` runs every pair (meant for a GPU).

The embedded default model has 128 positions, so the policy is built from a config with the
default model's tokenizer (``textrl_env.default_model.DEFAULT_MODEL_PATH``), random weights
(seeded) and ``n_positions = longest response + the task's prompt window``, saved to a temporary
directory and loaded by the env through its ordinary ``model=<path>`` argument:

- ``tiny``: the default model's dims (2 layers, 128 wide, 4 heads);
- ``gpt2-small``: GPT-2 small's dims (12 layers, 768 wide, 12 heads), for the GPU run.

``--dtype bfloat16`` saves the weights in bf16, so the rollout runs in bf16 and the update is a
bf16 Adam step on bf16 weights.

The acceptance figure: with the KV cache, the per-token rollout cost stays about flat as the
response grows, so ``time(512) / time(64) <= 10`` at the fixed batch (8x the tokens). Next to it
the report gives the ratio's compute floor (:mod:`benchmarks.compute_floor`): the ratio if time
were proportional to multiply-adds, with no per-step overhead.

    python -m benchmarks.scaling --clock cpu          # CPU defaults, a few minutes
    python -m benchmarks.scaling --device cuda --model-size gpt2-small --dtype bfloat16 --grid full

On CPU each timed rollout also records the time of every step (through a thin proxy of the env):
the table "where the rollout time goes" gives ms per step early and late in the response and the
final step, which also scores every row; it shows where per-token cost grows with length.

Repeats are interleaved (round r times every point once) so load from other processes falls on all
points alike; the median is quoted. Points of at least ``--large-tokens`` generated tokens
(batch x length) get ``--large-repeats`` repeats instead of ``--repeats``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from agents import RLOO
from agents.collect import Episodes
from benchmarks.compute_floor import floor_ratio
from benchmarks.measure import machine_info, median, write_json
from benchmarks.rollout import generate_rollout, make_native, native_rollout, prompts_for, time_it
from benchmarks.scaling_report import plot, report
from textrl_env import TextGenerationVectorEnv
from textrl_env.default_model import DEFAULT_MODEL_PATH
from textrl_env.logprobs import leading_padding

MODEL_SIZES: dict[str, dict[str, int]] = {
    "tiny": {"n_layer": 2, "n_embd": 128, "n_head": 4},  # the embedded default model's dims
    "gpt2-small": {
        "n_layer": 12,
        "n_embd": 768,
        "n_head": 12,
    },  # GPT-2 small dims: 86 M parameters with this 1024-token vocab
}
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


# --------------------------------------------------------------------------- the model


def task_prompt_window() -> int:
    """The prompt window of ``textrl/Sentiment-v0`` (its ``max_prompt_tokens`` default)."""
    from textrl_env.tasks.sentiment import sentiment_kwargs

    return int(sentiment_kwargs({"reward_model": lambda p, c: [0.0] * len(c)})["max_prompt_tokens"])


def build_model(size: str, n_positions: int, dtype: str, seed: int, directory: Path) -> dict[str, Any]:
    """Save a randomly initialised GPT-2 of ``size`` with the default model's tokenizer to ``directory``.

    Returns what the result records about it (dims, parameter count, dtype, path).
    """
    from transformers import AutoConfig, AutoTokenizer, GPT2LMHeadModel

    tokenizer = AutoTokenizer.from_pretrained(DEFAULT_MODEL_PATH)
    tokenizer.model_max_length = n_positions
    config = AutoConfig.from_pretrained(DEFAULT_MODEL_PATH)
    for key, value in (
        MODEL_SIZES[size] | {"n_positions": n_positions, "vocab_size": len(tokenizer)}
    ).items():
        setattr(config, key, value)
    for key in ("resid_pdrop", "embd_pdrop", "attn_pdrop"):
        setattr(config, key, 0.0)
    torch.manual_seed(seed)
    model: Any = GPT2LMHeadModel(config)
    model = model.to(DTYPES[dtype])
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return {
        "size": size,
        "saved_to": f"{directory} (temporary: removed once every env has loaded it)",
        "parameters": sum(p.numel() for p in model.parameters()),
        "dtype": dtype,
        "init": f"random (torch.manual_seed({seed}))",
        "tokenizer": str(DEFAULT_MODEL_PATH),
        **{key: getattr(config, key) for key in ("n_layer", "n_embd", "n_head", "n_positions", "vocab_size")},
    }


# --------------------------------------------------------------------------- one point


class StepRecorder:
    """The env, with what its last ``step`` returned kept (to build the update's batch from it) and,
    when ``timed``, the ``(wall, cpu)`` seconds of every step (on CPU only: timing a CUDA step would
    need a synchronize the rollout does not do)."""

    def __init__(self, envs: TextGenerationVectorEnv, timed: bool = False) -> None:
        self._envs = envs
        self.timed = timed
        self.last: tuple[Any, ...] | None = None
        self.step_s: list[tuple[float, float]] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._envs, name)

    def step(self, actions: torch.Tensor) -> tuple[Any, ...]:
        if not self.timed:
            self.last = self._envs.step(actions)
            return self.last
        wall, cpu = time.perf_counter(), time.process_time()
        self.last = self._envs.step(actions)
        self.step_s.append((time.perf_counter() - wall, time.process_time() - cpu))
        return self.last


def step_breakdown(step_s: list[tuple[float, float]], clock: str, total_s: float) -> dict[str, float]:
    """Where one rollout's ``total_s`` went: the env's steps, its final step, and the rest.

    The final step also scores every row (reference forward over the whole sequence, decoding,
    the reward), so it is reported on its own. ``first``/``last`` are median ms per step over the
    first and the last tenth (at least one step) of the other steps. ``outside_steps_s`` is the
    time outside ``env.step``: the reset (prefill) and the sampler's work on the logits.
    """
    index = 1 if clock == "cpu" else 0
    decode = [s[index] for s in step_s[:-1]]
    tenth = max(1, len(decode) // 10)
    return {
        "first_tenth_ms_per_step": 1e3 * median(decode[:tenth]) if decode else float("nan"),
        "last_tenth_ms_per_step": 1e3 * median(decode[-tenth:]) if decode else float("nan"),
        "decode_s": sum(decode),
        "final_step_s": step_s[-1][index],
        "outside_steps_s": total_s - sum(s[index] for s in step_s),
    }


def rollout_episodes(envs: TextGenerationVectorEnv, length: int, generator: torch.Generator) -> Episodes:
    """One ``native_rollout`` (untimed) and its batch as :class:`~agents.collect.Episodes`.

    EOS is suppressed, so every row ends (truncated) on the last step and that step's ``info``
    holds every row's log-probs, KL and score, as ``collect_episodes`` would gather them.
    """
    recorder = StepRecorder(envs)
    native_rollout(recorder, length, generator)  # type: ignore[arg-type]
    assert recorder.last is not None
    obs, _, _, truncated, info = recorder.last
    assert bool(truncated.all()) and info["_score"].all(), "every row must end on the last step"
    p = envs.prompt_length
    return Episodes(
        prompts=prompts_for(envs.num_envs),
        completions=list(info["completion"]),
        prompt_ids=obs["input_ids"][:, :p],
        prompt_mask=obs["attention_mask"][:, :p],
        response_ids=obs["input_ids"][:, p:],
        response_mask=obs["attention_mask"][:, p:],
        logprobs=info["logprobs"],
        ref_logprobs=info["ref_logprobs"],
        kl=info["kl"],
        scores=info["score"],
        env_steps=length,
    )


def update_k(batch: int, k: int) -> int | None:
    """Rows per prompt of the RLOO update at this batch (None: RLOO cannot run on it)."""
    if batch % k == 0:
        return k
    if batch % 2 == 0:
        return 2
    return None


def update_once(agent: RLOO, episodes: Episodes) -> int:
    """One ``learn`` iteration minus its rollout: rewards, then one gradient step. Returns tokens."""
    rewards = agent._sequence_rewards(episodes)
    agent.policy.train()
    with agent._autocast():
        agent._update(episodes, rewards)
    agent.policy.eval()
    return int(episodes.response_mask.sum())


SIDES = ("rollout", "update", "generate")  # generate: model.generate's rollout, the reference


class Point:
    """One ``(batch, length)`` pair: its env, its agent, its batch for the update and its timings."""

    def __init__(self, batch: int, length: int, args: argparse.Namespace, model_path: str) -> None:
        self.batch, self.length = batch, length
        self.sweeps: list[str] = []
        self.envs = make_native(batch, length, args.device, model_path)
        self.generator = torch.Generator(device=self.envs.device).manual_seed(args.seed)
        self.k = update_k(batch, args.k)
        self.agent = None
        if self.k is not None:
            self.agent = RLOO(
                "LMPolicy", self.envs, k=self.k, learning_rate=args.learning_rate, n_epochs=1,
                minibatch_size=None, seed=args.seed, verbose=0,
            )  # fmt: skip
        large = batch * length >= args.large_tokens
        self.repeats = args.large_repeats if large else args.repeats
        self.cuda = self.envs.device.type == "cuda"
        self.clock = args.clock
        self.times: dict[str, dict[str, list[float]]] = {side: {"wall": [], "cpu": []} for side in SIDES}
        self.breakdowns: list[dict[str, float]] = []
        self.episodes: Episodes | None = None

    def warm_up(self) -> None:
        """An untimed rollout (which also gives the update's batch), generate and update."""
        self.episodes = rollout_episodes(self.envs, self.length, self.generator)
        self.release()
        generate_rollout(self.envs, self.length, self.generator)
        if self.agent is not None:
            update_once(self.agent, self.episodes)
        self.release()

    def measure(self) -> None:
        recorder = StepRecorder(self.envs, timed=not self.cuda)
        wall, cpu, tokens = time_it(lambda: native_rollout(recorder, self.length, self.generator), self.cuda)  # type: ignore[arg-type]
        assert tokens == self.batch * self.length
        if recorder.step_s:
            total = cpu if self.clock == "cpu" else wall
            self.breakdowns.append(step_breakdown(recorder.step_s, self.clock, total))
        self.times["rollout"]["wall"].append(wall)
        self.times["rollout"]["cpu"].append(cpu)
        self.release()
        # The reference: model.generate on the same prompts, sampling, length and model.
        wall, cpu, _ = time_it(lambda: generate_rollout(self.envs, self.length, self.generator), self.cuda)
        self.times["generate"]["wall"].append(wall)
        self.times["generate"]["cpu"].append(cpu)
        agent, episodes = self.agent, self.episodes
        if agent is not None:
            assert episodes is not None
            wall, cpu, _ = time_it(lambda: update_once(agent, episodes), self.cuda)
            self.times["update"]["wall"].append(wall)
            self.times["update"]["cpu"].append(cpu)
        self.release()

    def release(self) -> None:
        """Free what this point holds between its timings, since every point stays alive: the
        env's KV cache (the next full reset builds a new one) and the update's gradients (the
        next step zeroes them anyway). On a GPU with ``--grid full`` that is many GB."""
        self.envs._decoder.clear()
        if self.agent is not None:
            self.agent.optimizer.zero_grad(set_to_none=True)

    def record(self, clock: str) -> dict[str, Any]:
        tokens = self.batch * self.length
        out: dict[str, Any] = {
            "batch": self.batch,
            "length": self.length,
            "sweeps": self.sweeps,
            "tokens": tokens,
            "repeats": self.repeats,
            "prompt_window": self.envs.prompt_length,
            "update_k": self.k,
            "rollout_steps": None,  # medians over the repeats of step_breakdown (CPU only)
        }
        if self.breakdowns:
            out["rollout_steps"] = {
                key: median([b[key] for b in self.breakdowns]) for key in self.breakdowns[0]
            }
        for side in SIDES:
            times = self.times[side][clock]
            if not times:
                out[side] = None
                continue
            seconds = median(times)
            out[side] = {
                "median_s": seconds,
                "us_per_token": 1e6 * seconds / tokens,
                "tokens_per_s": tokens / seconds,
                "wall_s": self.times[side]["wall"],
                "cpu_s": self.times[side]["cpu"],
            }
            if side != "update":
                out[side]["ms_per_step"] = 1e3 * seconds / self.length  # one token for every row
        return out


# --------------------------------------------------------------------------- the run


def grid(args: argparse.Namespace) -> list[tuple[int, int, list[str]]]:
    """``(batch, length, sweeps)`` of every point to measure, each pair once."""
    points: dict[tuple[int, int], list[str]] = {}
    if args.grid == "full":
        for batch in args.batches:
            for length in args.lengths:
                points.setdefault((batch, length), []).append("full")
    for length in args.lengths:
        points.setdefault((args.fixed_batch, length), []).append("length")
    for batch in args.batches:
        points.setdefault((batch, args.fixed_length), []).append("batch")
    return [(b, t, sweeps) for (b, t), sweeps in points.items()]


def length_ratio(points: list[dict[str, Any]], batch: int, long: int, short: int) -> dict[str, Any] | None:
    """Rollout ``time(long) / time(short)`` at ``batch`` (and the same for the update)."""
    by_length = {p["length"]: p for p in points if p["batch"] == batch}
    if long not in by_length or short not in by_length:
        return None
    out: dict[str, Any] = {"batch": batch, "long": long, "short": short, "token_ratio": long / short}
    for side in SIDES:
        a, b = by_length[long][side], by_length[short][side]
        out[side] = a["median_s"] / b["median_s"] if a and b else None
    steps_long, steps_short = by_length[long]["rollout_steps"], by_length[short]["rollout_steps"]
    out["rollout_parts"] = None
    if steps_long and steps_short:  # the same ratio for each part of the rollout (CPU only)
        parts = ("decode_s", "final_step_s", "outside_steps_s")
        out["rollout_parts"] = {key: steps_long[key] / steps_short[key] for key in parts}
    return out


def kept_window(envs: TextGenerationVectorEnv) -> int:
    """Prompt columns the env keeps for ``prompts_for(batch)``: its window minus all-padding columns."""
    _, mask = envs.core.encode_prompt_batch(prompts_for(envs.num_envs))
    return envs.prompt_length - leading_padding(mask)


def code_version() -> dict[str, Any]:
    """The commit measured, and the tracked files that differed from it (the checkout may be shared)."""
    import subprocess

    from benchmarks.common import REPO_ROOT

    def git(*cmd: str) -> str:
        try:
            done = subprocess.run(["git", *cmd], cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
        except (OSError, subprocess.SubprocessError):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    return {
        "commit": git("rev-parse", "HEAD") or None,
        "modified": git("diff", "--name-only", "HEAD").split(),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    code = code_version()  # at start: the modules measured are the ones imported now
    torch.set_num_threads(args.threads)
    window = task_prompt_window()
    n_positions = max([*args.lengths, args.fixed_length]) + window
    with tempfile.TemporaryDirectory(prefix="textrl-scaling-") as tmp:
        model = build_model(args.model_size, n_positions, args.dtype, args.seed, Path(tmp))
        points = []
        for batch, length, sweeps in grid(args):
            point = Point(batch, length, args, tmp)
            point.sweeps = sweeps
            points.append(point)
    for point in points:
        point.warm_up()
    for r in range(max(p.repeats for p in points)):  # interleaved: each round times every point once
        for point in points:
            if r < point.repeats:
                point.measure()
    records = [point.record(args.clock) for point in points]
    records.sort(key=lambda p: (p["batch"], p["length"]))
    kept = kept_window(next(p.envs for p in points if p.batch == args.fixed_batch))
    result: dict[str, Any] = {
        "settings": vars(args) | {"n_positions": n_positions, "prompt_window": window},
        "model": model,
        "machine": machine_info(args.device),
        "code": code,
        "clock": args.clock,
        "points": records,
        "ratio_512_64": length_ratio(records, args.fixed_batch, 512, 64),
        "ratio_longest_shortest": length_ratio(
            records, args.fixed_batch, max(args.lengths), min(args.lengths)
        ),
        "kept_prompt_window": kept,
    }
    for key in ("ratio_512_64", "ratio_longest_shortest"):
        if result[key] is not None:  # what the ratio would be if time were work (compute_floor)
            result[key]["compute_floor"] = floor_ratio(model, kept, result[key]["long"], result[key]["short"])
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Rollout and update time vs response length and batch size.")
    parser.add_argument("--lengths", type=int, nargs="+", default=[32, 64, 128, 256, 512])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16, 64, 256])
    parser.add_argument("--fixed-batch", type=int, default=16, help="batch of the length sweep")
    parser.add_argument("--fixed-length", type=int, default=64, help="length of the batch sweep")
    parser.add_argument(
        "--grid", choices=["sweeps", "full"], default="sweeps",
        help="sweeps: lengths at --fixed-batch and batches at --fixed-length (default); full: every pair",
    )  # fmt: skip
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32")
    parser.add_argument("--model-size", choices=sorted(MODEL_SIZES), default="tiny")
    parser.add_argument(
        "--clock", choices=["cpu", "wall"], default=None,
        help="process CPU time (fair on a shared CPU, one torch thread) or wall time (quiet machine, GPU); "
        "default: cpu on CPU, wall on CUDA",
    )  # fmt: skip
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1 makes the cpu clock fair)"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--large-repeats", type=int, default=1, help="repeats of the points of >= --large-tokens"
    )
    parser.add_argument(
        "--large-tokens", type=int, default=16384, help="batch x length from which a point is large"
    )
    parser.add_argument("--k", type=int, default=4, help="RLOO rows per prompt of the update")
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--json", default=None, help="write the result here (e.g. benchmarks/out/scaling.json)"
    )
    parser.add_argument("--plot", default=None, help="write the PNG here (e.g. benchmarks/out/scaling.png)")
    args = parser.parse_args(argv)
    if args.clock is None:
        args.clock = "wall" if args.device.startswith("cuda") else "cpu"
    for name in ("lengths", "batches"):
        if min(getattr(args, name)) < 1:
            parser.error(f"--{name} must be positive")
    if args.dtype == "bfloat16" and not args.device.startswith("cuda"):
        print("note: bfloat16 on CPU is emulated by many kernels; expect it to be slower than float32")
    result = run(args)
    report(result)
    if args.json:
        write_json(args.json, result)
        print(f"JSON: {args.json}")
    if args.plot:
        plot(result, args.plot)
        print(f"plot: {args.plot}")
    return result


if __name__ == "__main__":
    main()
