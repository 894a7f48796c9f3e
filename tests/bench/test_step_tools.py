"""The per-phase clock and the training-step compute floor behind benchmarks/profile_step.py."""

from __future__ import annotations

import time

import pytest
import torch

from benchmarks import compute_floor
from benchmarks.phase_clock import PHASES, PhaseClock


class Work:
    def outer(self) -> None:
        time.sleep(0.02)
        self.inner()

    def inner(self) -> None:
        time.sleep(0.03)


def test_phase_clock_charges_exclusive_time_and_relabels_by_caller() -> None:
    clock = PhaseClock()
    clock.wrap(Work, "outer", "scoring other")
    clock.wrap(Work, "inner", "update forward", within={"scoring other": "reference"})
    Work().outer()  # inner inside outer: the reference pass
    Work().inner()  # inner alone: the update's forward
    clock.restore()
    assert Work.outer.__qualname__ == "Work.outer" and not hasattr(Work.outer, "__wrapped__")
    assert clock.seconds["scoring other"] == pytest.approx(0.02, abs=0.015)  # without inner's 0.03
    assert clock.seconds["reference"] == pytest.approx(0.03, abs=0.015)
    assert clock.seconds["update forward"] == pytest.approx(0.03, abs=0.015)
    report = clock.report([0.1])
    assert set(report) == set(PHASES)
    assert report["other"] == pytest.approx(0.1 - sum(v for k, v in report.items() if k != "other"))


def test_phase_clock_times_backward_and_optimizer_through_torch() -> None:
    clock = PhaseClock()
    clock.wrap_common()
    try:
        w = torch.nn.Parameter(torch.ones(3))
        optimizer = torch.optim.Adam([w])
        (w * 2).sum().backward()
        optimizer.step()
    finally:
        clock.restore()
    assert clock.seconds["backward"] > 0 and clock.seconds["optimizer"] > 0
    assert torch.Tensor.backward.__name__ == "backward" and not hasattr(torch.Tensor.backward, "__wrapped__")


def test_training_step_macs_known_answer() -> None:
    # 1 layer, width 2, vocab 3; 1 prompt token + 2 response tokens, 4 rows
    macs = compute_floor.training_step_macs({"n_layer": 1, "n_embd": 2, "vocab_size": 3}, 1, 2, 4)
    body, attention, head = 12 * 2 * 2 * 3, 2 * 2 * 3 * 4 / 2, 2 * 3 * 2  # 144, 12, 12
    forward = body + attention + head
    assert macs == {"generation": 4 * forward, "reference": 4 * forward, "update": 4 * 3 * forward}
    assert compute_floor.matmul_rate(threads=1, size=64, repeats=2) > 0
