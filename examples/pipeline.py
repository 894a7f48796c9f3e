"""The RLHF loop from Python: SFT, then rounds of pairs -> labels -> reward model -> RL -> evaluation.

``textrl pipeline --run-dir runs/pipeline`` runs the same thing from the command line. Here the
loop is driven from a script: the settings are a dataclass, the result is a run directory, and
``summary.json`` holds every round's gold score (what the simulated annotator truly wants), proxy
score (what the learned reward model says) and KL to the SFT model.

    python examples/pipeline.py                     # about 2 minutes on a laptop CPU
    python examples/pipeline.py --rounds 1 --tiny   # a smoke run (seconds)

Run it again with ``--resume`` after a Ctrl-C: it continues where it stopped.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

from agents.pipeline import PipelineConfig, run_pipeline

# A budget small enough for a smoke test; drop it to use the defaults (which beat SFT every round).
TINY = {
    "sft_demonstrations": 200,
    "sft_epochs": 1,
    "pairs_per_round": 64,
    "rm_epochs": 1,
    "rl_timesteps": 16 * 16 * 2,
    "num_envs": 16,
    "eval_samples": 2,
}


def main(argv: Sequence[str] | None = None) -> dict:
    """Run the loop and print the gold and proxy scores of each round; returns ``summary.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run-dir", default="runs/pipeline-example", help="where the run is written")
    parser.add_argument("--rounds", type=int, default=3, help="feedback rounds after SFT")
    parser.add_argument("--tiny", action="store_true", help="a tiny budget, for a smoke run")
    parser.add_argument("--resume", action="store_true", help="continue a stopped run in --run-dir")
    args = parser.parse_args(argv)

    config = PipelineConfig(
        run_dir=args.run_dir,
        rounds=args.rounds,
        agent="rloo",  # or "reinforce", "ppo"
        kl_coef=0.05,  # the KL penalty to the SFT model; kl_target=... makes it adaptive
        early_stop_tolerance=None,  # e.g. 0.1: stop RL when gold falls 0.1 below its best while proxy rises
        **(TINY if args.tiny else {}),
    )
    run_dir = run_pipeline(config, resume=args.resume, overwrite=not args.resume)
    summary = json.loads((Path(run_dir) / "summary.json").read_text())
    for r in summary["rounds"]:
        print(
            f"round {r['round']}: gold {r['gold_sft']:+.3f} (SFT) -> {r['gold_policy']:+.3f} (policy), "
            f"proxy {r['proxy_policy']:+.3f}, KL to SFT {r['kl']:.2f}, reward-model accuracy {r['rm_accuracy']:.2f}"
        )
    return summary


if __name__ == "__main__":
    main()
