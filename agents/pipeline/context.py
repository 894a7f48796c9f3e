"""What every stage of a run reads: the config, the run directory, the shared models and the outputs."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from rich.console import Console
from rich.progress import Progress
from torch import nn

from agents.pipeline.config import PipelineConfig
from agents.pipeline.control import GracefulInterrupt
from agents.pipeline.data import progress_bar
from agents.pipeline.ranks import Ranks
from agents.pipeline.rundir import MetricsLog, RunDirectory
from reward_models import RewardModel


@dataclass
class RunContext:
    """One run in progress.

    Attributes:
        config: the resolved settings.
        dir: the run directory.
        metrics: its ``metrics.jsonl``.
        console: where progress and tables are drawn.
        show_progress: draw progress bars.
        gold: the gold scorer (VADER sentiment on the default task); None when there is none.
        interrupt: turns Ctrl-C during RL into a clean stop.
        ranks: this process's part of a run launched on several processes (all of it, alone).
    """

    config: PipelineConfig
    dir: RunDirectory
    metrics: MetricsLog
    console: Console
    show_progress: bool
    gold: RewardModel | None
    interrupt: GracefulInterrupt = field(default_factory=GracefulInterrupt)
    ranks: Ranks = field(default_factory=Ranks)
    stage: str = ""  # the stage in progress, for state.json and messages

    def progress(self) -> Progress:
        """A fresh progress bar (use as a context manager)."""
        return progress_bar(self.console, self.show_progress)

    def seed(self, stage: str, round_: int) -> int:
        """A seed of its own for each stage of each round, derived from the run's seed."""
        return (self.config.seed * 1_000_003 + round_ * 1009 + sum(map(ord, stage)) * 7) % 2**31

    @cached_property
    def tokenizer(self) -> Any:
        from transformers import AutoTokenizer

        return AutoTokenizer.from_pretrained(self.base_model_id)

    @property
    def base_model_id(self) -> str:
        from textrl_env.default_model import DEFAULT_MODEL_ID

        return self.config.model or DEFAULT_MODEL_ID

    def load_causal_lm(self, path: Any) -> nn.Module:
        """A causal LM from a directory the run wrote (or the base model's id), on the run's device, eval mode."""
        from transformers import AutoModelForCausalLM

        model: nn.Module = AutoModelForCausalLM.from_pretrained(path)
        return model.to(torch.device(self.config.device)).eval()

    @cached_property
    def sft_model(self) -> nn.Module:
        """The frozen SFT model: the KL reference of every round (load it only once SFT has run)."""
        model = self.load_causal_lm(self.dir.sft_model)
        model.requires_grad_(False)
        return model


__all__ = ["RunContext"]
