"""A learned reward model: any ``AutoModelForSequenceClassification`` with one output, behind the protocol.

Text is the interface: the reward model has its own tokenizer, so it can differ from the policy's.
It scores the prompt (encoded as the env encodes prompts), then ``separator + completion``, at
the last real token (an appended EOS for decoder models), in batches, without gradients and with
dropout off, on any device. An affine ``gain * score + bias`` on top lets
:meth:`LearnedRewardModel.normalize_to` give a starting policy's samples mean 0 and std 1.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reward_models.atomic_io import atomic_directory, recover_directory
from reward_models.checks import check_positive_ints
from reward_models.functions import check_texts
from reward_models.safe_loading import from_pretrained_safely
from reward_models.scoring import check_single_label, encode_completions_for_scoring, sequence_scores

# Written beside the weights; holds what transformers' config does not: the normalisation.
SETTINGS_FILE = "textrl_reward.json"


def default_device() -> torch.device:
    """CUDA when available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def resolve_device(
    device: str | torch.device | None, model: str | os.PathLike[str] | nn.Module, loaded: nn.Module
) -> torch.device:
    """``device`` when given; else where a passed-in module already is; else :func:`default_device`."""
    if device is not None:
        return torch.device(device)
    if isinstance(model, nn.Module):
        return next(loaded.parameters()).device
    return default_device()


def load_reward_backbone(
    model: str | os.PathLike[str] | nn.Module, tokenizer: Any = None, num_labels_check: bool = True
) -> tuple[nn.Module, Any]:
    """Load ``(model, tokenizer)`` from a hub id or local path, or pass a module through.

    Args:
        model: an id/path (loaded with ``AutoModelForSequenceClassification``) or a loaded model.
        tokenizer: a tokenizer; loaded from the same id/path when None.
        num_labels_check: refuse a checkpoint whose config has ``num_labels != 1`` instead of
            loading it with a fresh one-output head (False: attach a fresh head, for training).
    """
    if isinstance(model, nn.Module):
        if tokenizer is None:
            raise ValueError(
                f"got a {type(model).__name__} module but no tokenizer; pass the reward model's tokenizer "
                "(it may differ from the policy's), or pass a model id/path to load both"
            )
        return model, tokenizer
    if not isinstance(model, (str, os.PathLike)):
        raise TypeError(
            f"model must be a model id, a path or a PreTrainedModel; got {type(model).__name__} ({model!r})"
        )
    from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

    if not os.path.exists(model) and os.path.isabs(model):
        raise FileNotFoundError(
            f"reward model {os.fspath(model)} not found; pass the directory train_reward_model() (`textrl rm`) saved"
        )
    config = AutoConfig.from_pretrained(model)
    architectures = list(getattr(config, "architectures", None) or [])
    if (
        num_labels_check
        and architectures
        and not any(a.endswith("ForSequenceClassification") for a in architectures)
    ):
        # Loading it anyway would attach a randomly initialised score head: a reward of noise.
        raise ValueError(
            f"{os.fspath(model)} holds a {architectures[0]}, not a sequence classifier; a reward model is an "
            "AutoModelForSequenceClassification with one output. Train one from it with train_reward_model() "
            "(`textrl rm PAIRS.jsonl --model ...`) and pass that directory"
        )
    if num_labels_check and config.num_labels != 1:
        raise ValueError(
            f"{os.fspath(model)} has num_labels={config.num_labels}; a reward model needs exactly one output. "
            "Train one with train_reward_model(), or load a single-output checkpoint"
        )
    loaded = from_pretrained_safely(AutoModelForSequenceClassification, model, num_labels=1)
    return loaded, tokenizer if tokenizer is not None else AutoTokenizer.from_pretrained(model)


def save_atomically(path: str | os.PathLike[str], write: Callable[[Path], None]) -> Path:
    """Run ``write(tmp_dir)`` then move the directory to ``path``, replacing any previous one.

    A crash while writing (SIGKILL included) leaves the previous directory loadable; see
    :func:`reward_models.atomic_io.atomic_directory`.
    """
    with atomic_directory(path) as tmp:
        write(tmp)
    return Path(path)


