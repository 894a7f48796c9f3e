"""Hypothesis strategies for property-testing reward shaping, rewards and token pipelines.

These strategies produce the tensors textrl passes around, with the same conventions as the
environments: ``(B, T)`` batches over response tokens, masks that are a contiguous prefix of 1s
followed by 0s (every row has at least one 1), log-probabilities that are finite and <= 0.

- :func:`token_sequences` -- ``(ids, mask)``: int64 token ids and an int64 attention-style mask,
  optionally ending each row at an EOS with zeros after it.
- :func:`logprob_tensors` -- ``(logprobs, ref_logprobs, mask)``: float tensors, mask as float 0/1.
- :func:`reward_batches` -- ``(B,)`` finite float scores.
- :func:`prompts_and_completions` -- two equal-length lists of strings (completions may be empty).
- :func:`kl_coefs` -- finite KL coefficients >= 0 (0 included).

Example: property-test your own shaping function. The return of an episode must stay
``score - kl_coef * sum(kl)`` however the reward is spread over tokens::

    import torch
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from reward_models import kl_penalty
    from textrl_env.testing import kl_coefs, logprob_tensors, reward_batches


    def my_shaping(scores, kl, mask, kl_coef):
        rewards = -kl_coef * kl * mask
        last = mask.cumsum(dim=1).argmax(dim=1)  # index of each row's last response token
        rewards[torch.arange(len(scores)), last] += scores
        return rewards


    @settings(max_examples=50, deadline=None)
    @given(st.data(), kl_coefs())
    def test_my_shaping_keeps_the_return(data, kl_coef):
        logprobs, ref_logprobs, mask = data.draw(logprob_tensors())
        scores = data.draw(reward_batches(batch_size=logprobs.shape[0]))
        kl = kl_penalty(logprobs, ref_logprobs, mask, estimator="k3")
        rewards = my_shaping(scores, kl, mask, kl_coef)
        expected = scores - kl_coef * kl.sum(dim=1)
        torch.testing.assert_close(rewards.sum(dim=1), expected, rtol=1e-4, atol=1e-3)
        assert bool((rewards[mask == 0] == 0).all())

This module imports only Hypothesis and torch, so importing it is cheap.
"""

from __future__ import annotations

import torch
from hypothesis import strategies as st

__all__ = [
    "kl_coefs",
    "logprob_tensors",
    "prompts_and_completions",
    "reward_batches",
    "token_sequences",
]


def _check_positive_int(name: str, value: int | None) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{name}={value!r} is invalid; expected a positive int or None")


def _size(draw: st.DrawFn, fixed: int | None, maximum: int) -> int:
    """A fixed size when given, else one drawn from 1..maximum."""
    return fixed if fixed is not None else draw(st.integers(1, maximum))


def _prefix_mask(draw: st.DrawFn, batch_size: int, length: int) -> torch.Tensor:
    """``(B, T)`` int64 mask of contiguous leading 1s; every row has at least one 1."""
    lengths = draw(st.lists(st.integers(1, length), min_size=batch_size, max_size=batch_size))
    positions = torch.arange(length).unsqueeze(0)  # (1, T)
    return (positions < torch.tensor(lengths).unsqueeze(1)).long()  # (B, T)


