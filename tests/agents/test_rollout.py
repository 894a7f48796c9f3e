from __future__ import annotations

import torch

from agents.rollout import mask_after_eos

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
