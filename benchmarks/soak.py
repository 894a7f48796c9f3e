"""Soak run: train for thousands of episodes on CPU and check that memory and open files stay flat.

Trains an agent on ``textrl/Sentiment-v0`` (the embedded default model) in short ``learn`` calls,
saving a checkpoint every ``--save-every`` iterations (the file writes a long run does) and logging
to a folder. Every ``--every`` episodes it samples the resident set size (``psutil``) and the open
file descriptors, and at the end compares the second half of the run with the first half after
warm-up: the run is **flat** when RSS grew by at most ``--tolerance-mib`` and the open files by at
most ``--fd-tolerance``. Results go to a CSV (one row per sample) and a JSON record (settings,
samples, verdict).

    python -m benchmarks.soak --episodes 5000 --every 250 --out benchmarks/out/soak
    python -m benchmarks.soak --episodes 64 --every 16 --out /tmp/soak   # a smoke run

Timing figures here mean nothing on a shared machine; the memory curve does.
"""

from __future__ import annotations

import argparse
import csv
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import benchmarks.measure  # noqa: F401  (offline switches first)


@dataclass(frozen=True)
class SoakSettings:
    episodes: int = 5000
    every: int = 250
    algo: str = "RLOO"
    num_envs: int = 8
    max_new_tokens: int = 8
    save_every: int = 20
    warmup_fraction: float = 0.2
    tolerance_mib: float = 32.0
    fd_tolerance: int = 2
    seed: int = 0


def parse_args(argv: Sequence[str] | None = None) -> tuple[SoakSettings, Path]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    defaults = SoakSettings()
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/out/soak"), help="folder for soak.csv/json"
    )
    args = vars(parser.parse_args(argv))
    out = args.pop("out")
    settings = SoakSettings(**args)
    if settings.episodes < settings.every or settings.every < settings.num_envs:
        parser.error("need episodes >= every >= num_envs")
    return settings, out


def sample(process: Any, episodes: int, started: float) -> dict[str, float]:
    gc.collect()
    return {
        "episodes": episodes,
        "seconds": round(time.perf_counter() - started, 3),
        "rss_mib": process.memory_info().rss / 2**20,
        "open_files": process.num_fds() if hasattr(process, "num_fds") else len(process.open_files()),
        "python_objects": len(gc.get_objects()),
    }


def verdict(samples: list[dict[str, float]], settings: SoakSettings) -> dict[str, Any]:
    """Flat when the later half's median RSS / max open files exceed the early half's by at most the tolerances."""
    kept = samples[max(1, int(len(samples) * settings.warmup_fraction)) :] or samples
    half = max(1, len(kept) // 2)
    early, late = kept[:half], kept[half:] or kept[-1:]
    rss_growth = statistics.median(s["rss_mib"] for s in late) - statistics.median(
        s["rss_mib"] for s in early
    )
    fd_growth = max(s["open_files"] for s in late) - max(s["open_files"] for s in early)
    return {
        "rss_growth_mib": round(rss_growth, 2),
        "open_files_growth": int(fd_growth),
        "tolerance_mib": settings.tolerance_mib,
        "fd_tolerance": settings.fd_tolerance,
        "flat": rss_growth <= settings.tolerance_mib and fd_growth <= settings.fd_tolerance,
        "samples_compared": [len(early), len(late)],
    }


def soak(settings: SoakSettings, out: Path) -> dict[str, Any]:
    import gymnasium as gym
    import psutil
    import torch

    import agents
    import textrl_env  # noqa: F401  (registers the ids)

    torch.set_num_threads(1)
    process = psutil.Process(os.getpid())
    env = gym.make_vec(
        "textrl/Sentiment-v0", num_envs=settings.num_envs, vectorization_mode="vector_entry_point",
        max_new_tokens=settings.max_new_tokens,
    )  # fmt: skip
    algo = getattr(agents, settings.algo)
    policy = "LMActorCriticPolicy" if settings.algo == "PPO" else "LMPolicy"
    work = Path(tempfile.mkdtemp(prefix="textrl-soak-"))
    agent = algo(
        policy, env, seed=settings.seed, verbose=0, tensorboard_log=work / "logs", learning_rate=1e-4
    )
    per_iteration = settings.num_envs * settings.max_new_tokens  # at most this many steps per rollout
    started = time.perf_counter()
    samples = [sample(process, 0, started)]
    episodes, next_sample, iteration = 0, settings.every, 0
    while episodes < settings.episodes:
        agent.learn(per_iteration, reset_num_timesteps=False)
        iteration += 1
        episodes = iteration * settings.num_envs
        if iteration % settings.save_every == 0:
            agent.save(work / "checkpoint")
        if episodes >= next_sample:
            samples.append(sample(process, episodes, started))
            next_sample += settings.every
            print(json.dumps(samples[-1]), flush=True)
    shutil.rmtree(work, ignore_errors=True)
    result = {"settings": asdict(settings), "samples": samples, "verdict": verdict(samples, settings)}
    write_outputs(result, out)
    return result


def write_outputs(result: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "soak.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(result["samples"][0]))
        writer.writeheader()
        writer.writerows(result["samples"])
    (out / "soak.json").write_text(json.dumps(result, indent=2) + "\n")


def main(argv: Sequence[str] | None = None) -> int:
    settings, out = parse_args(argv)
    result = soak(settings, out)
    v = result["verdict"]
    print(
        f"RSS growth {v['rss_growth_mib']:+.1f} MiB (tolerance {v['tolerance_mib']}), open files "
        f"{v['open_files_growth']:+d} (tolerance {v['fd_tolerance']}): {'FLAT' if v['flat'] else 'GROWING'}"
    )
    return 0 if v["flat"] else 1


if __name__ == "__main__":
    sys.exit(main())
