"""Rollout throughput: textrl's native vector env against ``model.generate`` and the "sync" vector env.

Every side produces the same work: ``batch`` prompts, exactly ``length`` sampled tokens each
(EOS suppressed everywhere, so no side stops early), pure sampling at temperature 1, on the same
model. The env side is a full rollout: reset, ``length`` steps sampling from
``envs.next_token_logits``, and the end-of-episode scoring the env does (reference log-probs,
KL, decoding, VADER); it runs twice, with textrl's sampler and with ``generate``'s
(``torch.multinomial``). ``generate`` gets the prompts already tokenized, as the env has them.

    python -m benchmarks.rollout                          # defaults: batch 32, length 16, 5 repeats
    python -m benchmarks.rollout --batch 64 --length 64 --json benchmarks/out/rollout.json

Prints a rich table of medians and the ratios textrl/generate (also with the same sampler) and
textrl/sync.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import torch

import textrl_env  # noqa: F401  (registers the ids)
from agents.policies import LMPolicy, sample_from_logits
from benchmarks.measure import machine_info, median, print_table, write_json
from textrl_env import TextGenerationVectorEnv
from textrl_env.default_model import DEFAULT_MODEL_PATH, SENTIMENT_PROMPTS


def make_native(batch: int, length: int, device: str, model: str) -> TextGenerationVectorEnv:
    return gym.make_vec(
        "textrl/Sentiment-v0", num_envs=batch, vectorization_mode="vector_entry_point",
        max_new_tokens=length, device=device, model=model,
    ).unwrapped  # fmt: skip


def prompts_for(batch: int) -> list[str]:
    return [SENTIMENT_PROMPTS[i % len(SENTIMENT_PROMPTS)] for i in range(batch)]


def multinomial_sampler(logits: torch.Tensor, temperature: float, generator: torch.Generator) -> torch.Tensor:
    """``generate``'s own way to draw a token (softmax, then ``torch.multinomial``)."""
    probs = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def native_rollout(
    envs: TextGenerationVectorEnv,
    length: int,
    generator: torch.Generator,
    sampler: Callable[..., torch.Tensor] = sample_from_logits,
) -> int:
    """One rollout of ``length`` tokens per row; returns the number of tokens generated.

    ``sampler`` draws the actions: textrl's policies' own (default) or :func:`multinomial_sampler`,
    to separate what the env gains from what the faster sampler gains.
    """
    envs.reset(options={"prompt": prompts_for(envs.num_envs)})
    eos = envs.eos_token_id
    for _ in range(length):
        logits = envs.next_token_logits.clone()
        logits[:, eos] = float("-inf")  # as generate(min_new_tokens=length): every row runs to the end
        envs.step(sampler(logits, envs.temperature, generator=generator))
    return envs.num_envs * length


def generate_rollout(envs: TextGenerationVectorEnv, length: int, generator: torch.Generator) -> int:
    """``model.generate`` on the same prompts (left-padded to the longest), same sampling and length."""
    core = envs.core
    ids, mask = core.encode_prompt_batch(prompts_for(envs.num_envs))
    torch.manual_seed(int(torch.randint(2**31, (1,), generator=generator, device=generator.device)))
    with torch.no_grad():
        out = core.model.generate(
            input_ids=ids, attention_mask=mask, do_sample=True, top_k=0, top_p=1.0, temperature=1.0,
            min_new_tokens=length, max_new_tokens=length, pad_token_id=core.pad_token_id,
        )  # fmt: skip
    return int(out[:, ids.shape[1] :].numel())


def sync_rollout(sync: Any, policy: LMPolicy, length: int, generator: torch.Generator) -> int:
    """The reference path: Gymnasium's SyncVectorEnv of single envs, a policy forward per step."""
    obs, _ = sync.reset(options={"prompt": SENTIMENT_PROMPTS[0]})
    eos = sync.unwrapped.get_attr("eos_token_id")[0]
    for _ in range(length):
        with torch.no_grad():
            logits = policy(obs)
        logits[:, eos] = float("-inf")
        actions = sample_from_logits(logits, policy.temperature, generator=generator)
        obs, *_ = sync.step(actions.cpu().numpy())
    return sync.num_envs * length


def time_it(fn: Callable[[], int], sync_cuda: bool) -> tuple[float, float, int]:
    """``(wall seconds, process CPU seconds, tokens)`` of one call.

    CPU time is the fairer clock on a shared machine with one torch thread: it does not count
    the time the process waited for a core. On CUDA, wall time (after a synchronize) is the one.
    """
    if sync_cuda:
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    tokens = fn()
    if sync_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu, tokens


