"""The response mask of sampled tokens, for users who store their own rollouts.

textrl's agents keep what the env reports (:class:`agents.collect.Episodes`); the env already masks
everything after the first EOS. A response sampled elsewhere (``model.generate``) gets the same
mask from :func:`mask_after_eos`, so ``cat([prompt_mask, response_mask])`` is a valid attention
mask for :func:`textrl_env.logprobs.sequence_logprobs`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def mask_after_eos(response_ids: torch.Tensor, eos_token_id: int | Sequence[int]) -> torch.Tensor:
    """Response mask: 1 up to and including the first EOS of each row, 0 after.

    A row without EOS (truncated at the length limit) is all ones.

    Args:
        response_ids: ``(B, T)`` sampled tokens.
        eos_token_id: the EOS id, or several (some models stop on any of a set).

    Returns:
        ``(B, T)`` int64 mask.
    """
    eos = torch.as_tensor(eos_token_id, device=response_ids.device).reshape(-1)
    is_eos = torch.isin(response_ids, eos).long()  # (B, T)
    eos_before = is_eos.cumsum(-1) - is_eos  # EOS strictly before each column
    return (eos_before == 0).long()
