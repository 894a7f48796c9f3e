"""Teacher-forced log-probabilities (and entropies) of a response under a causal LM.

The one place the environments, the agents and SFT measure log-probs, so every part of textrl
measures them the same way (the checklist of "The N+ implementation details of RLHF with PPO"):

- position ids come from the attention mask (``cumsum - 1``, clamped), so left padding does not
  shift the positions of real tokens;
- logits are divided by the sampling temperature *before* the log-softmax, so the log-probs are
  those of the distribution the tokens were actually sampled from;
- the logit at column ``j`` predicts the token at column ``j + 1``;
- masked response positions come back as exactly 0;
- with ``vocab_size`` (the tokenizer's size), the logits of ids past it (padded embeddings) are
  dropped (:func:`real_vocab_logits`), so every log-prob is normalised over the real tokens;
- the forward itself is the cheaper of two exact ones (see :func:`teacher_forced`): columns that
  are padding in every row are dropped, and when the prompts are about the same length, each
  row's real tokens are rolled to its front and run under plain causal attention, with no
  padding mask.

Only torch is imported here, so any package may depend on this module cheaply.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal, overload

import torch
from torch import nn

from textrl_env.gpt2_plain import packed_shared_prefix_logits
from textrl_env.kv_cache import forward_parameters
from textrl_env.shared_prefix import packs, shared_prefix_forward, shared_prompts
from textrl_env.token_math import real_vocab_logits, token_entropy, token_logprobs


def position_ids_from_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """Position ids that ignore left padding: 0 at the first real token of each row.

    Args:
        attention_mask: ``(B, L)`` 1 on real tokens, 0 on padding.

    Returns:
        ``(B, L)`` int64 positions; padding before the first real token gets 0.
    """
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def roll_rows_index(shift: torch.Tensor, length: int) -> torch.Tensor:
    """``(B, L)`` gather index that rolls row ``b`` right by ``shift[b]`` columns (left if negative)."""
    columns = torch.arange(length, device=shift.device)
    return (columns.unsqueeze(0) - shift.unsqueeze(1)) % length


def leading_padding(prompt_mask: torch.Tensor) -> int:
    """How many leading columns of a left-padded ``(B, P)`` mask are padding in every row."""
    used = prompt_mask.any(dim=0)  # (P,)
    # A used sentinel column at the end makes an all-padding block give P, with one host sync.
    return int(torch.cat([used, used.new_ones(1)]).int().argmax())


def drop_common_padding(
    input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Drop the leading columns that are padding in every row: they change no real token's output.

    Prompt windows are sized for the longest prompt a task has, so a batch of shorter ones
    carries columns no row uses; a teacher-forced pass without them is the same, only shorter.
    One column before the response is always kept (it predicts the first response token).

    Returns:
        ``(input_ids, attention_mask, response_start)`` without those columns.
    """
    low = max(0, min(leading_padding(attention_mask[:, :response_start]), response_start - 1))
    return input_ids[:, low:], attention_mask[:, low:], response_start - low


def accepts_logits_to_keep(model: nn.Module) -> bool:
    """Whether ``model.forward`` takes ``logits_to_keep`` (transformers' causal LMs do, peft passes it on)."""
    return "logits_to_keep" in (forward_parameters(model) or ())


def _check_inputs(input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int) -> None:
    if input_ids.dim() != 2:
        raise ValueError(
            f"input_ids must be a (B, L) batch, got shape {tuple(input_ids.shape)}; "
            "add a batch dimension with input_ids.unsqueeze(0)"
        )
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask shape {tuple(attention_mask.shape)} differs from input_ids shape "
            f"{tuple(input_ids.shape)}; pass the mask that belongs to these ids"
        )
    length = input_ids.shape[1]
    if not 1 <= response_start <= length:
        raise ValueError(
            f"response_start must be in [1, {length}] for sequences of length {length}, got {response_start}; "
            "it is the column where the response begins (the padded prompt length), and a response needs "
            "at least one prompt token before it"
        )


