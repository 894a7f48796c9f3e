"""The RLHF loop from one call: :func:`run_pipeline` (and :func:`resume_pipeline`).

Round 0 fine-tunes the starting model on demonstrations (SFT). Each round after it samples pairs
of responses from the current policy on fresh prompts, has them labelled, retrains the reward
model on all pairs so far, runs RL against it with a KL penalty to the SFT model, and evaluates
the policy on held-out prompts: gold score (the simulated annotator's scorer), proxy score (the
learned reward model) and KL to the SFT model, side by side, so reward over-optimisation shows.

Under ``torchrun`` rank 0 runs every stage but the RL, the other ranks waiting, and every rank
runs the RL (:mod:`agents.pipeline.ranks`).
"""

from __future__ import annotations

import dataclasses
import os
import statistics
from pathlib import Path
from typing import Any

import torch
import yaml
from rich.console import Console

from agents import distributed
from agents.logger import Logger
from agents.pipeline.config import PipelineConfig, config_differences, resolve_config
from agents.pipeline.context import RunContext
from agents.pipeline.control import GracefulInterrupt
from agents.pipeline.data import generate_demonstrations
from agents.pipeline.evaluate import evaluate_model
from agents.pipeline.feedback import (
    label_pairs,
    load_round_reward_model,
    sample_pairs,
    train_round_reward_model,
)
from agents.pipeline.ranks import Ranks
from agents.pipeline.rl import train_policy
from agents.pipeline.rundir import (
    MetricsLog,
    RunDirectory,
    read_json,
    read_jsonl,
    write_json_atomic,
    write_jsonl_atomic,
    write_text_atomic,
)
from agents.pipeline.summary import print_summary, round_record, write_summary
from reward_models import RewardModel, SentimentReward, compute_rewards

CONFIG_HEADER = "# textrl pipeline settings (resolved); rerun with: textrl pipeline --config THIS_FILE --run_dir NEW_DIR\n"


def load_run_config(run_dir: str | os.PathLike[str]) -> PipelineConfig:
    """The resolved config a run directory was started with."""
    path = RunDirectory(run_dir).config_file
    if not path.is_file():
        raise ValueError(f"{os.fspath(run_dir)} holds no pipeline run ({path.name} is missing)")
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    return PipelineConfig.from_dict(data, where=os.fspath(path))


def _begin(run: RunContext, stage: str) -> None:
    run.stage = stage
    if not run.ranks.is_main:
        return
    run.dir.set_state("running", stage)
    run.console.rule(f"[bold]{stage}")


def sft_stage(run: RunContext) -> None:
    """Round 0: demonstrations, SFT, and the base and SFT models' held-out scores."""
    from agents.sft import SFTConfig, read_demonstrations, train_sft

    config, folder = run.config, run.dir.round(0)
    demos_file = folder / "demonstrations.jsonl"
    if not demos_file.is_file():
        if run.gold is None:
            raise ValueError("generating demonstrations needs a gold scorer; this task has none")
        demos = generate_demonstrations(config.sft_demonstrations, run.gold, config.sft_min_gold, config.seed)
        write_jsonl_atomic(demos_file, ({"prompt": d.prompt, "response": d.response} for d in demos))
    if not run.dir.sft_model.is_dir():
        model = run.load_causal_lm(run.base_model_id)
        sft = SFTConfig(
            learning_rate=config.sft_learning_rate, num_epochs=config.sft_epochs, batch_size=config.sft_batch_size,
            seed=run.seed("sft", 0), device=config.device,
        )  # fmt: skip
        result = train_sft(
            model,
            run.tokenizer,
            read_demonstrations(demos_file),
            sft,
            run.dir.sft_model,
            run.show_progress,
            run.console,
        )
        run.metrics.log("sft", 0, loss_first=result.epoch_losses[0], loss_last=result.epoch_losses[-1])
    eval_file = folder / "eval.json"
    if not eval_file.is_file():
        base = evaluate_model(
            run, run.load_causal_lm(run.base_model_id), None, None, config.eval_samples, "base model"
        )
        sft_scores = evaluate_model(run, run.sft_model, None, None, config.eval_samples, "SFT model")
        write_json_atomic(eval_file, {"base": base.to_dict(), "sft": sft_scores.to_dict(keep=None)})
    scores = read_json(eval_file)
    run.metrics.log("eval", 0, gold_base=scores["base"]["gold"], gold_sft=scores["sft"]["gold"])