def token_sequences(
    vocab_size: int,
    max_len: int,
    *,
    batch_size: int | None = None,
    max_batch_size: int = 4,
    eos_token_id: int | None = None,
    pad_token_id: int = 0,
) -> st.SearchStrategy[tuple[torch.Tensor, torch.Tensor]]:
    """Batches of token ids with right-padded prefix masks.

    Args:
        vocab_size: ids are drawn from ``range(vocab_size)``.
        max_len: the padded length ``T`` is drawn from ``1..max_len``.
        batch_size: fixed ``B``; if None it is drawn from ``1..max_batch_size``.
        max_batch_size: upper bound for a drawn ``B``.
        eos_token_id: if given, ordinary tokens never equal it, and each row may end with it at its
            last unmasked position -- the mask is 1 up to and including the first EOS and 0 after,
            as the environments mask everything after EOS.
        pad_token_id: id written at masked positions.

    Returns:
        A strategy for ``(ids, mask)``, both int64 of shape ``(B, T)``.

    Raises:
        ValueError: at once (not when drawing) for sizes < 1 or an EOS id outside the vocabulary.
    """
    _check_positive_int("vocab_size", vocab_size)
    _check_positive_int("max_len", max_len)
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("max_batch_size", max_batch_size)
    if eos_token_id is not None and not (0 <= eos_token_id < vocab_size and vocab_size > 1):
        raise ValueError(
            f"eos_token_id={eos_token_id} must be in range(vocab_size={vocab_size}) with room for other tokens"
        )

    @st.composite
    def draw_sequences(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
        b, t = _size(draw, batch_size, max_batch_size), draw(st.integers(1, max_len))
        # Skipping the EOS id keeps "first EOS" well defined: it is only where we put it.
        token = st.integers(0, vocab_size - 2 if eos_token_id is not None else vocab_size - 1)
        flat = draw(st.lists(token, min_size=b * t, max_size=b * t))
        ids = torch.tensor(flat, dtype=torch.long).view(b, t)  # (B, T)
        mask = _prefix_mask(draw, b, t)  # (B, T)
        if eos_token_id is not None:
            ids = ids + (ids >= eos_token_id).long()  # shift ids past the EOS id
            ends_with_eos = torch.tensor(draw(st.lists(st.booleans(), min_size=b, max_size=b)))  # (B,)
            last = mask.sum(dim=1) - 1  # (B,)
            ids[torch.arange(b)[ends_with_eos], last[ends_with_eos]] = eos_token_id
        ids = torch.where(mask.bool(), ids, torch.full_like(ids, pad_token_id))
        return ids, mask

    return draw_sequences()


def logprob_tensors(
    batch_size: int | None = None,
    length: int | None = None,
    *,
    max_batch_size: int = 4,
    max_length: int = 16,
    min_logprob: float = -20.0,
    dtype: torch.dtype = torch.float32,
) -> st.SearchStrategy[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(logprobs, ref_logprobs, mask)`` triples as the environment puts them in ``info``.

    Log-probs are finite floats in ``[min_logprob, 0]``, independent for policy and reference
    (about one draw in four makes them identical, the KL = 0 case); the values at masked positions
    are arbitrary, so a shaping function that forgets the mask is caught.

    Args:
        batch_size: fixed ``B``; drawn from ``1..max_batch_size`` when None.
        length: fixed ``T``; drawn from ``1..max_length`` when None.
        max_batch_size: upper bound for a drawn ``B``.
        max_length: upper bound for a drawn ``T``.
        min_logprob: lower bound of the log-probs (finite, < 0).
        dtype: floating dtype of all three tensors.

    Returns:
        A strategy for three tensors of shape ``(B, T)``; ``mask`` holds 0.0 / 1.0, a prefix of 1s.

    Raises:
        ValueError: at once for sizes < 1 or a ``min_logprob`` that is not finite and negative.
    """
    for name, size in [("batch_size", batch_size), ("length", length)]:
        _check_positive_int(name, size)
    for name, size in [("max_batch_size", max_batch_size), ("max_length", max_length)]:
        _check_positive_int(name, size)
    if not (-1e30 < min_logprob < 0):
        raise ValueError(f"min_logprob={min_logprob} is invalid; expected a finite negative number")
    value = st.floats(min_logprob, 0.0, allow_nan=False, allow_infinity=False, width=32)

    @st.composite
    def draw_triple(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t = _size(draw, batch_size, max_batch_size), _size(draw, length, max_length)
        logprobs = torch.tensor(draw(st.lists(value, min_size=b * t, max_size=b * t)), dtype=dtype)
        logprobs = logprobs.view(b, t)  # (B, T)
        if draw(st.integers(0, 3)) == 0:
            ref_logprobs = logprobs.clone()
        else:
            flat = draw(st.lists(value, min_size=b * t, max_size=b * t))
            ref_logprobs = torch.tensor(flat, dtype=dtype).view(b, t)  # (B, T)
        mask = _prefix_mask(draw, b, t).to(dtype)  # (B, T)
        return logprobs, ref_logprobs, mask

    return draw_triple()


def reward_batches(
    batch_size: int | None = None,
    *,
    max_batch_size: int = 8,
    min_value: float = -10.0,
    max_value: float = 10.0,
    dtype: torch.dtype = torch.float32,
) -> st.SearchStrategy[torch.Tensor]:
    """``(B,)`` tensors of finite scores in ``[min_value, max_value]``.

    Args:
        batch_size: fixed ``B`` (pass ``logprobs.shape[0]`` to match a drawn batch).
        max_batch_size: upper bound for a drawn ``B``.
        min_value: smallest score.
        max_value: largest score.
        dtype: floating dtype.
    """
    _check_positive_int("batch_size", batch_size)
    _check_positive_int("max_batch_size", max_batch_size)
    if not min_value <= max_value:
        raise ValueError(f"min_value={min_value} must be <= max_value={max_value}")
    value = st.floats(min_value, max_value, allow_nan=False, allow_infinity=False, width=32)
    sizes = st.just(batch_size) if batch_size is not None else st.integers(1, max_batch_size)
    return sizes.flatmap(lambda n: st.lists(value, min_size=n, max_size=n)).map(
        lambda values: torch.tensor(values, dtype=dtype)
    )


def prompts_and_completions(
    *,
    min_size: int = 1,
    max_size: int = 8,
    max_chars: int = 40,
    alphabet: st.SearchStrategy[str] | None = None,
) -> st.SearchStrategy[tuple[list[str], list[str]]]:
    """Two lists of the same length: prompts and completions, any Unicode text, empty included.

    Args:
        min_size: fewest pairs.
        max_size: most pairs.
        max_chars: longest string.
        alphabet: characters to draw from; defaults to all valid Unicode (no lone surrogates).
    """
    chars = alphabet if alphabet is not None else st.characters(exclude_categories=["Cs"])
    text = st.text(chars, max_size=max_chars)
    # Empty completions are common in RL (a policy that emits EOS first), so draw them on purpose.
    completion = st.one_of(st.just(""), text)
    pairs = st.lists(st.tuples(text, completion), min_size=min_size, max_size=max_size)
    return pairs.map(lambda rows: ([p for p, _ in rows], [c for _, c in rows]))


def kl_coefs(min_value: float = 0.0, max_value: float = 1.0) -> st.SearchStrategy[float]:
    """Finite KL coefficients in ``[min_value, max_value]`` (0, no penalty, is included by default)."""
    if not 0.0 <= min_value <= max_value:
        raise ValueError(
            f"need 0 <= min_value <= max_value; got min_value={min_value}, max_value={max_value}"
        )
    return st.floats(min_value, max_value, allow_nan=False, allow_infinity=False)