def startup_seconds() -> tuple[float, float]:
    """``(wall, CPU)`` seconds of a fresh ``python -c 'gym.make("textrl/Sentiment-v0")'``, imports included.

    CPU time (user + system of the child) is what a quiet core would take; wall time also counts
    waiting for a core on a shared machine.
    """
    code = "import gymnasium as gym, textrl_env; gym.make('textrl/Sentiment-v0')"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    envs = make_native(args.batch, args.length, args.device, args.model)
    sides: dict[str, Callable[[], int]] = {
        "textrl vector env": lambda: native_rollout(envs, args.length, gen),
        "textrl vector env, multinomial sampler": lambda: native_rollout(
            envs, args.length, gen, multinomial_sampler
        ),
        "transformers generate": lambda: generate_rollout(envs, args.length, gen),
    }
    if not args.skip_sync:
        sync = gym.make_vec("textrl/Sentiment-v0", num_envs=args.batch, vectorization_mode="sync",
                            max_new_tokens=args.length, model=args.model, device=args.device)  # fmt: skip
        policy = LMPolicy(sync.unwrapped.envs[0].unwrapped.model, temperature=1.0)
        sides["gym sync vector env"] = lambda: sync_rollout(sync, policy, args.length, gen)
    gen = torch.Generator(device=envs.device).manual_seed(0)
    cuda = envs.device.type == "cuda"
    wall: dict[str, list[float]] = {name: [] for name in sides}
    cpu: dict[str, list[float]] = {name: [] for name in sides}
    tokens: dict[str, int] = {}
    for fn in sides.values():  # warm-up
        time_it(fn, cuda)
    for _ in range(args.repeats):  # interleaved, so background load falls on every side alike
        for name, fn in sides.items():
            w, c, tokens[name] = time_it(fn, cuda)
            wall[name].append(w)
            cpu[name].append(c)
    clock = cpu if args.clock == "cpu" else wall
    result: dict[str, Any] = {
        "settings": vars(args) | {"model": args.model},
        "machine": machine_info(args.device),
    }
    result["sides"] = {
        name: {
            "median_s": median(clock[name]),
            "tokens": tokens[name],
            "tokens_per_s": tokens[name] / median(clock[name]),
            "wall_s": wall[name],
            "cpu_s": cpu[name],
        }
        for name in sides
    }
    tps = {name: side["tokens_per_s"] for name, side in result["sides"].items()}
    result["ratio_vs_generate"] = tps["textrl vector env"] / tps["transformers generate"]
    result["ratio_vs_generate_same_sampler"] = (
        tps["textrl vector env, multinomial sampler"] / tps["transformers generate"]
    )
    if "gym sync vector env" in tps:
        result["ratio_vs_sync"] = tps["textrl vector env"] / tps["gym sync vector env"]
    if not args.skip_startup:
        runs = [startup_seconds() for _ in range(3)]
        result["gym_make_wall_s"] = median([wall for wall, _ in runs])
        result["gym_make_cpu_s"] = median([cpu for _, cpu in runs])
    return result


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description="Rollout tokens/s: vector env vs generate vs sync.")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--length", type=int, default=16, help="new tokens per row")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--model", default=str(DEFAULT_MODEL_PATH), help="model id or path (default: embedded)"
    )
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--skip-sync", action="store_true", help="leave out the slow sync reference")
    parser.add_argument("--skip-startup", action="store_true", help="do not time gym.make in a fresh process")
    parser.add_argument(
        "--clock",
        choices=["cpu", "wall"],
        default="wall",
        help="wall (default; use on a quiet machine or GPU) or process CPU time (shared CPU)",
    )
    parser.add_argument("--json", default=None, help="write the result here")
    args = parser.parse_args(argv)
    result = run(args)
    rows = [
        [name, f"{side['tokens_per_s']:,.0f}", f"{side['median_s']:.3f}", side["tokens"]]
        for name, side in result["sides"].items()
    ]
    print_table(
        f"Rollout, batch {args.batch} x {args.length} tokens, {args.device}, {args.clock} clock "
        f"(median of {args.repeats})",
        ["side", "tokens/s", "median s", "tokens"],
        rows,
    )
    print(f"textrl / generate: {result['ratio_vs_generate']:.2f}x")
    print(f"textrl / generate, both with torch.multinomial: {result['ratio_vs_generate_same_sampler']:.2f}x")
    if "ratio_vs_sync" in result:
        print(f"textrl / sync:     {result['ratio_vs_sync']:.2f}x")
    if "gym_make_wall_s" in result:
        print(
            f"gym.make('textrl/Sentiment-v0') in a fresh process: {result['gym_make_wall_s']:.2f} s wall, "
            f"{result['gym_make_cpu_s']:.2f} s CPU"
        )
    if args.json:
        write_json(args.json, result)
    return result


if __name__ == "__main__":
    main()
