"""The tables, ratio lines and plot of a ``benchmarks.scaling`` result (the dict ``scaling.run`` returns).

It reads only that dict (as ``--json`` saves it), never the measuring code.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from benchmarks.measure import print_table


def plot(result: dict[str, Any], path: Path | str) -> None:
    """Two log-log panels: time vs length at the fixed batch, time vs batch at the fixed length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    settings = result["settings"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    panels = (
        ("length", "batch", settings["fixed_batch"], "response length (tokens)"),
        ("batch", "length", settings["fixed_length"], "batch size (rows)"),
    )
    for ax, (x_key, fixed_key, fixed, xlabel) in zip(axes, panels, strict=True):
        points = sorted((p for p in result["points"] if p[fixed_key] == fixed), key=lambda p: p[x_key])
        for side, marker, label in (
            ("rollout", "o", "rollout (textrl vector env)"),
            ("generate", "^", "model.generate (reference)"),
            ("update", "s", "update (RLOO step)"),
        ):
            xs = [p[x_key] for p in points if p.get(side)]
            ys = [p[side]["median_s"] for p in points if p.get(side)]
            if xs:
                ax.plot(xs, ys, marker=marker, label=label)
        ax.set_xscale("log", base=2)
        rollout = dict((p[x_key], p["rollout"]["median_s"]) for p in points if p["rollout"])
        if len(rollout) > 1:  # constant per-token cost, through length 64 (the acceptance base) or the first
            x0 = 64 if x_key == "length" and 64 in rollout else min(rollout)
            xs = sorted(rollout)
            ax.plot(
                xs, [rollout[x0] * x / x0 for x in xs], "k:", linewidth=1, label=f"linear from {x_key} {x0}"
            )
            ax.set_xticks(xs, [str(x) for x in xs])
            ax.minorticks_off()
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"seconds ({result['clock']} clock, median)")
        ax.set_title(f"{fixed_key} {fixed}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    model = result["model"]
    fig.suptitle(
        f"textrl scaling: {model['size']} ({model['parameters'] / 1e6:.1f} M params, {model['dtype']}) "
        f"on {settings['device']}, {settings['threads']} torch thread(s)"
    )
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def report(result: dict[str, Any]) -> None:
    rows = []
    for p in result["points"]:
        ro, up = p["rollout"], p["update"]
        rows.append(
            [
                "+".join(p["sweeps"]),
                p["batch"],
                p["length"],
                fmt(ro["median_s"], ".4f"),
                fmt(ro["ms_per_step"], ".3f"),
                fmt(ro["us_per_token"], ".1f"),
                fmt(ro["tokens_per_s"], ",.0f"),
                fmt(p.get("generate") and p["generate"]["median_s"], ".4f"),
                fmt(up and up["median_s"], ".4f"),
                fmt(up and up["us_per_token"], ".1f"),
                p["repeats"],
            ]
        )
    s, model = result["settings"], result["model"]
    os.environ.setdefault("COLUMNS", "120")  # rich's width when stdout is not a terminal (default 80)
    print_table(
        f"Scaling: {model['size']} ({model['parameters'] / 1e6:.1f} M params, {model['dtype']}) on {s['device']}, "
        f"{result['clock']} clock, {s['threads']} torch thread(s), median of the repeats",
        [
            "sweep",
            "batch",
            "length",
            "rollout s",
            "ms/step",
            "us/token",
            "tokens/s",
            "generate s",
            "update s",
            "upd us/tok",
            "n",
        ],
        rows,
    )
    sweep = [p for p in result["points"] if p["batch"] == s["fixed_batch"] and p["rollout_steps"]]
    if sweep:
        rows = []
        for p in sorted(sweep, key=lambda p: p["length"]):
            steps = p["rollout_steps"]
            rows.append(
                [
                    p["length"],
                    fmt(steps["first_tenth_ms_per_step"], ".3f"),
                    fmt(steps["last_tenth_ms_per_step"], ".3f"),
                    fmt(1e3 * steps["decode_s"] / max(1, p["length"] - 1), ".3f"),
                    fmt(steps["decode_s"], ".4f"),
                    fmt(steps["final_step_s"], ".4f"),
                    fmt(steps["outside_steps_s"], ".4f"),
                    fmt(p["rollout"]["median_s"], ".4f"),
                ]
            )
        print_table(
            f"Where the rollout time goes, batch {s['fixed_batch']} ({result['clock']} clock, medians)",
            [
                "length",
                "first 10% ms/step",
                "last 10% ms/step",
                "mean ms/step",
                "steps s",
                "final step s",
                "outside s",
                "rollout s",
            ],
            rows,
        )
        print(
            "steps = env.step before the last; final step = the last env.step, which also scores every row "
            "(teacher-forced reference forward over prompt + response, decoding, reward); outside = reset "
            "(prefill) and sampling, outside env.step."
        )
    for key in ("ratio_512_64", "ratio_longest_shortest"):
        ratio = result[key]
        if ratio is None or (key != "ratio_512_64" and result["ratio_512_64"] == ratio):
            continue
        verdict = ""
        if key == "ratio_512_64":
            verdict = " (target <= 10x): " + ("PASS" if ratio["rollout"] <= 10 else "FAIL")
        print(
            f"rollout time({ratio['long']}) / time({ratio['short']}) at batch {ratio['batch']}: "
            f"{ratio['rollout']:.2f}x for {ratio['token_ratio']:.0f}x the tokens{verdict}; "
            f"update: {fmt(ratio['update'], '.2f')}x; "
            f"model.generate on the same model: {fmt(ratio.get('generate'), '.2f')}x"
        )
        if ratio.get("compute_floor") is not None:
            print(
                f"  compute floor (time proportional to multiply-adds, no per-step overhead; "
                f"benchmarks/compute_floor.py): {ratio['compute_floor']:.2f}x"
            )
        if ratio["rollout_parts"]:
            parts = ratio["rollout_parts"]
            print(
                f"  by part: steps {parts['decode_s']:.2f}x, final (scoring) step {parts['final_step_s']:.2f}x, "
                f"outside env.step {parts['outside_steps_s']:.2f}x"
            )
