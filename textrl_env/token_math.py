"""Per-token log-probabilities and entropies from logits, at a sampling temperature.

Logits are divided by the temperature *before* the log-softmax, so the numbers are those of the
distribution the tokens were sampled from. Only torch is imported here.
"""

from __future__ import annotations

import torch


def token_logprobs(logits: torch.Tensor, tokens: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``log_softmax(logits / temperature)`` gathered at ``tokens``.

    With grad (an update), computed as ``logit[token] - logsumexp(logits)``, which saves no second
    ``(B, T, V)`` tensor for the backward. Without (scoring, the env's steps), a fused
    ``log_softmax`` a chunk of rows at a time, about twice as fast. The two agree to float
    rounding (a few 1e-6), so a PPO ratio of old (no-grad) and new (grad) log-probs starts at
    1 to within that, not exactly.

    Args:
        logits: ``(..., V)`` raw logits.
        tokens: ``(...)`` token ids, the shape of ``logits`` without its last dimension.
        temperature: the sampling temperature, > 0.

    Returns:
        ``(...)`` float32 log-probabilities.
    """
    if tuple(tokens.shape) != tuple(logits.shape[:-1]):
        raise ValueError(
            f"tokens have shape {tuple(tokens.shape)} but logits {tuple(logits.shape)}; pass one token id "
            f"per distribution, shape {tuple(logits.shape[:-1])}"
        )
    if not (torch.is_grad_enabled() and logits.requires_grad):
        return _token_logprobs_no_grad(logits, tokens, temperature)
    logits = _scaled(logits, temperature)  # (..., V) float32
    picked = logits.gather(-1, tokens.long().unsqueeze(-1)).squeeze(-1)  # (...)
    return picked - torch.logsumexp(logits, dim=-1)


def real_vocab_logits(logits: torch.Tensor, vocab_size: int | None) -> torch.Tensor:
    """The logits of the first ``vocab_size`` token ids: ``logits[..., :vocab_size]``, a view.

    A model whose embeddings are padded (to a multiple of 64 or 128, as Qwen's and many Llama
    checkpoints are) emits logits for ids past the tokenizer's last token. Those ids are at the
    end, so dropping their columns gives exactly what masking them to -inf would: they are never
    sampled, every softmax is normalised over the real tokens, and the ids that remain index the
    same tokens. A view costs no copy; ``None`` or logits of exactly ``vocab_size`` come back as they are.

    Args:
        logits: ``(..., V)`` with ``V >= vocab_size``.
        vocab_size: the tokenizer's size, or None to keep every column.

    Raises:
        ValueError: the logits have fewer columns than ``vocab_size`` (a model that cannot emit some token).
    """
    if vocab_size is None or logits.shape[-1] == vocab_size:
        return logits
    if logits.shape[-1] < vocab_size:
        raise ValueError(
            f"the logits have {logits.shape[-1]} columns but the vocabulary has {vocab_size} tokens, so ids "
            f">= {logits.shape[-1]} have no logit; use the model the tokenizer belongs to, or call "
            f"model.resize_token_embeddings({vocab_size})"
        )
    return logits[..., :vocab_size]  # (..., vocab_size) view


def _chunk_rows(logits: torch.Tensor) -> int:
    """Rows of ``V`` logits per chunk: about 1 MB on CPU (stays in cache), 256 MB on accelerators,
    and never fewer than 64 rows, so a large vocabulary does not mean thousands of tiny chunks."""
    elements = 2**18 if logits.device.type == "cpu" else 2**26
    return max(64, elements // logits.shape[-1])


def _token_logprobs_no_grad(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    """:func:`token_logprobs` when no backward follows, a chunk of rows at a time.

    With nothing to save for a backward, the fused ``log_softmax`` (one pass over the logits)
    beats ``logsumexp``'s max / subtract / exp / sum passes by about 2x. Working a chunk at a time
    never allocates a float32 copy of the whole ``(B, T, V)`` logits: on CPU a tensor that large is
    fresh pages from the OS on every call, and on a GPU it is the peak memory of scoring.
    """
    if logits.numel() <= _chunk_rows(logits) * logits.shape[-1]:  # one chunk: no loop to set up
        return _picked_log_softmax(logits, tokens, temperature)
    shape = tokens.shape
    # As (B, T, V) without copying: a sliced (B, T, V) logits tensor (response_logits drops one
    # column per row) has leading dims that do not flatten into one, so chunks are whole rows of
    # B when T rows fit in a chunk, else pieces of one row.
    while logits.dim() < 3:
        logits = logits.unsqueeze(0)
    logits = logits.reshape(-1, *logits.shape[-2:])  # a view, unless there are more than 3 dims
    tokens = tokens.reshape(logits.shape[:2])
    out = torch.empty(logits.shape[:2], dtype=torch.float32, device=logits.device)  # (B, T)
    batch, length = out.shape
    rows = _chunk_rows(logits)
    per_chunk = max(1, rows // length)  # rows of B per chunk
    for b in range(0, batch, per_chunk):
        step = rows if per_chunk == 1 else length  # columns of T per chunk
        for t in range(0, length, step):
            part = (slice(b, b + per_chunk), slice(t, t + step))
            out[part] = _picked_log_softmax(logits[part], tokens[part], temperature)
    return out.view(shape)


def _picked_log_softmax(logits: torch.Tensor, tokens: torch.Tensor, temperature: float) -> torch.Tensor:
    """``log_softmax(logits / temperature)`` at ``tokens``, float32 ``(...)``, in one fused pass."""
    index = tokens.long().unsqueeze(-1)  # (..., 1)
    return torch.log_softmax(_scaled(logits, temperature), dim=-1).gather(-1, index).squeeze(-1)


def token_entropy(logits: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """Entropy of ``softmax(logits / temperature)`` along the last dimension, float32 ``(...)``."""
    logits = _scaled(logits, temperature)  # (..., V)
    lse = torch.logsumexp(logits, dim=-1)  # (...)
    probs = torch.softmax(logits, dim=-1)  # (..., V)
    # H = -sum p log p = logsumexp(z) - sum p z
    return lse - (probs * logits).sum(-1)


def _scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    if not temperature > 0:
        raise ValueError(
            f"temperature must be > 0, got {temperature}; for greedy decoding use deterministic=True "
            "and keep the temperature the env samples with"
        )
    logits = logits.float()
    return logits / temperature if temperature != 1.0 else logits
