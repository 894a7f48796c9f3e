"""Train a reward model on preference pairs with the Bradley-Terry loss.

``loss = -log sigmoid(r_chosen - r_rejected - margin) + center_rewards_coef * (r_chosen + r_rejected)**2``

The first term is the Bradley-Terry likelihood of the human's choice; the margin asks for a clear
gap; the centring term (Eisenstein et al. 2023) keeps rewards near 0, since the loss alone only
fixes differences. Dropout stays off throughout, as in the policy and reference: the two scores of
a pair must come from the same function, or the loss learns dropout noise.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn

from reward_models.checks import check_positive_ints, finite_number, positive_finite
from reward_models.learned import LearnedRewardModel, load_reward_backbone, resolve_device
from reward_models.preferences import PreferencePair, read_preferences
from reward_models.scoring import check_single_label, encode_completions_for_scoring, sequence_scores

if TYPE_CHECKING:
    from rich.progress import Progress

Pairs = Sequence[PreferencePair] | str | os.PathLike[str]


@dataclass
class RewardTrainingResult:
    """What :func:`train_reward_model` returns.

    Attributes:
        model: the trained model (in eval mode, on the training device).
        tokenizer: its tokenizer.
        train_loss: the loss of every optimiser step, in order.
        eval_accuracy: fraction of held-out pairs with ``r_chosen > r_rejected`` after training
            (None without held-out pairs).
        eval_loss: mean ``-log sigmoid(r_chosen - r_rejected)`` on held-out pairs (None without them).
        eval_accuracy_per_epoch: held-out accuracy after each epoch.
        output_dir: where the model was saved, if anywhere.
        append_eos: whether texts were scored at an appended EOS token.
    """

    model: nn.Module
    tokenizer: Any
    train_loss: list[float] = field(default_factory=list)
    eval_accuracy: float | None = None
    eval_loss: float | None = None
    eval_accuracy_per_epoch: list[float] = field(default_factory=list)
    output_dir: Path | None = None
    append_eos: bool = True

    def reward_model(self, **kwargs: Any) -> LearnedRewardModel:
        """Wrap the trained model as a :class:`LearnedRewardModel` scoring texts as in training.

        Keyword arguments go to its constructor.
        """
        kwargs.setdefault("append_eos", self.append_eos)
        return LearnedRewardModel(self.model, self.tokenizer, **kwargs)


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass
class RewardTrainingConfig:
    """The hyperparameters of :func:`train_reward_model` as a dataclass (``textrl rm`` makes its flags from it).

    ``train_reward_model(model, tokenizer, pairs, **dataclasses.asdict(config))`` trains with them.
    """

    eval_fraction: float = _help("share of the pairs held out for accuracy when no eval file is given.", 0.1)
    epochs: int = _help("passes over the training pairs.", 1)
    batch_size: int = _help("pairs per optimiser step (2x as many texts).", 16)
    learning_rate: float = _help("AdamW learning rate.", 5e-5)
    margin: float = _help("subtracted from r_chosen - r_rejected in the loss (>= 0 asks for a gap).", 0.0)
    center_rewards_coef: float = _help("weight of (r_chosen + r_rejected)^2, keeping rewards near 0.", 0.0)
    weight_decay: float = _help("AdamW weight decay.", 0.0)
    max_length: int = _help("longest tokenized text kept.", 512)
    append_eos: bool = _help("score at an EOS appended to every text (the usual reward-model setup).", True)
    seed: int = _help("seeds the held-out split and the shuffle.", 0)

    def __post_init__(self) -> None:
        _check_hyperparameters(
            self.epochs, self.batch_size, self.learning_rate, self.margin, self.center_rewards_coef
        )
        finite_number("eval_fraction", self.eval_fraction)
        check_positive_ints(max_length=self.max_length)
        if not 0.0 <= self.eval_fraction < 1.0:
            raise ValueError(
                f"eval_fraction={self.eval_fraction!r} is invalid; expected 0 <= eval_fraction < 1"
            )


def preference_loss(
    r_chosen: torch.Tensor, r_rejected: torch.Tensor, margin: float = 0.0, center_rewards_coef: float = 0.0
) -> torch.Tensor:
    """Mean Bradley-Terry loss with optional margin and centring, over ``(B,)`` score tensors.

    ``mean(-log sigmoid(r_chosen - r_rejected - margin)) + coef * mean((r_chosen + r_rejected)**2)``
    """
    if r_chosen.shape != r_rejected.shape:
        raise ValueError(
            f"shape mismatch: r_chosen={tuple(r_chosen.shape)}, r_rejected={tuple(r_rejected.shape)}; "
            "pass one score per pair in each"
        )
    loss = -F.logsigmoid(r_chosen - r_rejected - margin).mean()
    if center_rewards_coef > 0:
        loss = loss + center_rewards_coef * (r_chosen + r_rejected).square().mean()
    return loss


def _as_pairs(pairs: Pairs, label: str) -> list[PreferencePair]:
    if isinstance(pairs, (str, os.PathLike)):
        return read_preferences(pairs)
    listed = list(pairs)
    for i, pair in enumerate(listed):
        if not isinstance(pair, PreferencePair):
            raise TypeError(f"{label}[{i}] is {type(pair).__name__}; expected PreferencePair or a JSONL path")
    return listed


def _split(
    train: list[PreferencePair], eval_pairs: Pairs | None, eval_fraction: float, seed: int
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    if eval_pairs is not None:
        return train, _as_pairs(eval_pairs, "eval_pairs")
    if not 0.0 <= eval_fraction < 1.0:
        raise ValueError(f"eval_fraction={eval_fraction!r} is invalid; expected 0 <= eval_fraction < 1")
    n_eval = math.ceil(len(train) * eval_fraction)
    if n_eval == 0:
        return train, []
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).tolist()
    return [train[i] for i in order[n_eval:]], [train[i] for i in order[:n_eval]]


def pair_scores(
    model: nn.Module,
    tokenizer: Any,
    pairs: Sequence[PreferencePair],
    max_length: int,
    device: torch.device,
    append_eos: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(r_chosen, r_rejected)``, each ``(B,)``, from one forward pass over the ``2B`` texts."""
    prompts = [p.prompt for p in pairs] * 2
    completions = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    ids, mask = encode_completions_for_scoring(
        model, tokenizer, prompts, completions, max_length, device, append_eos
    )
    scores = sequence_scores(model, ids, mask)  # (2B,)
    return scores[: len(pairs)], scores[len(pairs) :]