def _labelled_so_far(run: RunContext, round_: int) -> int:
    return sum(len(read_jsonl(run.dir.round(r) / "labels.jsonl")) for r in range(1, round_ + 1))


def evaluate_round(
    run: RunContext, round_: int, reward: RewardModel, rm: dict[str, Any], rl: dict[str, Any]
) -> None:
    """Score the round's policy and the SFT model under the round's reward model; write ``eval.json``."""
    eval_file = run.dir.round(round_) / "eval.json"
    if not eval_file.is_file():
        policy = run.load_causal_lm(run.dir.policy_model(round_))
        scores = evaluate_model(
            run, policy, reward, run.sft_model, run.config.eval_samples, f"round {round_}: evaluating policy"
        )
        sft = read_json(run.dir.round(0) / "eval.json")["sft"]
        proxy_sft = statistics.fmean(compute_rewards(reward, sft["prompts"], sft["completions"]).tolist())
        sft_scores = {"gold": sft["gold"], "proxy": proxy_sft}
        record = round_record(
            round_, sft_scores, dataclasses.asdict(scores), rm, rl, _labelled_so_far(run, round_)
        )
        write_json_atomic(eval_file, {"record": record, "policy": scores.to_dict()})
        board = Logger(run.dir.tensorboard / "rounds", formats=("tensorboard",), quiet=True)
        for key, value in record.items():
            if isinstance(value, int | float) and key != "round":
                board.record(f"pipeline/{key}", value)
        board.dump(round_)
        board.close()
    record = read_json(eval_file)["record"]
    run.metrics.log("round", round_, **record)
    write_summary(run.dir, run.config.to_dict(), "running")


def feedback_round(run: RunContext, round_: int) -> None:
    """One round: pairs, labels, reward model, RL, evaluation (each skipped when already done).

    Under a launcher rank 0 makes the pairs, labels and reward model, then every rank loads the
    reward model and trains the policy together, then rank 0 evaluates.
    """

    def feedback() -> tuple[RewardModel, dict[str, Any]]:
        _begin(run, f"round {round_}: pairs and labels")
        previous = run.load_causal_lm(run.dir.policy_model(round_ - 1))
        pairs = sample_pairs(run, round_, previous)
        del previous
        label_pairs(run, round_, pairs)
        _begin(run, f"round {round_}: reward model")
        made = train_round_reward_model(run, round_)
        run.metrics.log("reward_model", round_, **made[1])
        return made

    made = run.ranks.on_main(feedback, f"round {round_}'s pairs, labels and reward model")
    reward, rm = made if made is not None else load_round_reward_model(run, round_)  # rank 0's files
    _begin(run, f"round {round_}: RL")
    rl = train_policy(run, round_, reward)
    run.metrics.log("rl_done", round_, **{k: v for k, v in rl.items() if k != "early_stop_checks"})
    _begin(run, f"round {round_}: evaluation")
    run.ranks.on_main(lambda: evaluate_round(run, round_, reward, rm, rl), f"round {round_}'s evaluation")


def _start(config: PipelineConfig, resume: bool, overwrite: bool) -> tuple[RunDirectory, PipelineConfig]:
    run_dir = RunDirectory(config.run_dir)
    run_dir.prepare(resume, overwrite)
    config = resolve_config(config)
    if resume:
        stored = load_run_config(run_dir.root)
        differences = config_differences(stored, config.to_dict())
        if differences:
            raise ValueError(
                f"--resume continues {run_dir.root} with the settings it was started with, but these differ: "
                f"{'; '.join(differences)}. Drop those settings, or start a new run (another --run_dir)"
            )
        config = dataclasses.replace(stored, run_dir=config.run_dir, rounds=max(stored.rounds, config.rounds))
    run_dir.root.mkdir(parents=True, exist_ok=True)
    write_text_atomic(run_dir.config_file, CONFIG_HEADER + yaml.safe_dump(_portable(config), sort_keys=False))
    return run_dir, config