class LearnedRewardModel:
    """Scores completions with a sequence-classification model that has one output.

    Args:
        model: a hub id, a local directory, or a loaded ``PreTrainedModel`` with ``num_labels == 1``.
        tokenizer: the reward model's tokenizer; loaded from ``model`` when it is an id/path. Without
            a pad token, its EOS pads (batches are right-padded and masked, so this is safe).
        device: where to score; None keeps a given module where it is and puts a loaded one on CUDA
            when available. The model is moved there.
        batch_size: texts per forward pass.
        max_length: longest tokenized text; longer texts keep their last ``max_length`` tokens.
        gain: multiplies the raw score; None reads it from a saved directory, else 1.0.
        bias: added after the gain; None reads it from a saved directory, else 0.0.
        separator: put between prompt and completion; None reads it from a saved directory, else
            ``""`` (completions continue the prompt).
        append_eos: score decoder models at an EOS token appended to each text, as
            :func:`~reward_models.training.train_reward_model` does by default; None reads it from a
            saved directory, else True. Must match how the model was trained.
        name: shown in logs and errors; defaults to the model's path or class.

    Example:
        >>> reward = LearnedRewardModel("runs/reward_model")  # doctest: +SKIP
        >>> reward(["The film was"], [" great fun."])  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | nn.Module,
        tokenizer: Any = None,
        device: str | torch.device | None = None,
        batch_size: int = 64,
        max_length: int = 512,
        gain: float | None = None,
        bias: float | None = None,
        separator: str | None = None,
        append_eos: bool | None = None,
        name: str | None = None,
    ) -> None:
        check_positive_ints(batch_size=batch_size, max_length=max_length)
        saved: dict[str, Any] = {}
        if isinstance(model, (str, os.PathLike)) and (Path(model) / SETTINGS_FILE).is_file():
            saved = json.loads((Path(model) / SETTINGS_FILE).read_text(encoding="utf-8"))
        self.model, self.tokenizer = load_reward_backbone(model, tokenizer)
        check_single_label(self.model)
        self.device = resolve_device(device, model, self.model)
        self.model.to(self.device)
        self.model.eval()  # dropout off: a reward must not be noisy
        self.batch_size = batch_size
        # Longer inputs would index past the position embeddings of a small model: keep the tail.
        limit = next(
            (
                v
                for k in ("n_positions", "max_position_embeddings")
                if isinstance(v := getattr(self.model.config, k, None), int)
            ),
            None,
        )
        self.max_length = min(max_length, limit) if limit else max_length
        self.separator = separator if separator is not None else str(saved.get("separator", ""))
        self.append_eos = append_eos if append_eos is not None else bool(saved.get("append_eos", True))
        self.gain = 1.0
        self.bias = 0.0
        self.set_normalization(
            gain if gain is not None else saved.get("gain", 1.0),
            bias if bias is not None else saved.get("bias", 0.0),
        )
        self.name = name or (
            os.fspath(model) if isinstance(model, (str, os.PathLike)) else type(model).__name__
        )

    @classmethod
    def from_pretrained(cls, path: str | os.PathLike[str], **kwargs: Any) -> LearnedRewardModel:
        """Load a directory written by :meth:`save_pretrained` (or any one-output checkpoint)."""
        recover_directory(path)  # a save killed between its two renames left the previous one beside it
        return cls(path, **kwargs)

    def set_normalization(self, gain: float, bias: float) -> None:
        """Set the affine map ``gain * raw + bias`` applied to every score."""
        if not (math.isfinite(gain) and math.isfinite(bias) and gain != 0):
            raise ValueError(
                f"gain={gain!r}, bias={bias!r} are invalid; expected finite numbers and gain != 0"
            )
        self.gain, self.bias = float(gain), float(bias)

    @torch.no_grad()
    def score_tokens(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Raw scores of already tokenized ``(B, T)`` batches (left or right padded); ``(B,)`` float32."""
        self.model.eval()
        return sequence_scores(self.model, input_ids.to(self.device), attention_mask.to(self.device))

    def raw_scores(self, prompts: list[str], completions: list[str]) -> torch.Tensor:
        """``(B,)`` float32 CPU scores before gain and bias."""
        check_texts(prompts, completions, self.name)
        chunks = []
        for start in range(0, len(completions), self.batch_size):
            end = start + self.batch_size
            ids, mask = encode_completions_for_scoring(
                self.model, self.tokenizer, prompts[start:end], completions[start:end],
                self.max_length, self.device, self.append_eos, self.separator,
            )  # fmt: skip
            chunks.append(self.score_tokens(ids, mask).cpu())
        return torch.cat(chunks) if chunks else torch.zeros(0)

    def __call__(self, prompts: list[str], completions: list[str], **kwargs: Any) -> torch.Tensor:
        """``(B,)`` float32 CPU rewards: ``gain * raw + bias``."""
        return self.gain * self.raw_scores(prompts, completions) + self.bias

    def normalize_to(self, prompts: list[str], completions: list[str]) -> tuple[float, float]:
        """Set gain and bias so these samples score mean 0 and std 1; returns ``(gain, bias)``.

        Pass samples of the starting policy, so rewards begin on a fixed scale whatever the model.

        Raises:
            ValueError: fewer than two samples, or all samples score the same.
        """
        raw = self.raw_scores(prompts, completions).double()
        if raw.numel() < 2:
            raise ValueError(
                f"normalize_to() needs at least 2 samples to measure a spread; got {raw.numel()}"
            )
        mean, std = float(raw.mean()), float(raw.std())
        # Scores are float32: identical texts in one batch can differ in the last bits (the kernels
        # block rows differently), so a spread within float32 rounding of the mean is no spread.
        if not std > 1e-6 * max(1.0, abs(mean)):
            raise ValueError(
                f"all {raw.numel()} samples score {mean:.6g}, so there is no spread to normalise; "
                "pass more varied completions (e.g. sampled with temperature 1)"
            )
        self.set_normalization(1.0 / std, -mean / std)
        return self.gain, self.bias

    def save_pretrained(self, path: str | os.PathLike[str], metadata: dict[str, Any] | None = None) -> Path:
        """Write weights (safetensors), tokenizer and normalisation to ``path``, atomically.

        Args:
            path: the directory; an existing one is replaced only once the new one is complete.
            metadata: JSON-serialisable notes (e.g. training results) stored in ``textrl_reward.json``.

        Returns:
            The directory.
        """
        model: Any = self.model

        def write(directory: Path) -> None:
            model.save_pretrained(directory)  # safetensors is the transformers default
            self.tokenizer.save_pretrained(directory)
            settings = {
                "gain": self.gain,
                "bias": self.bias,
                "separator": self.separator,
                "append_eos": self.append_eos,
                **(metadata or {}),
            }
            (directory / SETTINGS_FILE).write_text(json.dumps(settings, indent=2), encoding="utf-8")

        return save_atomically(path, write)

    def __repr__(self) -> str:
        return f"LearnedRewardModel(name={self.name!r}, device={self.device}, gain={self.gain:.4g}, bias={self.bias:.4g})"
