"""textrl's RLOO and GRPO against TRL's ``RLOOTrainer`` and ``GRPOTrainer`` on identical settings, in one run.

Both sides train the identical policy (same weights, tokenizer, prompt schedule, reward function,
B prompts x k samples, response length, learning rate, KL coefficient ``beta``, optimizer settings,
seed) with the same algorithm, each repeat in a fresh process, alternating sides so background load
falls on both alike. For every algorithm (``--algos``), batch size (``--completions-per-step``,
completions = B x k, so B = completions / k) and seed (``--seeds``) it reports the medians of:

- throughput mode (default): completions/s, peak memory (RSS above the point where each side has
  imported its libraries and built nothing) and the mean score over the last ``reward_window``
  steps, after the same number of steps (= completions) on both sides;
- ``--mode time-to-reward``: wall-clock training time until the moving mean score over
  ``reward_window`` steps first reaches ``--target-reward`` (0.7), with ``--steps`` as the cap
  (300 unless given); a side that never reaches it is reported as such, not timed.

    python -m benchmarks.train_vs_trl                                        # RLOO, 8 x 4, 3 repeats of 10 steps
    python -m benchmarks.train_vs_trl --algos rloo grpo --completions-per-step 16 32 64 128 \\
        --repeats 5 --steps 10 --json benchmarks/out/train_vs_trl.json
    python -m benchmarks.train_vs_trl --mode time-to-reward --algos rloo grpo --completions-per-step 16 \\
        --target-reward 0.7 --repeats 3 --json benchmarks/out/time_to_reward.json

Needs the ``bench`` extra: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks import common, measure

SIDES = {"textrl": "benchmarks.textrl_train", "trl": "benchmarks.trl_train"}
KEYS = ("completions_per_s", "completions_per_s_median_step", "peak_mb", "reward_final", "train_wall_s")
TIME_TO_REWARD_CAP = 300  # steps, when --steps is not given in time-to-reward mode


def compare(settings: common.BenchSettings, repeats: int) -> dict[str, Any]:
    """Run both sides ``repeats`` times (interleaved); return per-side medians, ratios and all runs."""
    runs = common.run_interleaved(list(SIDES.values()), settings, repeats)
    by_side = {side: runs[module] for side, module in SIDES.items()}
    medians = {side: measure.median_summary(by_side[side], KEYS) for side in SIDES}
    textrl, trl = medians["textrl"], medians["trl"]
    result: dict[str, Any] = {
        "settings": settings.to_dict(),
        "repeats": repeats,
        "machine": measure.machine_info(settings.device),
        "medians": medians,
        "speedup_completions_per_s": textrl["completions_per_s"] / trl["completions_per_s"],
        "peak_memory_ratio": textrl["peak_mb"] / trl["peak_mb"],
        "reward_difference": textrl["reward_final"] - trl["reward_final"],
        "runs": by_side,
    }
    floor = by_side["textrl"][0].get("compute_floor")
    if floor is not None:  # the same work on both sides: one floor
        result["compute_floor"] = floor
        result["step_over_floor"] = {
            side: settings.completions_per_step
            / medians[side]["completions_per_s_median_step"]
            / floor["step_s"]
            for side in SIDES
        }
    if settings.target_reward is not None:
        reached = {side: time_to_reward(by_side[side]) for side in SIDES}
        result["time_to_reward"] = reached
        walls = [reached[side]["median_wall_s"] for side in SIDES]
        result["time_to_reward_ratio"] = None if None in walls else walls[0] / walls[1]
    return result


def time_to_reward(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median wall-clock and steps to the target over the runs that reached it (None if any did not)."""
    reached = [run for run in runs if run["reached_target"]]
    all_reached = len(reached) == len(runs)
    return {
        "reached": f"{len(reached)}/{len(runs)}",
        "median_wall_s": measure.median([r["train_wall_s"] for r in runs]) if all_reached else None,
        "median_steps": measure.median([r["steps_run"] for r in runs]) if all_reached else None,
        "wall_s": [r["train_wall_s"] for r in runs],
        "steps": [r["steps_run"] for r in runs],
    }