@torch.no_grad()
def evaluate_pairs(
    model: nn.Module,
    tokenizer: Any,
    pairs: Sequence[PreferencePair],
    batch_size: int = 64,
    max_length: int = 512,
    device: str | torch.device | None = None,
    append_eos: bool = True,
) -> tuple[float, float]:
    """``(accuracy, loss)`` on ``pairs``: how often ``r_chosen > r_rejected`` (ties count as wrong).

    ``loss`` is the mean ``-log sigmoid(r_chosen - r_rejected)``, without margin or centring.
    """
    if not pairs:
        raise ValueError("evaluate_pairs() got no pairs")
    target = torch.device(device) if device is not None else next(model.parameters()).device
    model.eval()
    correct, loss = 0.0, 0.0
    for start in range(0, len(pairs), batch_size):
        r_c, r_r = pair_scores(
            model, tokenizer, pairs[start : start + batch_size], max_length, target, append_eos
        )
        correct += float((r_c > r_r).sum())
        loss += float(-F.logsigmoid(r_c - r_r).sum())
    return correct / len(pairs), loss / len(pairs)


def _check_hyperparameters(
    epochs: int, batch_size: int, learning_rate: float, margin: float, coef: float
) -> None:
    check_positive_ints(epochs=epochs, batch_size=batch_size)
    positive_finite("learning_rate", learning_rate)
    finite_number("margin", margin)
    positive_finite("center_rewards_coef", coef, allow_zero=True)


def _progress(enabled: bool) -> Progress:
    # Imported here: every env imports reward_models, and only training draws a progress bar.
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]reward model[/] epoch {task.fields[epoch]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  eval acc {task.fields[acc]}"),
        TimeRemainingColumn(),
        disable=not enabled,
    )


