"""Data-parallel scaling: RLOO on N processes against 1, on the same global batch.

The global batch is ``BenchSettings``' ``prompts_per_step x k`` completions. One process holds it
all; ``N`` ranks (``torchrun --standalone --nproc_per_node N``) hold ``1/N`` of it each, so every
run makes the same optimizer step from the same number of completions, and the figure that differs
is the wall time of a step: rollout, reward, reference, backward with DDP's gradient all-reduce,
and the statistics' all-reduces.

    python -m benchmarks.distributed --nproc 1 2 --steps 10 --json benchmarks/out/distributed.json
    python -m benchmarks.distributed --nproc 1 2 4 8 --device cuda --prompts-per-step 64   # one GPU per rank

On CPU each rank runs ``torch_threads`` intra-op threads, so N ranks use N times the cores of one
process: on a 2-core machine 2 ranks can at best halve a step that is all compute, and gloo's
all-reduces and the duplicated reference and reward model take part of that back. On GPUs each rank
has its own device (``cuda:LOCAL_RANK``) and NCCL all-reduces the gradients.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import common, measure


def run_rank(settings: common.BenchSettings, out: Path | None) -> dict[str, Any]:
    """This rank's share of the run; rank 0 returns (and writes) the record for the whole run."""
    import torch

    from agents import RLOO, distributed
    from textrl_env import TextGenerationVectorEnv

    common.configure_torch(settings)
    info = distributed.setup()
    rows = settings.completions_per_step
    if rows % (info.world_size * settings.k) != 0:
        raise ValueError(
            f"a global batch of {rows} completions does not split into {info.world_size} ranks of whole "
            f"groups of k={settings.k}; choose prompts_per_step as a multiple of {info.world_size}"
        )
    device = str(distributed.local_device("cuda")) if settings.device.startswith("cuda") else settings.device
    model, tokenizer = common.build_policy_and_tokenizer(settings)
    env = TextGenerationVectorEnv(
        model,
        tokenizer,
        prompts=list(settings.prompts),
        reward_model=common.get_reward(settings.reward),
        num_envs=rows // info.world_size,
        kl_coef=settings.kl_coef,
        kl_estimator=settings.kl_estimator,
        max_new_tokens=settings.max_new_tokens,
        temperature=settings.temperature,
        device=device,
    )
    agent = RLOO(
        "LMPolicy", env, k=settings.k, learning_rate=settings.learning_rate, seed=settings.seed, verbose=0
    )
    step_times = []
    for _ in range(settings.steps):
        start = time.perf_counter()
        agent.learn(total_timesteps=1, reset_num_timesteps=False)  # one rollout + one update
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        step_times.append(time.perf_counter() - start)
    steady = step_times[1:] or step_times  # the first step pays one-off warm-up costs
    record = {
        "world_size": info.world_size,
        "rows_per_rank": rows // info.world_size,
        "global_batch": rows,
        "step_times_s": step_times,
        "median_step_s": measure.median(steady),
        "completions_per_s": rows / measure.median(steady),
        "settings": settings.to_dict(),
        "machine": measure.machine_info(device),
    }
    if info.is_main and out is not None:
        measure.write_json(out, record)
    return record


def launch(nproc: int, settings: common.BenchSettings, timeout_s: float) -> dict[str, Any]:
    """Run one configuration in fresh processes (1: plain python; N: torchrun) and read rank 0's record."""
    with tempfile.TemporaryDirectory(prefix="textrl-bench-dist-") as tmp:
        settings_path, out_path = Path(tmp) / "settings.json", Path(tmp) / "result.json"
        settings_path.write_text(json.dumps(settings.to_dict()))
        worker = [
            "-m",
            "benchmarks.distributed",
            "--worker",
            "--settings",
            str(settings_path),
            "--json",
            str(out_path),
        ]
        launcher = (
            [] if nproc == 1 else ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
        )
        env = dict(os.environ, OMP_NUM_THREADS=str(settings.torch_threads))
        subprocess.run(
            [sys.executable, *launcher, *worker], cwd=common.REPO_ROOT, env=env, check=True, timeout=timeout_s
        )
        return json.loads(out_path.read_text())


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common.add_settings_arguments(parser)
    parser.add_argument("--nproc", type=int, nargs="+", default=[1, 2], help="process counts to compare")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per configuration")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)  # one rank of a run
    args = parser.parse_args(argv)
    settings = common.settings_from_args(args)
    if args.worker:
        return run_rank(settings, args.json)
    runs = {n: launch(n, settings, args.timeout) for n in args.nproc}
    base = runs[min(runs)]
    result = {
        "runs": [runs[n] for n in sorted(runs)],
        "speedup_vs_fewest": {str(n): base["median_step_s"] / runs[n]["median_step_s"] for n in sorted(runs)},
    }
    if args.json:
        measure.write_json(args.json, result)
    if not args.quiet:
        measure.print_table(
            f"RLOO, a global batch of {settings.completions_per_step} completions, {settings.steps} steps",
            ["processes", "rows per rank", "median step (s)", "completions/s", f"speedup vs {min(runs)}"],
            [
                [n, runs[n]["rows_per_rank"], runs[n]["median_step_s"], runs[n]["completions_per_s"],
                 result["speedup_vs_fewest"][str(n)]]
                for n in sorted(runs)
            ],
        )  # fmt: skip
    return result


if __name__ == "__main__":
    main()
