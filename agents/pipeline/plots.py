"""PNG plots of a run directory (matplotlib's Agg renderer: no display needed).

``make_plots(RUN_DIR)`` (``textrl plot RUN_DIR``) reads ``summary.json`` and ``metrics.jsonl`` and writes
``plots/``:

- ``gold_vs_proxy.png``: per round, the policy's gold and proxy scores, beside the SFT model's gold;
- ``kl.png``: the policy's KL to the SFT model per round;
- ``reward_model.png``: the reward model's held-out accuracy (labels and gold order) per round;
- ``rl_training.png``: the proxy score and KL of every RL iteration, with round boundaries;
- ``overview.png``: the four side by side.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from agents.pipeline.rundir import RunDirectory, read_json, read_jsonl, write_bytes_atomic

PLOTS = ("gold_vs_proxy", "kl", "reward_model", "rl_training")


def _round_axis(ax: Any, rounds: list[dict[str, Any]]) -> None:
    ax.set_xticks([r["round"] for r in rounds])  # rounds are whole numbers


def _values(rounds: list[dict[str, Any]], key: str) -> tuple[list[int], list[float]]:
    points = [(r["round"], r[key]) for r in rounds if r.get(key) is not None]
    return [p[0] for p in points], [float(p[1]) for p in points]


def _gold_vs_proxy(ax: Any, summary: dict[str, Any], rl: list[dict[str, Any]]) -> None:
    rounds = summary["rounds"]
    for key, label, style in (
        ("gold_policy", "gold, policy", "o-"), ("proxy_policy", "proxy (reward model), policy", "s--"),
        ("proxy_sft", "proxy, SFT model", "x:"),
    ):  # fmt: skip
        ax.plot(*_values(rounds, key), style, label=label)
    if summary.get("gold_sft") is not None:
        ax.axhline(summary["gold_sft"], color="gray", linestyle="--", label="gold, SFT model")
    if summary.get("gold_base") is not None:
        ax.axhline(summary["gold_base"], color="lightgray", linestyle=":", label="gold, base model")
    ax.set(title="Gold vs proxy score (held-out prompts)", xlabel="round", ylabel="mean score")
    ax.legend(fontsize="small")
    _round_axis(ax, rounds)


def _kl(ax: Any, summary: dict[str, Any], rl: list[dict[str, Any]]) -> None:
    ax.plot(*_values(summary["rounds"], "kl"), "o-", color="tab:purple")
    ax.set(title="KL to the SFT model (held-out prompts)", xlabel="round", ylabel="nats per response")
    _round_axis(ax, summary["rounds"])


def _reward_model(ax: Any, summary: dict[str, Any], rl: list[dict[str, Any]]) -> None:
    rounds = summary["rounds"]
    ax.plot(*_values(rounds, "rm_accuracy"), "o-", label="vs labels")
    ax.plot(*_values(rounds, "rm_accuracy_gold"), "s--", label="vs gold order")
    ax.plot(*_values(rounds, "label_agreement"), "x:", label="labels vs gold (annotator)")
    ax.axhline(0.5, color="lightgray", linestyle=":")
    ax.set(
        title="Reward model on the current policy's pairs",
        xlabel="round",
        ylabel="accuracy",
        ylim=(0.0, 1.02),
    )
    ax.legend(fontsize="small")
    _round_axis(ax, rounds)


def _rl_training(ax: Any, summary: dict[str, Any], rl: list[dict[str, Any]]) -> None:
    points = [r for r in rl if "rollout/score_mean" in r and r.get("step") is not None]
    ax.plot(
        [r["step"] for r in points], [r["rollout/score_mean"] for r in points], label="proxy score (rollouts)"
    )
    ax.plot(
        [r["step"] for r in points],
        [r.get("rollout/kl_mean", float("nan")) for r in points],
        label="KL to SFT",
    )
    starts: dict[int, int] = {}
    for r in points:
        starts.setdefault(r["round"], r["step"])
    for round_, step in sorted(starts.items())[1:]:
        ax.axvline(step, color="lightgray", linestyle=":")
        ax.text(step, ax.get_ylim()[1], f" round {round_}", fontsize="x-small", va="top")
    ax.set(title="RL iterations", xlabel="timesteps", ylabel="mean per rollout")
    ax.legend(fontsize="small")


DRAW: dict[str, Callable[[Any, dict[str, Any], list[dict[str, Any]]], None]] = {
    "gold_vs_proxy": _gold_vs_proxy,
    "kl": _kl,
    "reward_model": _reward_model,
    "rl_training": _rl_training,
}


def _save(figure: Any, path: Path) -> Path:
    import io

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return write_bytes_atomic(path, buffer.getvalue())


def make_plots(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Draw every plot of the run in ``run_dir`` into ``run_dir/plots``; returns the PNG paths.

    Raises:
        ValueError: ``run_dir`` holds no pipeline run, or no round has been evaluated yet.
    """
    # Figure objects without pyplot draw with Agg and leave the caller's backend (a notebook's) alone.
    from matplotlib.figure import Figure

    directory = RunDirectory(run_dir)
    if not directory.summary_file.is_file():
        raise ValueError(
            f"{os.fspath(run_dir)} has no summary.json: it is not a pipeline run directory, or no round has been "
            "evaluated yet; pass the --run_dir of a `textrl pipeline` run"
        )
    summary = read_json(directory.summary_file)
    records = read_jsonl(directory.metrics_file) if directory.metrics_file.is_file() else []
    rl = [r for r in records if r.get("event") == "rl"]
    written = []
    for name in PLOTS:
        figure = Figure(figsize=(6, 4), layout="constrained")
        DRAW[name](figure.subplots(), summary, rl)
        written.append(_save(figure, directory.plots / f"{name}.png"))
    figure = Figure(figsize=(12, 8), layout="constrained")
    for name, ax in zip(PLOTS, figure.subplots(2, 2).flat, strict=True):
        DRAW[name](ax, summary, rl)
    written.append(_save(figure, directory.plots / "overview.png"))
    return written


__all__ = ["PLOTS", "make_plots"]