def train_reward_model(
    model: str | os.PathLike[str] | nn.Module,
    tokenizer: Any,
    train_pairs: Pairs,
    eval_pairs: Pairs | None = None,
    eval_fraction: float = 0.1,
    epochs: int = 1,
    batch_size: int = 16,
    learning_rate: float = 5e-5,
    margin: float = 0.0,
    center_rewards_coef: float = 0.0,
    weight_decay: float = 0.0,
    max_length: int = 512,
    append_eos: bool = True,
    seed: int = 0,
    device: str | torch.device | None = None,
    output_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> RewardTrainingResult:
    """Fit a one-output sequence classifier to preference pairs (Bradley-Terry), report held-out accuracy.

    Args:
        model: a hub id or path (loaded with ``AutoModelForSequenceClassification`` and a fresh
            one-output head if it has none) or a module with ``config.num_labels == 1``.
        tokenizer: the model's tokenizer; None to load it from ``model``'s id/path.
        train_pairs: :class:`PreferencePair` objects or a JSONL path (see ``read_preferences``).
        eval_pairs: held-out pairs or a JSONL path; when None, ``eval_fraction`` of ``train_pairs``
            (seeded) is held out instead.
        eval_fraction: share held out when ``eval_pairs`` is None; 0 disables evaluation.
        epochs: passes over the training pairs.
        batch_size: pairs per optimiser step (each step scores ``2 * batch_size`` texts).
        learning_rate: AdamW learning rate.
        margin: subtracted from ``r_chosen - r_rejected`` inside the loss (>= 0 asks for a gap).
        center_rewards_coef: weight of ``(r_chosen + r_rejected)**2``; 0 turns centring off.
        weight_decay: AdamW weight decay.
        max_length: longest tokenized text kept.
        append_eos: score decoder models at an EOS token appended to every text (the usual
            reward-model setup, and more accurate than reading the last word's position); saved
            with the model so :class:`LearnedRewardModel` scores the same way.
        seed: seeds the held-out split and the shuffling.
        device: where to train; None keeps a module where it is, a loaded model goes to CUDA if any.
        output_dir: if given, the trained model is saved there (safetensors + tokenizer), atomically.
        progress: show a rich progress bar.

    Returns:
        A :class:`RewardTrainingResult`.

    Raises:
        ValueError: invalid hyperparameters, a model with ``num_labels != 1``, or no training pairs.
    """
    _check_hyperparameters(epochs, batch_size, learning_rate, margin, center_rewards_coef)
    net, tokenizer = load_reward_backbone(model, tokenizer, num_labels_check=False)
    check_single_label(net)
    target = resolve_device(device, model, net)
    net.to(target)
    train, held_out = _split(_as_pairs(train_pairs, "train_pairs"), eval_pairs, eval_fraction, seed)
    if not train:
        raise ValueError("no training pairs left; pass more pairs or a smaller eval_fraction")

    optimizer = torch.optim.AdamW(net.parameters(), lr=learning_rate, weight_decay=weight_decay)
    generator = torch.Generator().manual_seed(seed)
    result = RewardTrainingResult(model=net, tokenizer=tokenizer, append_eos=append_eos)
    steps_per_epoch = math.ceil(len(train) / batch_size)
    net.eval()  # dropout off; gradients still flow
    with _progress(progress) as bar:
        task = bar.add_task("train", total=epochs * steps_per_epoch, epoch=1, loss=float("nan"), acc="-")
        for epoch in range(epochs):
            order = torch.randperm(len(train), generator=generator).tolist()
            for start in range(0, len(train), batch_size):
                batch = [train[i] for i in order[start : start + batch_size]]
                optimizer.zero_grad(set_to_none=True)  # before the forward: its activations reuse the memory
                r_c, r_r = pair_scores(net, tokenizer, batch, max_length, target, append_eos)  # (B,), (B,)
                loss = preference_loss(r_c, r_r, margin, center_rewards_coef)
                loss.backward()
                optimizer.step()
                result.train_loss.append(float(loss.detach()))
                bar.update(task, advance=1, epoch=epoch + 1, loss=result.train_loss[-1])
            if held_out:
                accuracy, eval_loss = evaluate_pairs(
                    net, tokenizer, held_out, 2 * batch_size, max_length, target, append_eos
                )
                result.eval_accuracy_per_epoch.append(accuracy)
                result.eval_accuracy, result.eval_loss = accuracy, eval_loss
                bar.update(task, acc=f"{accuracy:.3f}")
    if output_dir is not None:
        training = {
            "train_pairs": len(train),
            "eval_pairs": len(held_out),
            "eval_accuracy": result.eval_accuracy,
            "eval_loss": result.eval_loss,
            "final_train_loss": result.train_loss[-1],
        }
        # Recorded beside the normalisation settings, for whoever loads the model later.
        result.output_dir = result.reward_model().save_pretrained(output_dir, metadata={"training": training})
    return result