# Switch for benchmarks (benchmarks/RESULTS.md): TEXTRL_ROLLED_CAUSAL=0 always runs the masked forward.
ROLLED_CAUSAL = os.environ.get("TEXTRL_ROLLED_CAUSAL", "1") != "0"


@dataclass
class TeacherForced:
    """One teacher-forced forward, at the columns that predict the response tokens.

    ``K`` columns were kept: ``T`` (the response length) for the masked forward, a few more for the
    rolled causal one, where rows' responses sit in different columns; :meth:`per_token` maps any
    ``(B, K)`` per-column value back onto the response.
    """

    logits: torch.Tensor | None  # (B, K, V) raw logits; None for a body without an LM head
    hidden: torch.Tensor | None  # (B, K, H) last layer's hidden state, when asked for
    targets: torch.Tensor  # (B, K) the token each column predicts (any id where it predicts none)
    index: torch.Tensor | None  # (B, T) the column of K that predicts response token t; None: K = T
    mask: torch.Tensor  # (B, T) float32, 1 on real response tokens
    # Packed (textrl_env.gpt2_plain): logits (N, V) and targets (N,) of the real tokens only, and
    # flat (N,) where each is in the row-major (B, T) response.
    flat: torch.Tensor | None = None

    def per_token(self, values: torch.Tensor) -> torch.Tensor:
        """``(B, K)`` per-column values (``(N,)`` when packed) as ``(B, T)`` per response token, 0 where the mask is 0."""
        if self.flat is not None:
            grid = values.new_zeros(self.mask.numel()).index_copy(0, self.flat, values)
            return grid.view(self.mask.shape) * self.mask
        return (values if self.index is None else values.gather(1, self.index)) * self.mask


def _forward(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    position_ids: torch.Tensor,
    keep: int,
    hidden: bool,
    vocab_size: int | None = None,
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """``(logits, hidden)`` of the last ``keep`` columns (the LM head projects only those, where it can),
    the logits cut to the first ``vocab_size`` ids (a view; see :func:`real_vocab_logits`)."""
    kwargs: dict[str, Any] = {"logits_to_keep": keep} if accepts_logits_to_keep(model) else {}
    if hidden:
        kwargs["output_hidden_states"] = True
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        use_cache=False,
        **kwargs,
    )
    # A causal LM returns logits (and hidden states when asked); a body without a head (a separate
    # critic) returns its last hidden state only.
    logits = out[0] if isinstance(out, tuple) else getattr(out, "logits", None)
    states = None
    if hidden:
        states = out.hidden_states[-1] if logits is not None else out.last_hidden_state
    return (
        None if logits is None else real_vocab_logits(logits[:, -keep:], vocab_size),  # (B, keep, V)
        None if states is None else states[:, -keep:],  # (B, keep, H)
    )


def response_logits(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_start: int,
    vocab_size: int | None = None,
) -> torch.Tensor:
    """Logits that predict each response token, from the plain masked forward.

    Only the columns that predict response tokens are projected onto the vocabulary when the
    model supports ``logits_to_keep`` (all transformers causal LMs do), so the prompt never costs
    a ``(B, P, V)`` logits tensor. :func:`teacher_forced` is the faster exact forward textrl uses.

    Args:
        model: a causal LM whose output has ``.logits`` (or is a tuple with logits first).
        input_ids: ``(B, L)`` left-padded prompt followed by the response.
        attention_mask: ``(B, L)`` 1 on real tokens.
        response_start: the column where the response begins.
        vocab_size: keep the logits of the first ``vocab_size`` ids only (the tokenizer's; a padded
            vocabulary's extra ids are dropped); None keeps them all.

    Returns:
        ``(B, L - response_start, V)`` logits in the model's dtype (not temperature-scaled).
    """
    _check_inputs(input_ids, attention_mask, response_start)
    keep = input_ids.shape[1] - response_start + 1  # columns response_start-1 .. L-1
    logits, _ = _forward(
        model, input_ids, attention_mask, position_ids_from_mask(attention_mask), keep, False, vocab_size
    )
    assert logits is not None, "response_logits needs a causal LM (a model with an LM head)"
    return logits[:, :-1]  # (B, T, V): column j predicts token j + 1, the last predicts nothing


