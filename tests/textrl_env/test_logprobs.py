from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from tests.conftest import build_tiny_lm
from textrl_env.logprobs import (
    drop_common_padding,
    position_ids_from_mask,
    response_logits,
    sequence_logprobs,
    teacher_forced,
    token_entropy,
    token_logprobs,
)


def _naive(
    model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, start: int, temperature: float
) -> torch.Tensor:
    """Full-logits reference: log_softmax(logits / T) at every column, gathered at the next token."""
    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits
    logp = torch.log_softmax(logits.float() / temperature, dim=-1)  # (B, L, V)
    picked = logp[:, :-1].gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)  # (B, L-1)
    return picked[:, start - 1 :] * mask[:, start:]


class NoKeepLM(nn.Module):
    """A causal LM whose forward has no ``logits_to_keep``: exercises the slicing fallback."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, input_ids, attention_mask, position_ids, use_cache=False):  # noqa: ANN001
        return (
            self.inner(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits,
        )


def _batch() -> tuple[torch.Tensor, torch.Tensor, int]:
    # prompt columns [0, 4) left-padded, response columns [4, 8) right-padded after EOS (id 1)
    ids = torch.tensor(
        [
            [0, 0, 5, 6, 7, 8, 1, 0],
            [9, 10, 11, 12, 13, 14, 15, 16],
        ]
    )
    mask = torch.tensor(
        [
            [0, 0, 1, 1, 1, 1, 1, 0],
            [1, 1, 1, 1, 1, 1, 1, 1],
        ]
    )
    return ids, mask, 4


def test_position_ids_ignore_left_padding() -> None:
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [1, 1, 1, 1, 1, 1]])
    assert position_ids_from_mask(mask).tolist() == [[0, 0, 0, 1, 2, 2], [0, 1, 2, 3, 4, 5]]


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_matches_full_log_softmax(tiny_lm: nn.Module, temperature: float) -> None:
    ids, mask, start = _batch()
    got = sequence_logprobs(tiny_lm, ids, mask, start, temperature=temperature)
    assert got.shape == (2, 4)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, _naive(tiny_lm, ids, mask, start, temperature))


def test_temperature_divides_logits_before_softmax(tiny_lm: nn.Module) -> None:
    ids, mask, start = _batch()
    hot = sequence_logprobs(tiny_lm, ids, mask, start, temperature=2.0)
    cold = sequence_logprobs(tiny_lm, ids, mask, start, temperature=1.0)
    assert not torch.allclose(hot, cold)
    # direct check on the logits: log_softmax(z / T)
    logits = response_logits(tiny_lm, ids, mask, start)
    expected = torch.log_softmax(logits.float() / 2.0, -1).gather(-1, ids[:, start:, None]).squeeze(-1)
    torch.testing.assert_close(hot, expected * mask[:, start:])


def test_left_padding_does_not_change_logprobs(tiny_lm: nn.Module) -> None:
    ids, mask, start = _batch()
    padded = sequence_logprobs(tiny_lm, ids, mask, start)
    # row 0 without its two pad columns: the same tokens at the same positions
    alone = sequence_logprobs(tiny_lm, ids[:1, 2:], mask[:1, 2:], start - 2)
    torch.testing.assert_close(padded[:1], alone, rtol=1e-5, atol=1e-5)


def test_masked_positions_are_zero(tiny_lm: nn.Module) -> None:
    ids, mask, start = _batch()
    logprobs, entropy = sequence_logprobs(tiny_lm, ids, mask, start, return_entropy=True)
    assert logprobs[0, 3].item() == 0.0 and entropy[0, 3].item() == 0.0
    assert (logprobs[0, :3] < 0).all() and (entropy[0, :3] > 0).all()


def test_entropy_matches_categorical(tiny_lm: nn.Module) -> None:
    ids, mask, start = _batch()
    _, entropy = sequence_logprobs(tiny_lm, ids, mask, start, temperature=0.5, return_entropy=True)
    logits = response_logits(tiny_lm, ids, mask, start).float() / 0.5
    expected = torch.distributions.Categorical(logits=logits).entropy() * mask[:, start:]
    torch.testing.assert_close(entropy, expected)


def test_fallback_without_logits_to_keep_agrees(tiny_lm: nn.Module) -> None:
    ids, mask, start = _batch()
    torch.testing.assert_close(
        sequence_logprobs(NoKeepLM(tiny_lm), ids, mask, start), sequence_logprobs(tiny_lm, ids, mask, start)
    )


def test_gradients_flow(tiny_lm: nn.Module) -> None:
    ids, mask, start = _batch()
    sequence_logprobs(tiny_lm, ids, mask, start).sum().backward()
    assert tiny_lm.transformer.wte.weight.grad is not None
    assert tiny_lm.transformer.wte.weight.grad.abs().sum() > 0


def test_token_helpers_on_known_logits() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    assert token_logprobs(logits, torch.tensor([0])).item() == pytest.approx(
        torch.log(torch.tensor(0.5)).item()
    )
    assert token_entropy(logits).item() == pytest.approx(1.5 * torch.log(torch.tensor(2.0)).item())


def test_empty_response_gives_empty_tensor(tiny_lm: nn.Module) -> None:
    ids, mask, _ = _batch()
    assert sequence_logprobs(tiny_lm, ids, mask, ids.shape[1]).shape == (2, 0)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"response_start": 0}, "response_start must be in"),
        ({"response_start": 9}, "response_start must be in"),
        ({"temperature": 0.0}, "temperature must be > 0"),
    ],
)
def test_bad_arguments(tiny_lm: nn.Module, kwargs: dict, match: str) -> None:
    ids, mask, start = _batch()
    args = {"response_start": start, **kwargs}
    with pytest.raises(ValueError, match=match):
        sequence_logprobs(tiny_lm, ids, mask, **args)


def test_bad_shapes(tiny_lm: nn.Module) -> None:
    ids, mask, start = _batch()
    with pytest.raises(ValueError, match="unsqueeze"):
        sequence_logprobs(tiny_lm, ids[0], mask[0], start)
    with pytest.raises(ValueError, match="attention_mask shape"):
        sequence_logprobs(tiny_lm, ids, mask[:, :-1], start)


@pytest.mark.parametrize(("temperature", "chunk_rows"), [(1.0, 4), (0.7, 4), (1.0, 13), (0.7, 1000)])
def test_no_grad_path_matches_the_differentiable_one(
    temperature: float, chunk_rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Scoring without grad takes a chunked log-softmax; it must give the training path's numbers."""
    import textrl_env.token_math as token_math

    generator = torch.Generator().manual_seed(0)
    full = torch.randn(3, 9, 11, generator=generator)
    logits = full[:, 2:-1]  # (3, 6, 11), a non-contiguous slice as response_logits returns
    tokens = torch.randint(0, 11, (3, 6), generator=generator)
    expected = token_logprobs(logits.clone().requires_grad_(), tokens, temperature).detach()
    # Pieces of a row (4), two rows of the batch per chunk (13), everything at once (1000).
    monkeypatch.setattr(token_math, "_chunk_rows", lambda _logits: chunk_rows)
    with torch.no_grad():
        torch.testing.assert_close(token_logprobs(logits, tokens, temperature), expected)
        torch.testing.assert_close(token_logprobs(logits[0, 0], tokens[0, 0], temperature), expected[0, 0])
        torch.testing.assert_close(token_logprobs(logits[:, 0], tokens[:, 0], temperature), expected[:, 0])


