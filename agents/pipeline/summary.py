"""``summary.json`` and the final rich table: per round, the proxy and the gold score side by side.

Each entry of ``rounds`` holds ``round``, ``gold_sft``, ``gold_policy``, ``proxy_sft``, ``proxy_policy``,
``kl`` (to the SFT model, nats per response), ``rm_accuracy`` (held-out pairs of the current policy,
against the labels), ``rm_accuracy_gold``, ``label_agreement``, ``pairs`` (labelled so far),
``rl_timesteps``, ``early_stopped_at`` and ``kl_coef``. ``gold_base`` is the starting model's gold score.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from agents.pipeline.rundir import RunDirectory, read_json, write_json_atomic

ROUND_KEYS = (
    "round", "gold_sft", "gold_policy", "proxy_sft", "proxy_policy", "kl", "rm_accuracy", "rm_accuracy_gold",
    "label_agreement", "pairs", "rl_timesteps", "early_stopped_at", "kl_coef",
)  # fmt: skip


def round_record(
    round_: int,
    sft: dict[str, Any],
    policy: dict[str, Any],
    rm: dict[str, Any],
    rl: dict[str, Any],
    pairs: int,
) -> dict[str, Any]:
    """One ``rounds`` entry from the round's evaluation, reward-model and RL figures."""
    return {
        "round": round_,
        "gold_sft": sft["gold"],
        "gold_policy": policy["gold"],
        "proxy_sft": sft["proxy"],
        "proxy_policy": policy["proxy"],
        "kl": policy["kl"],
        "rm_accuracy": rm["rm_accuracy"],
        "rm_accuracy_gold": rm["rm_accuracy_gold"],
        "label_agreement": rm["label_agreement"],
        "pairs": pairs,
        "rl_timesteps": rl["end_timesteps"] - rl["start_timesteps"],
        "early_stopped_at": rl["early_stopped_at"],
        "kl_coef": rl["kl_coef"],
    }


def build_summary(run_dir: RunDirectory, config: dict[str, Any], status: str) -> dict[str, Any]:
    """The summary of whatever rounds the run directory holds evaluations of."""
    base = read_json(run_dir.round(0) / "eval.json") if (run_dir.round(0) / "eval.json").is_file() else {}
    rounds = []
    index = 1
    while (run_dir.round(index) / "eval.json").is_file():
        rounds.append(read_json(run_dir.round(index) / "eval.json")["record"])
        index += 1
    beats = [r["gold_policy"] > r["gold_sft"] for r in rounds if r["gold_policy"] is not None]
    return {
        "status": status,
        "gold_base": base.get("base", {}).get("gold"),
        "gold_sft": base.get("sft", {}).get("gold"),
        "rounds": rounds,
        "policy_beats_sft_every_round": bool(beats) and all(beats),
        "config": config,
    }


def write_summary(run_dir: RunDirectory, config: dict[str, Any], status: str) -> dict[str, Any]:
    summary = build_summary(run_dir, config, status)
    write_json_atomic(run_dir.summary_file, summary)
    return summary


def _fmt(value: Any, signed: bool = True) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:+.3f}" if signed else f"{value:.3f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def summary_table(summary: dict[str, Any]) -> Table:
    """Round by round: gold (true objective) and proxy (learned reward) of SFT and policy, KL, RM accuracy."""
    table = Table(title=f"RLHF pipeline (gold of the base model {_fmt(summary['gold_base'])})")
    columns = (
        "round", "gold SFT", "gold policy", "proxy SFT", "proxy policy", "KL to SFT", "RM acc", "RM acc (gold)",
        "pairs",
    )  # fmt: skip
    for name in columns:
        table.add_column(name, justify="right")
    for r in summary["rounds"]:
        better = r["gold_policy"] is not None and r["gold_policy"] > r["gold_sft"]
        gold = f"[green]{_fmt(r['gold_policy'])}[/]" if better else f"[red]{_fmt(r['gold_policy'])}[/]"
        table.add_row(
            str(r["round"]), _fmt(r["gold_sft"]), gold, _fmt(r["proxy_sft"]), _fmt(r["proxy_policy"]),
            _fmt(r["kl"], signed=False), _fmt(r["rm_accuracy"], signed=False),
            _fmt(r["rm_accuracy_gold"], signed=False), _fmt(r["pairs"]),
        )  # fmt: skip
    return table


def print_summary(console: Console, summary: dict[str, Any], root: str) -> None:
    console.print(summary_table(summary))
    verdict = "beats" if summary["policy_beats_sft_every_round"] else "does NOT beat"
    console.print(
        f"The RL policy's gold score {verdict} the SFT model's in every round. Run directory: {root} "
        "(summary.json, metrics.jsonl, plots/, tensorboard/)"
    )


__all__ = ["ROUND_KEYS", "build_summary", "print_summary", "round_record", "summary_table", "write_summary"]
