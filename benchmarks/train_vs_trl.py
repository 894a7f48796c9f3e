"""textrl's RLOO against TRL's ``RLOOTrainer`` on identical settings, measured in one run.

Both sides train the identical tiny policy (same weights, tokenizer, prompts schedule, reward
function, B prompts x k samples, response length, learning rate, KL coefficient and estimator,
optimizer settings) for the same number of steps, each repeat in a fresh process, alternating
sides so background load falls on both alike. Reported: medians of completions/s, peak memory
(RSS above the point where each side has imported its libraries and built nothing), and the mean
reward-model score over the last steps (the same number of completions on both sides).

    python -m benchmarks.train_vs_trl                       # 3 repeats of 10 steps
    python -m benchmarks.train_vs_trl --repeats 5 --steps 20 --json benchmarks/out/train_vs_trl.json

Needs the ``bench`` extra: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks import common, measure

SIDES = {"textrl": "benchmarks.textrl_rloo", "trl": "benchmarks.trl_rloo"}
KEYS = ("completions_per_s", "completions_per_s_median_step", "peak_mb", "reward_final", "train_wall_s")


def compare(settings: common.BenchSettings, repeats: int) -> dict[str, Any]:
    """Run both sides ``repeats`` times (interleaved); return per-side medians, ratios and all runs."""
    runs = common.run_interleaved(list(SIDES.values()), settings, repeats)
    medians = {side: measure.median_summary(runs[module], KEYS) for side, module in SIDES.items()}
    textrl, trl = medians["textrl"], medians["trl"]
    return {
        "settings": settings.to_dict(),
        "repeats": repeats,
        "machine": measure.machine_info(settings.device),
        "medians": medians,
        "speedup_completions_per_s": textrl["completions_per_s"] / trl["completions_per_s"],
        "peak_memory_ratio": textrl["peak_mb"] / trl["peak_mb"],
        "reward_difference": textrl["reward_final"] - trl["reward_final"],
        "runs": {side: runs[module] for side, module in SIDES.items()},
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common.add_settings_arguments(parser)
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per side (medians quoted)")
    args = parser.parse_args(argv)
    settings = common.settings_from_args(args)
    result = compare(settings, args.repeats)
    if args.json:
        measure.write_json(args.json, result)
    m = result["medians"]
    s = settings
    measure.print_table(
        f"RLOO, {s.prompts_per_step} prompts x k={s.k}, {s.max_new_tokens} new tokens, {s.steps} steps, "
        f"{s.device} (median of {args.repeats} runs each)",
        ["metric", "textrl", "TRL", "textrl / TRL"],
        [
            ["completions/s", m["textrl"]["completions_per_s"], m["trl"]["completions_per_s"],
             result["speedup_completions_per_s"]],
            ["completions/s (median step)", m["textrl"]["completions_per_s_median_step"],
             m["trl"]["completions_per_s_median_step"],
             m["textrl"]["completions_per_s_median_step"] / m["trl"]["completions_per_s_median_step"]],
            ["peak memory MB", m["textrl"]["peak_mb"], m["trl"]["peak_mb"], result["peak_memory_ratio"]],
            [f"mean score, last {min(s.reward_window, s.steps)} steps", m["textrl"]["reward_final"],
             m["trl"]["reward_final"], f"{result['reward_difference']:+.3f} (difference)"],
        ],
    )  # fmt: skip
    return result


if __name__ == "__main__":
    main()
