"""Preallocated storage for a batch of finished episodes, and shuffled minibatches over it.

Layout (the env's observation layout, split in two): a left-padded prompt block ``(N, P)`` and a
right-padded response block ``(N, T)``. The response mask is 1 up to and including the first EOS
and 0 after, so ``cat([prompt_mask, response_mask])`` is a valid attention mask and
``sequence_logprobs(model, batch.input_ids, batch.attention_mask, batch.response_start)`` scores
exactly the stored tokens.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import NamedTuple

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


class RolloutBatch(NamedTuple):
    """A (mini)batch of finished episodes; rows index episodes, columns tokens."""

    prompt_ids: torch.Tensor  # (B, P) left-padded
    prompt_mask: torch.Tensor  # (B, P)
    response_ids: torch.Tensor  # (B, T) right-padded after EOS
    response_mask: torch.Tensor  # (B, T) 1 up to and including the first EOS
    logprobs: torch.Tensor  # (B, T) old log-probs (the sampling policy's)
    ref_logprobs: torch.Tensor  # (B, T) reference log-probs
    scores: torch.Tensor  # (B,) reward-model scores
    values: torch.Tensor  # (B, T) value estimates at rollout time (0 without a critic)
    advantages: torch.Tensor  # (B, T) filled in by the algorithm
    returns: torch.Tensor  # (B, T) filled in by the algorithm

    @property
    def input_ids(self) -> torch.Tensor:
        """``(B, P + T)`` prompt followed by response."""
        return torch.cat([self.prompt_ids, self.response_ids], dim=1)

    @property
    def attention_mask(self) -> torch.Tensor:
        """``(B, P + T)`` mask of real tokens (padding and everything after EOS is 0)."""
        return torch.cat([self.prompt_mask, self.response_mask], dim=1)

    @property
    def response_start(self) -> int:
        """The column where the response begins (``P``)."""
        return self.prompt_ids.shape[1]


def minibatches(
    batch_size: int,
    minibatch_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> Iterator[torch.Tensor]:
    """Shuffled index sets that cover ``range(batch_size)`` exactly once.

    Args:
        batch_size: rows in the batch.
        minibatch_size: rows per minibatch; must divide ``batch_size``.
        generator: seeds the shuffle (pass the algorithm's generator for reproducible runs).
        device: where the index tensors live (the generator's device when None).

    Yields:
        ``(minibatch_size,)`` int64 index tensors.

    Raises:
        ValueError: ``minibatch_size`` does not divide ``batch_size``.
    """
    check_minibatch_size(batch_size, minibatch_size)
    gen_device = generator.device if generator is not None else "cpu"
    order = torch.randperm(batch_size, generator=generator, device=gen_device)
    if device is not None:
        order = order.to(device)
    yield from order.split(minibatch_size)


def check_minibatch_size(batch_size: int, minibatch_size: int) -> None:
    """Raise a ValueError that names both numbers and a fix unless ``minibatch_size`` divides ``batch_size``."""
    if batch_size < 1 or minibatch_size < 1:
        raise ValueError(
            f"batch_size and minibatch_size must be >= 1, got batch_size={batch_size}, minibatch_size={minibatch_size}"
        )
    if batch_size % minibatch_size != 0:
        divisors = [d for d in range(1, batch_size + 1) if batch_size % d == 0]
        below = [d for d in divisors if d <= minibatch_size]
        above = [d for d in divisors if d > minibatch_size]
        hint = ", ".join(str(d) for d in (below[-1:] + above[:1]))
        raise ValueError(
            f"a batch of {batch_size} episodes is not divisible into minibatches of {minibatch_size}: "
            f"choose a minibatch size that divides {batch_size} (e.g. {hint}), or change the number of "
            f"episodes per batch to a multiple of {minibatch_size}"
        )


class RolloutBuffer:
    """Plain preallocated tensors for ``capacity`` finished episodes (cleanrl style).

    Fill with :meth:`add` (any number of rows at a time), let the algorithm write
    ``advantages``/``returns`` in place, then read :meth:`get` or iterate :meth:`minibatches`.

    Args:
        capacity: number of episodes the buffer holds.
        prompt_length: ``P``, columns of the left-padded prompt block.
        max_new_tokens: ``T``, columns of the response block.
        pad_token_id: fills empty prompt and response columns.
        device: where every tensor lives.
    """

    def __init__(
        self,
        capacity: int,
        prompt_length: int,
        max_new_tokens: int,
        pad_token_id: int = 0,
        device: torch.device | str = "cpu",
    ) -> None:
        for name, value in (
            ("capacity", capacity),
            ("prompt_length", prompt_length),
            ("max_new_tokens", max_new_tokens),
        ):
            if value < 1:
                raise ValueError(f"{name} must be >= 1, got {value}")
        self.capacity, self.prompt_length, self.max_new_tokens = capacity, prompt_length, max_new_tokens
        self.pad_token_id = pad_token_id
        self.device = torch.device(device)
        n, p, t = capacity, prompt_length, max_new_tokens
        dev, long = self.device, torch.long
        self.prompt_ids = torch.full((n, p), pad_token_id, dtype=long, device=dev)
        self.prompt_mask = torch.zeros((n, p), dtype=long, device=dev)
        self.response_ids = torch.full((n, t), pad_token_id, dtype=long, device=dev)
        self.response_mask = torch.zeros((n, t), dtype=long, device=dev)
        self.logprobs = torch.zeros((n, t), device=dev)
        self.ref_logprobs = torch.zeros((n, t), device=dev)
        self.scores = torch.zeros((n,), device=dev)
        self.values = torch.zeros((n, t), device=dev)
        self.advantages = torch.zeros((n, t), device=dev)
        self.returns = torch.zeros((n, t), device=dev)
        self.pos = 0

    @property
    def full(self) -> bool:
        return self.pos == self.capacity

    def reset(self) -> None:
        """Start filling from row 0 again (old contents are overwritten as new rows arrive)."""
        self.pos = 0

    def add(
        self,
        prompt_ids: torch.Tensor,
        prompt_mask: torch.Tensor,
        response_ids: torch.Tensor,
        response_mask: torch.Tensor,
        logprobs: torch.Tensor,
        ref_logprobs: torch.Tensor,
        scores: torch.Tensor,
        values: torch.Tensor | None = None,
    ) -> None:
        """Append ``n`` finished episodes (each tensor has ``n`` rows; responses may be shorter than ``T``)."""
        n = prompt_ids.shape[0]
        if self.pos + n > self.capacity:
            raise ValueError(
                f"adding {n} episodes to a buffer holding {self.pos} of {self.capacity}; "
                "call reset() after consuming a batch, or build the buffer with a larger capacity"
            )
        if prompt_ids.shape[1] != self.prompt_length:
            raise ValueError(
                f"prompt block has {prompt_ids.shape[1]} columns, the buffer expects {self.prompt_length}; "
                "left-pad prompts to the env's prompt_length"
            )
        t = response_ids.shape[1]
        if t > self.max_new_tokens:
            raise ValueError(
                f"response block has {t} columns, more than max_new_tokens={self.max_new_tokens}"
            )
        rows = slice(self.pos, self.pos + n)
        self.prompt_ids[rows] = prompt_ids
        self.prompt_mask[rows] = prompt_mask
        # reset the whole response row first so a shorter response never inherits old tokens
        self.response_ids[rows] = self.pad_token_id
        for store in (
            self.response_mask,
            self.logprobs,
            self.ref_logprobs,
            self.values,
            self.advantages,
            self.returns,
        ):
            store[rows] = 0
        self.response_ids[rows, :t] = response_ids
        self.response_mask[rows, :t] = response_mask
        self.logprobs[rows, :t] = logprobs
        self.ref_logprobs[rows, :t] = ref_logprobs
        if values is not None:
            self.values[rows, :t] = values
        self.scores[rows] = scores
        self.pos += n

    def get(self, indices: torch.Tensor | slice | None = None) -> RolloutBatch:
        """The stored rows (all filled rows when ``indices`` is None) as a :class:`RolloutBatch`."""
        idx = slice(0, self.pos) if indices is None else indices
        return RolloutBatch(
            self.prompt_ids[idx],
            self.prompt_mask[idx],
            self.response_ids[idx],
            self.response_mask[idx],
            self.logprobs[idx],
            self.ref_logprobs[idx],
            self.scores[idx],
            self.values[idx],
            self.advantages[idx],
            self.returns[idx],
        )

    def minibatches(
        self, minibatch_size: int, generator: torch.Generator | None = None
    ) -> Iterator[RolloutBatch]:
        """Shuffled minibatches over the filled rows; raises ValueError when they do not divide evenly."""
        for idx in minibatches(self.pos, minibatch_size, generator, device=self.device):
            yield self.get(idx)