def teacher_forced(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_start: int,
    hidden: bool = False,
    vocab_size: int | None = None,
) -> TeacherForced:
    """The one teacher-forced forward of textrl: env scoring, policies and the actor-critic share it.

    Columns that are padding in every row are dropped first: they change nothing. Then the
    cheapest exact forward runs.

    **Causal** (when it pays). A left-padded prompt followed by a right-padded response needs a
    padding mask, and with a mask the attention kernels compute every (query, key) pair and mask
    half of them afterwards. Rolling each row left by its leading padding puts every real token
    before every pad, so plain causal attention (an all-ones mask; positions ``0, 1, ...`` on the
    real tokens) gives each real token exactly the context and position it had, and the kernels
    skip the pairs above the diagonal (on a GPU, this is what lets SDPA use its flash kernel).
    The price: rows whose prompts differ in length by ``spread`` tokens no longer have their
    responses in the same columns, so the LM head runs on ``spread`` more columns; taken when
    that is at most an eighth of the response.

    **Shared prefix** first, when rows repeat their prompts (RLOO's and GRPO's ``k`` samples):
    each distinct prompt once (:mod:`textrl_env.shared_prefix`); for a plain GPT-2 without
    ``hidden``, also *packed* (:func:`~textrl_env.gpt2_plain.packed_shared_prefix_logits`): the
    layers run on the real response tokens only, and the logits come back as ``(N, V)`` with
    :attr:`TeacherForced.flat`.

    **Masked** otherwise, and when some row's real tokens are not one run (a mask with holes) or
    a row has no real prompt token, where only the masked forward is exact.

    Args:
        model: a causal LM (or, with ``hidden=True``, a body returning ``last_hidden_state``).
        input_ids: ``(B, L)`` left-padded prompt in ``[0, response_start)``, then the response.
        attention_mask: ``(B, L)`` 1 on real tokens.
        response_start: the column where the response begins, >= 1.
        hidden: also return the last layer's hidden states at the kept columns.
        vocab_size: keep the logits of the first ``vocab_size`` ids only (see :func:`real_vocab_logits`).
    """
    _check_inputs(input_ids, attention_mask, response_start)
    mask = attention_mask[:, response_start:].to(torch.float32)  # (B, T)
    shared = shared_prompts(model, input_ids, attention_mask, response_start)
    if shared is not None and accepts_logits_to_keep(model):  # k samples per prompt: each prompt once
        low = min(leading_padding(attention_mask[:, :response_start]), response_start - 1)
        ids, m = input_ids[:, low:], attention_mask[:, low:]
        if not hidden and packs(model, ids, m, response_start - low, shared):  # real tokens only
            packed, flat = packed_shared_prefix_logits(
                model, ids, m, position_ids_from_mask(m), response_start - low, shared
            )
            targets = input_ids[:, response_start:].reshape(-1)[flat]  # (N,)
            return TeacherForced(real_vocab_logits(packed, vocab_size), None, targets, None, mask, flat)
        shared_logits, shared_states = shared_prefix_forward(
            model, ids, m, position_ids_from_mask(m), response_start - low, shared, hidden, vocab_size
        )
        return TeacherForced(shared_logits, shared_states, input_ids[:, response_start:], None, mask)
    length = input_ids.shape[1]
    n_response = length - response_start
    lead = (attention_mask.cumsum(-1) == 0).sum(-1)  # (B,) leading padding of each row
    roll = roll_rows_index(-lead, length)  # (B, L): row b rolled left by lead[b]
    rolled_mask = attention_mask.gather(1, roll)
    one_run = (rolled_mask[:, 1:] <= rolled_mask[:, :-1]).all()
    exact, low, high = torch.stack([one_run.long(), lead.min(), lead.max()]).tolist()  # one host sync
    if not ROLLED_CAUSAL or not exact or high >= response_start or 8 * (high - low) > n_response:
        low = min(low, response_start - 1)  # the response needs one prompt column before it
        ids, m = input_ids[:, low:], attention_mask[:, low:]
        logits, states = _forward(
            model, ids, m, position_ids_from_mask(m), n_response + 1, hidden, vocab_size
        )
        # Column j predicts token j + 1: the last kept column predicts nothing.
        return TeacherForced(
            None if logits is None else logits[:, :-1],  # (B, T, V)
            None if states is None else states[:, :-1],  # (B, T, H)
            input_ids[:, response_start:],
            None,
            mask,
        )
    # Every row now ends in at least `low` pads: drop those columns. Response token t of row b
    # sits at column response_start + t - lead[b]; keep the columns that predict all of them.
    rolled = input_ids.gather(1, roll)[:, : length - low]
    keep = n_response + 1 + high - low
    # Real tokens get 0, 1, ... as before; the trailing pads repeat the last real position
    # instead of running past it, so a row that fits the model's positions still fits.
    positions = position_ids_from_mask(rolled_mask[:, : length - low])
    logits, states = _forward(model, rolled, torch.ones_like(rolled), positions, keep, hidden, vocab_size)
    # Kept column k predicts the token one column later; the last one predicts nothing (any id).
    targets = rolled[:, -keep:].roll(-1, dims=1)  # (B, K)
    index = torch.arange(n_response, device=input_ids.device) + (high - lead).unsqueeze(1)  # (B, T)
    return TeacherForced(logits, states, targets, index, mask)


