"""Where a training step's time goes, textrl beside TRL: per-phase seconds per step, same settings.

Each side trains as in ``train_vs_trl`` (fresh processes, sides interleaved), with the phase clock
of ``benchmarks/phase_clock.py`` on, and the medians over the repeats of each phase's mean time
per step are printed side by side, one table per batch size:

    python -m benchmarks.profile_step --algo grpo --completions-per-step 32 64 128 --repeats 3 --steps 8 \\
        --json benchmarks/out/profile_step.json

Needs the ``bench`` extra: ``pip install -e ".[bench]"``.
"""

from __future__ import annotations

import argparse
from typing import Any

from benchmarks import common, measure, phase_clock
from benchmarks.train_vs_trl import SIDES


def profile(settings: common.BenchSettings, repeats: int) -> dict[str, Any]:
    """Both sides' per-phase medians (ms per step) at ``settings``."""
    runs = common.run_interleaved(list(SIDES.values()), settings.replace(profile_phases=True), repeats)
    out: dict[str, Any] = {"settings": settings.to_dict(), "repeats": repeats, "phases_ms": {}}
    for side, module in SIDES.items():
        phases = [run["phases"] for run in runs[module]]
        out["phases_ms"][side] = {
            p: 1000 * measure.median([r[p] for r in phases]) for p in phase_clock.PHASES
        }
        out["phases_ms"][side]["step"] = sum(out["phases_ms"][side][p] for p in phase_clock.PHASES)
    out["machine"] = measure.machine_info(settings.device)
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common.add_settings_arguments(parser)
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per side (medians quoted)")
    parser.add_argument("--completions-per-step", nargs="+", type=int, default=[32, 64, 128])
    args = parser.parse_args(argv)
    base = common.settings_from_args(args)
    results = []
    for completions in args.completions_per_step:
        if completions % base.k:
            parser.error(f"--completions-per-step {completions} is not a multiple of k={base.k}")
        result = profile(base.replace(prompts_per_step=completions // base.k), args.repeats)
        results.append(result)
        textrl, trl = result["phases_ms"]["textrl"], result["phases_ms"]["trl"]
        rows = [
            [p, textrl[p], trl[p], textrl[p] / trl[p] if trl[p] > 0 else "-"]
            for p in (*phase_clock.PHASES, "step")
        ]
        measure.print_table(
            f"{base.algo.upper()}, {completions} completions per step: ms per step (median of {args.repeats} runs)",
            ["phase", "textrl", "TRL", "textrl / TRL"],
            rows,
        )
    if args.json:
        measure.write_json(args.json, {"results": results})
    return results


if __name__ == "__main__":
    main()
