"""Loading and checking the policy model and tokenizer an environment is built around.

A model id, a local path and an already built module all go through here, so the embedded
default model takes the same ``from_pretrained`` path as ``"gpt2"`` does for a user with hub access.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import torch
from torch import nn

from reward_models.safe_loading import from_pretrained_safely

ModelLike = str | os.PathLike | nn.Module


def load_model_and_tokenizer(
    model: ModelLike, tokenizer: Any = None, device: str | torch.device | None = None
) -> tuple[nn.Module, Any]:
    """Return ``(model, tokenizer)`` ready for an environment.

    Args:
        model: a transformers model id, a local directory, or a causal LM module.
        tokenizer: a tokenizer, an id/path, or None to load it from the model's id/path.
        device: where the model lives; None keeps a module where it is (CPU for loaded ones).

    Raises:
        ValueError: the tokenizer has no pad token, or the model emits fewer logits than it has tokens
            (more is fine: a padded vocabulary, see :func:`check_vocab`).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = None
    if isinstance(model, str | os.PathLike):
        source = os.fspath(model)
        loaded: nn.Module = from_pretrained_safely(AutoModelForCausalLM, source)
        model = loaded
    elif not isinstance(model, nn.Module):
        raise TypeError(
            f"model must be a transformers model id, a local path or a torch.nn.Module, got {type(model).__name__}"
        )
    if tokenizer is None:
        source = (
            source or getattr(model, "name_or_path", None) or getattr(model.config, "_name_or_path", None)
        )
        if not source:
            raise ValueError(
                "no tokenizer given and the model has no name_or_path to load one from; pass tokenizer=..."
            )
        tokenizer = AutoTokenizer.from_pretrained(source)
    elif isinstance(tokenizer, str | os.PathLike):
        tokenizer = AutoTokenizer.from_pretrained(os.fspath(tokenizer))
    check_tokenizer(tokenizer)
    check_vocab(model, tokenizer)
    if device is not None:
        model = model.to(check_device(device))
    # Dropout off: log-probs of the sampled tokens must be the ones the sampler saw.
    model.eval()
    return model, tokenizer


def check_device(device: Any) -> torch.device:
    """``device`` as a ``torch.device``, refusing one this machine does not have (with the fix).

    Raises:
        TypeError: ``device`` is not a string or a ``torch.device``.
        ValueError: it names no device torch knows, or CUDA / MPS is not available here.
    """
    if not isinstance(device, str | torch.device):
        raise TypeError(
            f"device must be a string such as 'cpu' or 'cuda:0' (or a torch.device), got {type(device).__name__} "
            f"{device!r}"
        )
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise ValueError(
            f"device={device!r} is not a device torch knows ({err}); use 'cpu', 'cuda' or 'cuda:0'"
        ) from err
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(
                f"device={device!r} but CUDA is not available on this machine (torch {torch.__version__}, "
                "no GPU or a CPU-only build); use device='cpu' (or 'auto' in the agents)"
            )
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(
                f"device={device!r} but this machine has {torch.cuda.device_count()} CUDA device(s); "
                "use 'cuda:0' or a smaller index"
            )
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device={device!r} but MPS is not available here; use device='cpu'")
    return parsed


def model_vocab_size(model: nn.Module) -> int:
    """Number of logits the model emits per position."""
    module: Any = model  # transformers models are duck-typed here
    head = module.get_output_embeddings() if hasattr(module, "get_output_embeddings") else None
    if head is not None and hasattr(head, "out_features"):
        return int(head.out_features)
    return int(module.config.vocab_size)


def check_tokenizer(tokenizer: Any) -> None:
    """Raise a clear error for a tokenizer textrl cannot pad or stop with."""
    name = getattr(tokenizer, "name_or_path", type(tokenizer).__name__)
    if tokenizer.eos_token_id is None:
        raise ValueError(
            f"tokenizer {name!r} has no EOS token; an episode ends when the policy emits EOS. "
            "Set one: tokenizer.eos_token = '<|endoftext|>' (a token in its vocabulary)."
        )
    if tokenizer.pad_token_id is None:
        raise ValueError(
            f"tokenizer {name!r} has no pad token (pad_token_id=None); prompts are left-padded. "
            "Add one distinct from EOS: tokenizer.add_special_tokens({'pad_token': '<pad>'}) and then "
            "model.resize_token_embeddings(len(tokenizer))."
        )


def check_vocab(model: nn.Module, tokenizer: Any) -> int:
    """The number of real tokens, ``len(tokenizer)``, after checking the model has a logit for each.

    A model may emit *more* logits than the tokenizer has tokens: embeddings padded to a multiple
    of 64 or 128 (Qwen, many Llama checkpoints) are common. The extra ids, at the end, are no token,
    so textrl drops their logits everywhere it samples or measures log-probs
    (:func:`textrl_env.token_math.real_vocab_logits`) and the action space is ``Discrete(len(tokenizer))``.

    Raises:
        ValueError: the model emits fewer logits than the tokenizer has tokens (they belong to different vocabularies).
    """
    n_model, n_tok = model_vocab_size(model), len(tokenizer)
    if n_model < n_tok:
        raise ValueError(
            f"the model emits {n_model} logits but the tokenizer has {n_tok} tokens, so token ids "
            f">= {n_model} have no logit; actions are token ids. Use the tokenizer the model was trained with, "
            f"or call model.resize_token_embeddings(len(tokenizer)) (-> {n_tok})."
        )
    return n_tok


def frozen_copy(model: nn.Module) -> nn.Module:
    """A deep copy with gradients off and dropout off: the KL reference."""
    ref = copy.deepcopy(model)
    ref.eval()
    ref.requires_grad_(False)
    return ref


def context_length(model: nn.Module) -> int | None:
    """The longest sequence the model's position embeddings allow, when the config says."""
    config = model.config
    for key in ("n_positions", "max_position_embeddings", "n_ctx"):
        value = getattr(config, key, None)
        if isinstance(value, int) and value > 0:
            return value
    return None