def _portable(config: PipelineConfig) -> dict[str, Any]:
    """``config.yaml``'s settings: local paths made absolute, so ``--config THIS_FILE`` (whose relative
    paths are relative to the run directory) runs the same from any working directory."""
    data = config.to_dict()
    data["run_dir"] = os.path.abspath(config.run_dir)
    if config.model is not None and Path(config.model).expanduser().exists():
        data["model"] = os.path.abspath(Path(config.model).expanduser())
    return data


def _on_this_rank(config: PipelineConfig, ranks: Ranks) -> PipelineConfig:
    """The settings this process runs with: under a launcher, ``cuda`` is this rank's own GPU."""
    if ranks.enabled and config.device == "cuda":
        return dataclasses.replace(config, device=str(distributed.local_device("cuda")))
    return config


def run_pipeline(
    config: PipelineConfig | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    console: Console | None = None,
) -> Path:
    """Run (or, with ``resume``, continue) the RLHF loop into ``config.run_dir``.

    Args:
        config: the settings (defaults: :class:`PipelineConfig`).
        resume: continue the run in ``config.run_dir`` where it stopped (its settings must match).
        overwrite: delete a previous run in ``config.run_dir`` first.
        progress: draw progress bars.
        console: the rich console to draw on.

    Returns:
        The run directory (``summary.json``, ``metrics.jsonl``, ``plots/``, checkpoints).

    Raises:
        ValueError: bad settings, or a run directory that already holds a run (without resume/overwrite).
        KeyboardInterrupt: Ctrl-C (:class:`~agents.pipeline.control.PipelineInterrupted` when RL saved a
            checkpoint); ``state.json`` then says where it stopped and ``resume=True`` continues.
    """
    from agents.pipeline.plots import make_plots

    ranks = Ranks()
    if not ranks.is_main:  # rank 0 speaks for the run
        console, progress = Console(quiet=True), False
    console = console or Console()
    given = config or PipelineConfig()
    started = ranks.on_main(lambda: _start(given, resume, overwrite), "the run directory's set-up")
    if started is None:  # another rank: the settings rank 0 resolved and wrote
        run_dir = RunDirectory(given.run_dir)
        config = dataclasses.replace(load_run_config(run_dir.root), run_dir=given.run_dir)
    else:
        run_dir, config = started
    run = RunContext(
        _on_this_rank(config, ranks),
        run_dir,
        MetricsLog(run_dir.metrics_file, write=ranks.is_main),
        console,
        progress,
        SentimentReward(),
        GracefulInterrupt(console),
        ranks,
    )
    threads = torch.get_num_threads()
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    try:
        _begin(run, "round 0: SFT")
        ranks.on_main(lambda: sft_stage(run), "round 0's demonstrations, SFT and evaluation")
        for round_ in range(1, config.rounds + 1):
            feedback_round(run, round_)
    except KeyboardInterrupt:
        if ranks.is_main:
            run_dir.set_state("interrupted", run.stage)
        console.print(
            f"[yellow]Interrupted during {run.stage}.[/] Continue with: textrl pipeline --run_dir {run_dir.root} --resume"
        )
        raise
    except Exception as err:
        if ranks.is_main:
            run_dir.set_state("failed", run.stage, error=f"{type(err).__name__}: {err}")
        raise
    finally:
        torch.set_num_threads(threads)
    if not ranks.is_main:
        return run_dir.root
    summary = write_summary(run_dir, config.to_dict(), "complete")
    make_plots(run_dir.root)
    run_dir.set_state("complete")
    print_summary(console, summary, os.fspath(run_dir.root))
    return run_dir.root


def resume_pipeline(
    run_dir: str | os.PathLike[str], *, progress: bool = True, console: Console | None = None
) -> Path:
    """Continue the run in ``run_dir`` with the settings it was started with."""
    config = dataclasses.replace(load_run_config(run_dir), run_dir=os.fspath(run_dir))
    return run_pipeline(config, resume=True, progress=progress, console=console)


__all__ = ["load_run_config", "resume_pipeline", "run_pipeline"]
