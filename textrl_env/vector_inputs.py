"""Checking what callers hand the vector env: actions, per-row prompts and seeds."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def check_actions(
    actions: Any, active: torch.Tensor, num_envs: int, vocab_size: int, pad_token_id: int
) -> torch.Tensor:
    """``(num_envs,)`` int64 actions on ``active``'s device; idle rows' actions become ``pad_token_id``."""
    actions = torch.as_tensor(actions, device=active.device)
    if actions.shape != (num_envs,) or actions.dtype.is_floating_point or actions.dtype == torch.bool:
        raise ValueError(
            f"actions must be {num_envs} integer token ids, shape ({num_envs},); "
            f"got dtype {actions.dtype} and shape {tuple(actions.shape)}"
        )
    actions = actions.long()
    bad = active & ((actions < 0) | (actions >= vocab_size))
    if actions.device.type == "cpu":
        if bool(bad.any()):
            row = int(bad.nonzero()[0, 0])
            raise ValueError(
                f"action {int(actions[row])} for row {row} is not a token id of this env's vocabulary "
                f"(0 <= id < {vocab_size}); sample actions from the policy's logits"
            )
    else:  # checked on the device, without a host round trip
        torch._assert_async(~bad.any(), "textrl: an action is outside the vocabulary (0 <= id < vocab_size)")
    # Idle rows (restarting, or ended under DISABLED) ignore their action; make it a harmless id.
    return torch.where(active, actions, pad_token_id)


def reset_prompts(options: dict[str, Any] | None, num_envs: int) -> list[str] | None:
    """``options["prompt"]``: one str for every row, or a list with one prompt per row."""
    prompt = (options or {}).get("prompt")
    if prompt is None:
        return None
    if isinstance(prompt, str):
        return [prompt] * num_envs
    prompts = list(prompt)
    if len(prompts) != num_envs:
        raise ValueError(
            f"options['prompt'] has {len(prompts)} prompts for {num_envs} envs; "
            "pass one string for every row or a list with exactly one prompt per row"
        )
    return prompts


def row_seeds(seed: int | Sequence[int | None] | None, num_envs: int) -> list[int | None] | None:
    """One seed per row: ``seed + i`` for an int (as ``SyncVectorEnv``), a list as given, or None."""
    if seed is None:
        return None
    if isinstance(seed, int):
        return [seed + i for i in range(num_envs)]
    seeds = list(seed)
    if len(seeds) != num_envs:
        raise ValueError(f"got {len(seeds)} seeds for {num_envs} envs; pass an int or one seed per env")
    return seeds