def test_token_logprobs_wants_one_token_per_distribution() -> None:
    with pytest.raises(ValueError, match=r"one token id per distribution, shape \(2, 3\)"):
        token_logprobs(torch.zeros(2, 3, 5), torch.zeros(2, 1, dtype=torch.long))


_LM = build_tiny_lm(vocab_size=64)  # one model for every example (Hypothesis reruns the test body)


@st.composite
def padded_batches(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Left-padded prompts of 1..P real tokens, then responses of 0..T real tokens, right-padded;
    half of the batches have prompts that differ by at most T / 8 tokens (the causal path), and
    some hold every prompt k times, as RLOO's and GRPO's batches do (the shared-prefix path)."""
    batch, prompt, response = draw(st.integers(1, 4)), draw(st.integers(1, 6)), draw(st.integers(1, 24))
    longest = prompt - draw(st.integers(0, prompt - 1) | st.just(0))  # columns before: padding in every row
    shortest = max(1, longest - response // 8) if draw(st.booleans()) else 1
    ids = torch.tensor(draw(st.lists(st.integers(0, 63), min_size=batch * (prompt + response),
                                     max_size=batch * (prompt + response)))).view(batch, -1)  # fmt: skip
    mask = torch.zeros_like(ids)
    for row in range(batch):
        real_prompt, real_response = draw(st.integers(shortest, longest)), draw(st.integers(0, response))
        mask[row, prompt - real_prompt : prompt + real_response] = 1
    k = draw(st.integers(1, 3))
    if k > 1:  # each prompt k times, each copy with its own response and response length
        copies = torch.tensor(draw(st.lists(st.integers(0, 63), min_size=batch * k * response,
                                            max_size=batch * k * response))).view(batch * k, -1)  # fmt: skip
        lengths = torch.tensor(
            draw(st.lists(st.integers(0, response), min_size=batch * k, max_size=batch * k))
        )
        ids = torch.cat([ids[:, :prompt].repeat_interleave(k, 0), copies], dim=1)
        response_mask = (torch.arange(response).unsqueeze(0) < lengths.unsqueeze(1)).long()
        mask = torch.cat([mask[:, :prompt].repeat_interleave(k, 0), response_mask], dim=1)
    return ids, mask, prompt


def _shares_prompts(ids: torch.Tensor, mask: torch.Tensor, start: int) -> bool:
    """Whether the batch has at most half as many distinct prompts as rows (the shared-prefix path)."""
    distinct = torch.unique(torch.cat([ids[:, :start], mask[:, :start]], 1), dim=0).shape[0]
    return ids.shape[0] >= 2 and 2 * distinct <= ids.shape[0]


@settings(max_examples=60, deadline=None)
@given(padded_batches(), st.sampled_from([1.0, 0.7]))
def test_both_forwards_match_the_full_masked_one(
    batch: tuple[torch.Tensor, torch.Tensor, int], temperature: float
) -> None:
    """Log-probs and entropies equal those of the full masked forward, with and without grad,
    whichever forward runs: shared-prefix (each distinct prompt once) when prompts repeat, causal
    (rows rolled to the front) when the prompts differ by at most an eighth of the response,
    masked (without all-padding columns) otherwise."""
    ids, mask, start = batch
    prompt_lengths = mask[:, :start].sum(-1)
    narrow = 8 * int(prompt_lengths.max() - prompt_lengths.min()) <= ids.shape[1] - start
    shared = _shares_prompts(ids, mask, start)
    assert (teacher_forced(_LM, ids, mask, start).index is not None) == (narrow and not shared)
    expected = _naive(_LM, ids, mask, start, temperature)
    logprobs, entropy = sequence_logprobs(_LM, ids, mask, start, temperature, return_entropy=True)
    torch.testing.assert_close(logprobs, expected, rtol=1e-5, atol=1e-5)
    full = _LM(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits
    expected_entropy = token_entropy(full[:, start - 1 : -1], temperature) * mask[:, start:]
    torch.testing.assert_close(entropy, expected_entropy, rtol=1e-5, atol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(
            sequence_logprobs(_LM, ids, mask, start, temperature), expected, rtol=1e-5, atol=1e-5
        )


def test_masks_the_causal_forward_cannot_take_use_the_masked_one(tiny_lm: nn.Module) -> None:
    start = 4
    ids = torch.arange(2, 26).view(2, 12)
    mask = torch.tensor([[0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0], [1] * 12])  # prompts of 3 and 4 tokens
    assert teacher_forced(tiny_lm, ids, mask, start).index is not None  # 8 response columns >= 8 x 1
    holed = mask.clone()
    holed[1, 6] = 0  # a hole inside row 1's response
    empty_prompt = mask.clone()
    empty_prompt[0, :start] = 0  # row 0 has no real prompt token
    wide_ids, wide, wide_start = _batch()  # prompts of 2 and 4 tokens: a spread of 2 > 4 / 8
    # and with two more columns of padding in front of every row, which the masked forward drops
    padded_ids, padded = torch.nn.functional.pad(wide_ids, (2, 0)), torch.nn.functional.pad(wide, (2, 0))
    for ids_, bad, start_ in (
        (ids, holed, start), (ids, empty_prompt, start), (wide_ids, wide, wide_start), (padded_ids, padded, 6)
    ):  # fmt: skip
        assert teacher_forced(tiny_lm, ids_, bad, start_).index is None
        torch.testing.assert_close(
            sequence_logprobs(tiny_lm, ids_, bad, start_), _naive(tiny_lm, ids_, bad, start_, 1.0)
        )


def test_drop_common_padding_keeps_one_prompt_column() -> None:
    ids = torch.arange(12).view(2, 6)
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 1]])  # prompt columns [0, 4)
    kept_ids, kept_mask, start = drop_common_padding(ids, mask, 4)
    assert start == 2 and torch.equal(kept_ids, ids[:, 2:]) and torch.equal(kept_mask, mask[:, 2:])
    empty = torch.tensor([[0, 0, 0, 0, 1, 1]] * 2)  # no row has a prompt token: keep the last column
    assert drop_common_padding(ids, empty, 4)[2] == 1


def test_causal_forward_keeps_rows_within_the_models_positions() -> None:
    """Rows of 16 tokens in 18 columns, on a model with 16 positions: every row fits, so the
    causal forward must not number the trailing pads past the last real token."""
    lm = build_tiny_lm(vocab_size=64, n_positions=16)
    ids = torch.arange(36).view(2, 18) % 60 + 2
    mask = torch.tensor([[0, 0] + [1] * 16, [0] + [1] * 16 + [0]])  # prompt window 6, 12 response columns
    assert teacher_forced(lm, ids, mask, 6).index is not None
    torch.testing.assert_close(sequence_logprobs(lm, ids, mask, 6), _naive(lm, ids, mask, 6, 1.0))


def test_shared_prefix_forward_gives_the_full_passes_gradients_and_is_taken_only_when_exact(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two prompts x 4 samples: log-probs, entropies, hidden states and every parameter's gradient
    equal those of the full pass; with dropout active the full pass runs instead."""
    from textrl_env import shared_prefix

    torch.manual_seed(0)
    lm = build_tiny_lm(vocab_size=64)
    prompts = torch.tensor([[0, 0, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16]])
    prompt_mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    ids = torch.cat([prompts.repeat_interleave(4, 0), torch.randint(2, 64, (8, 5))], 1)
    mask = torch.cat([prompt_mask.repeat_interleave(4, 0), torch.ones(8, 5, dtype=torch.long)], 1)
    mask[0, -2:] = 0  # responses of different lengths
    mask[5, -1] = 0
    seen = []
    monkeypatch.setattr(shared_prefix, "_dropout_active", lambda m: seen.append(m) or False)  # no dropout

    def run(share: bool) -> tuple[torch.Tensor, ...]:
        monkeypatch.setattr(shared_prefix, "SHARED_PREFIX", share)
        lm.zero_grad()
        out = teacher_forced(lm, ids, mask, 6, hidden=True)
        logprobs, entropy = sequence_logprobs(lm, ids, mask, 6, 0.7, return_entropy=True)
        (logprobs.sum() + entropy.sum() + out.per_token(out.hidden.sum(-1)).sum()).backward()
        grads = torch.cat([p.grad.flatten() for p in lm.parameters()])
        return out.per_token(out.hidden.sum(-1)).detach(), logprobs.detach(), entropy.detach(), grads

    shared, full = run(True), run(False)
    assert seen, "the shared-prefix path was not considered"
    for got, want in zip(shared, full, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert full[3].abs().max() > 1.0  # the gradients compared are not trivially small

    monkeypatch.setattr(shared_prefix, "SHARED_PREFIX", True)
    monkeypatch.undo()  # the real dropout check: a model in training mode with dropout keeps the full pass
    dropping = build_tiny_lm(vocab_size=64)
    dropping.train()
    assert any(isinstance(m, nn.Dropout) and m.p > 0 for m in dropping.modules())
    assert shared_prefix.shared_prompts(dropping, ids, mask, 6) is None
    dropping.eval()
    assert shared_prefix.shared_prompts(dropping, ids, mask, 6) is not None


def test_shared_prefix_is_skipped_where_it_does_not_fit() -> None:
    """Gradient checkpointing in training (no cache comes back), attention dropout in training,
    and a batch with no response column keep the full pass; the log-probs are still computed."""
    from textrl_env.shared_prefix import shared_prompts

    lm = build_tiny_lm(vocab_size=64)
    ids = torch.cat([torch.tensor([[5, 6, 7]]).repeat(4, 1), torch.randint(2, 64, (4, 3))], 1)
    mask = torch.ones_like(ids)
    assert shared_prompts(lm, ids, mask, 3) is not None
    assert shared_prompts(lm, ids, mask, ids.shape[1]) is None  # no response column
    lm.activation_checkpointing_enable()
    lm.train()
    for module in lm.modules():  # dropout off, so only the checkpointing decides
        if isinstance(module, nn.Dropout):
            module.p = 0.0
    assert shared_prompts(lm, ids, mask, 3) is None
    assert sequence_logprobs(lm, ids, mask, 3).shape == (4, 3)  # no KeyError from a missing cache
    with torch.no_grad():
        assert shared_prompts(lm, ids, mask, 3) is not None  # no gradients: checkpointing is idle
    lm.activation_checkpointing_disable()
    lm.config.attention_dropout = 0.1
    assert shared_prompts(lm, ids, mask, 3) is None
    lm.eval()
    assert shared_prompts(lm, ids, mask, 3) is not None