def grid(args: argparse.Namespace, base: common.BenchSettings) -> list[common.BenchSettings]:
    """One ``BenchSettings`` per (algo, completions per step, seed), validated before anything runs."""
    out = []
    for algo in args.algos or [base.algo]:
        for completions in args.completions_per_step or [base.completions_per_step]:
            if completions % base.k:
                raise ValueError(
                    f"--completions-per-step {completions} is not a multiple of k={base.k}: a step is "
                    f"B prompts x k samples; choose multiples of {base.k} or change --k"
                )
            for seed in args.seeds or [base.seed]:
                out.append(base.replace(algo=algo, prompts_per_step=completions // base.k, seed=seed))
    return out


def parse_args(argv: list[str] | None) -> tuple[argparse.Namespace, common.BenchSettings]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common.add_settings_arguments(parser)
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per side (medians quoted)")
    parser.add_argument(
        "--algos", nargs="+", choices=common.ALGOS, help="algorithms to compare (default: --algo)"
    )
    parser.add_argument(
        "--completions-per-step",
        nargs="+",
        type=int,
        help="batch sizes B x k to sweep (default: the settings')",
    )
    parser.add_argument("--seeds", nargs="+", type=int, help="seeds to sweep (default: --seed)")
    parser.add_argument("--mode", choices=("throughput", "time-to-reward"), default="throughput")
    args = parser.parse_args(argv)
    if args.mode == "time-to-reward":
        if args.target_reward is None:
            args.target_reward = 0.7
        if args.steps is None:
            args.steps = TIME_TO_REWARD_CAP
    elif args.target_reward is not None:
        parser.error("--target-reward needs --mode time-to-reward")
    return args, common.settings_from_args(args)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args, base = parse_args(argv)
    points = grid(args, base)
    results = [compare(settings, args.repeats) for settings in points]
    record = {"mode": args.mode, "repeats": args.repeats, "results": results}
    if args.json:
        measure.write_json(args.json, record)
    print_summary(args.mode, args.repeats, results)
    return record


def print_summary(mode: str, repeats: int, results: list[dict[str, Any]]) -> None:
    """One table per (algo, completions per step, seed): textrl, TRL and their ratio for each metric."""
    for r in results:
        s, m = r["settings"], r["medians"]
        textrl, trl = m["textrl"], m["trl"]
        title = (
            f"{s['algo'].upper()}, {s['prompts_per_step']} prompts x k={s['k']}, {s['max_new_tokens']} new tokens, "
            f"seed {s['seed']}, {s['device']} (median of {repeats} runs each)"
        )
        rows = [
            ["completions/s", textrl["completions_per_s"], trl["completions_per_s"], r["speedup_completions_per_s"]],
            ["completions/s (median step)", textrl["completions_per_s_median_step"],
             trl["completions_per_s_median_step"],
             textrl["completions_per_s_median_step"] / trl["completions_per_s_median_step"]],
            ["peak memory MB", textrl["peak_mb"], trl["peak_mb"], r["peak_memory_ratio"]],
        ]  # fmt: skip
        if "compute_floor" in r:
            over = r["step_over_floor"]
            rows.append([f"median step / compute floor ({r['compute_floor']['step_s']:.3f} s)", over["textrl"],
                         over["trl"], over["textrl"] / over["trl"]])  # fmt: skip
        if mode == "throughput":
            window = min(s["reward_window"], s["steps"])
            rows.append([f"mean score, last {window} of {s['steps']} steps", textrl["reward_final"],
                         trl["reward_final"], f"{r['reward_difference']:+.3f} (difference)"])  # fmt: skip
        else:
            ttr, ratio = r["time_to_reward"], r["time_to_reward_ratio"]
            rows += [
                [f"s to moving-mean score {s['target_reward']}", ttr["textrl"]["median_wall_s"] or "-",
                 ttr["trl"]["median_wall_s"] or "-", "-" if ratio is None else ratio],
                ["steps to it", ttr["textrl"]["median_steps"] or "-", ttr["trl"]["median_steps"] or "-", ""],
                [f"runs that reached it (cap {s['steps']} steps)", ttr["textrl"]["reached"], ttr["trl"]["reached"], ""],
            ]  # fmt: skip
        measure.print_table(title, ["metric", "textrl", "TRL", "textrl / TRL"], rows)


if __name__ == "__main__":
    main()