@overload
def sequence_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_start: int,
    temperature: float = ...,
    return_entropy: Literal[False] = ...,
    vocab_size: int | None = ...,
) -> torch.Tensor: ...


@overload
def sequence_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_start: int,
    temperature: float = ...,
    *,
    return_entropy: Literal[True],
    vocab_size: int | None = ...,
) -> tuple[torch.Tensor, torch.Tensor]: ...


@overload
def sequence_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_start: int,
    temperature: float,
    return_entropy: Literal[True],
    vocab_size: int | None = ...,
) -> tuple[torch.Tensor, torch.Tensor]: ...


@overload
def sequence_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_start: int,
    temperature: float = ...,
    return_entropy: bool = ...,
    vocab_size: int | None = ...,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]: ...


def sequence_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_start: int,
    temperature: float = 1.0,
    return_entropy: bool = False,
    vocab_size: int | None = None,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Log-probs of the response tokens ``input_ids[:, response_start:]`` under ``model``.

    Runs with whatever grad mode the caller is in: wrap in ``torch.no_grad()`` for old/reference
    log-probs, call it bare in the update.

    Args:
        model: a causal LM returning ``.logits``.
        input_ids: ``(B, L)`` left-padded prompt in columns ``[0, response_start)`` followed by the
            response (right-padded after the first EOS).
        attention_mask: ``(B, L)`` 1 on real tokens; response positions with 0 come back as 0.
        response_start: the column where the response begins (the padded prompt length), >= 1.
        temperature: the temperature the tokens were sampled with.
        return_entropy: also return the per-token entropy of the (temperature-scaled) distribution.
        vocab_size: the tokenizer's size: logits of ids past it (a padded vocabulary) are dropped, so
            log-probs and entropies are over the real tokens. None uses every logit.

    Returns:
        ``(B, L - response_start)`` float32 log-probs, 0 where the mask is 0; with
        ``return_entropy=True`` a tuple ``(logprobs, entropy)`` of the same shape.

    Raises:
        ValueError: shapes disagree, ``response_start`` is out of range, ``temperature <= 0``, or the
            model emits fewer than ``vocab_size`` logits.
    """
    out = teacher_forced(model, input_ids, attention_mask, response_start, vocab_size=vocab_size)
    assert out.logits is not None, "sequence_logprobs needs a causal LM (a model with an LM head)"
    logprobs = out.per_token(token_logprobs(out.logits, out.targets, temperature))
    if not return_entropy:
        return logprobs
    return logprobs, out.per_token(token_entropy(out.logits, temperature))
