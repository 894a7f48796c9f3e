"""The vector env's ``info`` for the rows that ended at a step, in Gymnasium's vector layout.

Each key holds one entry per row (zeros or empty strings for rows that did not end) and a
``"_" + key`` bool mask of the rows that have one, as ``gymnasium.vector`` envs report info.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from textrl_env.core import EpisodeScores

INFO_KEYS = (
    "score",
    "kl",
    "logprobs",
    "ref_logprobs",
    "response_mask",
    "prompt",
    "completion",
    "reward_error",
)


def ended_info(
    result: EpisodeScores,
    ended: np.ndarray,
    rows: torch.Tensor,
    t_max: int,
    response_mask: torch.Tensor,
    row_prompts: list[str],
    max_new_tokens: int,
) -> dict[str, Any]:
    """``info`` for the rows ``ended`` (bool ``(N,)``; ``rows`` their indices), scored as ``result``.

    Args:
        result: the scores of the ended rows, in row order, their per-token values ``t_max`` wide.
        ended: which of the ``N`` rows ended.
        rows: ``np.flatnonzero(ended)`` as a tensor on the env's device.
        t_max: the longest response among the ended rows.
        response_mask: ``(N, max_new_tokens)`` every row's response mask.
        row_prompts: every row's prompt text.
        max_new_tokens: the width of the per-token entries.
    """
    n, device = len(ended), response_mask.device
    mask = torch.as_tensor(ended, device=device)
    info: dict[str, Any] = {"score": torch.zeros(n, device=device)}
    info["score"][rows] = result.score.float()
    for key, value in (
        ("kl", result.kl),
        ("logprobs", result.logprobs),
        ("ref_logprobs", result.ref_logprobs),
    ):
        full = torch.zeros((n, max_new_tokens), device=device)
        full[rows, :t_max] = value.float()
        info[key] = full
    info["response_mask"] = response_mask * mask.unsqueeze(1)
    info["prompt"] = np.array([p if e else "" for p, e in zip(row_prompts, ended, strict=True)], dtype=object)
    info["completion"] = np.full(n, "", dtype=object)
    info["completion"][ended] = np.array(result.completions + [None], dtype=object)[:-1]
    info["reward_error"] = np.zeros(n, dtype=bool)
    info["reward_error"][ended] = result.reward_error.cpu().numpy()
    for key in INFO_KEYS:
        info["_" + key] = ended.copy()
    return info
