from __future__ import annotations

import pytest
import torch
from torch import nn

from agents.rollout import RolloutBatch, RolloutBuffer, mask_after_eos, minibatches
from textrl_env.logprobs import sequence_logprobs

EOS = 1


def test_mask_after_eos_known_answer() -> None:
    ids = torch.tensor(
        [
            [5, 6, 1, 0, 0],  # EOS at 2: keep it, mask the padding after
            [1, 7, 8, 1, 9],  # EOS first: only the EOS itself counts
            [5, 6, 7, 8, 9],  # truncated, no EOS: all real
            [5, 1, 1, 1, 1],  # repeated EOS: only the first is kept
        ]
    )
    expected = [[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [1, 1, 1, 1, 1], [1, 1, 0, 0, 0]]
    assert mask_after_eos(ids, EOS).tolist() == expected
    assert mask_after_eos(ids, EOS).dtype == torch.long


def test_mask_after_eos_with_several_stop_ids() -> None:
    ids = torch.tensor([[5, 9, 6, 1], [5, 6, 7, 8]])
    assert mask_after_eos(ids, [1, 9]).tolist() == [[1, 1, 0, 0], [1, 1, 1, 1]]


def test_minibatches_cover_every_row_once_and_are_seeded() -> None:
    first = list(minibatches(12, 4, torch.Generator().manual_seed(0)))
    again = list(minibatches(12, 4, torch.Generator().manual_seed(0)))
    assert len(first) == 3 and all(idx.shape == (4,) for idx in first)
    assert sorted(torch.cat(first).tolist()) == list(range(12))
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    assert torch.cat(first).tolist() != list(range(12))  # actually shuffled


def test_minibatches_reject_indivisible_batch_naming_both_numbers() -> None:
    with pytest.raises(
        ValueError, match=r"batch of 10 episodes is not divisible into minibatches of 4.*e\.g\. 2, 5"
    ):
        list(minibatches(10, 4))
    with pytest.raises(ValueError, match="must be >= 1"):
        list(minibatches(10, 0))


def _fill(buffer: RolloutBuffer) -> None:
    prompt = torch.tensor([[0, 3, 4], [5, 6, 7]])
    pmask = (prompt != 0).long()
    response = torch.tensor([[8, 1], [9, 10]])  # two columns of T=3: shorter responses are allowed
    buffer.add(
        prompt, pmask, response, mask_after_eos(response, EOS), torch.full((2, 2), -1.0), torch.full((2, 2), -2.0),
        torch.tensor([0.5, 1.5]),
    )  # fmt: skip


def test_buffer_add_get_and_layout() -> None:
    buffer = RolloutBuffer(capacity=4, prompt_length=3, max_new_tokens=3, pad_token_id=0)
    _fill(buffer)
    assert not buffer.full and buffer.pos == 2
    _fill(buffer)
    assert buffer.full
    batch = buffer.get()
    assert isinstance(batch, RolloutBatch)
    assert batch.input_ids.shape == (4, 6) and batch.response_start == 3
    assert batch.input_ids[0].tolist() == [0, 3, 4, 8, 1, 0]
    assert batch.attention_mask[0].tolist() == [0, 1, 1, 1, 1, 0]
    assert batch.logprobs[1].tolist() == [-1.0, -1.0, 0.0]
    assert batch.scores.tolist() == [0.5, 1.5, 0.5, 1.5]
    with pytest.raises(ValueError, match="call reset\\(\\)"):
        _fill(buffer)


def test_buffer_rows_are_cleared_when_reused() -> None:
    buffer = RolloutBuffer(capacity=2, prompt_length=3, max_new_tokens=3)
    long = torch.tensor([[7, 8, 9], [7, 8, 9]])
    ones = torch.ones(2, 3)
    buffer.add(
        torch.ones(2, 3).long(),
        torch.ones(2, 3).long(),
        long,
        torch.ones(2, 3).long(),
        ones,
        ones,
        ones[:, 0],
    )
    buffer.reset()
    _fill(buffer)
    batch = buffer.get()
    assert batch.response_ids[0].tolist() == [8, 1, 0]
    assert batch.response_mask[0].tolist() == [1, 1, 0]
    assert batch.ref_logprobs[0, 2].item() == 0.0


def test_buffer_minibatches_and_errors() -> None:
    buffer = RolloutBuffer(capacity=4, prompt_length=3, max_new_tokens=3)
    _fill(buffer)
    _fill(buffer)
    seen = [mb.scores for mb in buffer.minibatches(2, torch.Generator().manual_seed(1))]
    assert sorted(torch.cat(seen).tolist()) == [0.5, 0.5, 1.5, 1.5]
    with pytest.raises(ValueError, match="not divisible into minibatches of 3"):
        list(buffer.minibatches(3))
    with pytest.raises(ValueError, match="prompt block has 2 columns"):
        buffer.reset()
        buffer.add(*(torch.zeros(1, 2).long(),) * 2, *(torch.zeros(1, 2),) * 4, torch.zeros(1))


def test_stored_batch_feeds_sequence_logprobs(tiny_lm: nn.Module) -> None:
    buffer = RolloutBuffer(capacity=2, prompt_length=3, max_new_tokens=3)
    _fill(buffer)
    batch = buffer.get()
    logprobs = sequence_logprobs(tiny_lm, batch.input_ids, batch.attention_mask, batch.response_start)
    assert logprobs.shape == (2, 3)
    assert logprobs[0, 2].item() == 0.0 and (logprobs[0, :2] < 0).all()  # after EOS is masked
