"""The compute floor of the scaling ratio: what ``time(long) / time(short)`` would be if time were work.

A rollout of ``T`` tokens after a ``W``-column prompt must, per row, run every position once
through the policy (prefill, then one decode step per token, each attending over the keys cached
so far) and once more through the reference model (the teacher-forced scoring pass), and project
each response position onto the vocabulary in both. Counting multiply-adds of a GPT-2 block:

- body: ``12 C^2`` per position per layer (``3C^2`` qkv, ``C^2`` out, ``8C^2`` MLP);
- attention: ``2 C`` per (query, key) pair per layer (scores and the weighted sum), causal pairs only;
- LM head: ``C V`` per response position.

If every multiply-add cost the same and a step had no fixed overhead, the ratio of two lengths
would be the ratio of these counts. Measured ratios above it mean the attention work (which reads
the whole KV cache once per step) runs slower per multiply-add than the matmuls; below it, a fixed
per-step cost (Python, kernel launches) that does not grow with the length. The count ignores
layer norms, GELU and the softmaxes, which are linear in the positions like the body.
"""

from __future__ import annotations

from typing import Any


def rollout_macs(model: dict[str, Any], window: int, length: int) -> int:
    """Multiply-adds per row of one rollout and its scoring pass (see the module docstring).

    Args:
        model: ``n_layer``, ``n_embd`` and ``vocab_size`` of a GPT-2 (``scaling.build_model``'s record).
        window: prompt columns the env keeps (its prompt window minus all-padding columns).
        length: response tokens.
    """
    layers, width, vocab = int(model["n_layer"]), int(model["n_embd"]), int(model["vocab_size"])
    positions = window + length
    body = layers * 12 * width * width * positions
    attention = layers * 2 * width * positions * (positions + 1) // 2
    head = width * vocab * length
    return 2 * (body + attention + head)  # the policy's rollout, then the reference's scoring pass


def floor_ratio(model: dict[str, Any], window: int, long: int, short: int) -> float:
    """``rollout_macs`` at ``long`` over ``short``: the scaling ratio with time proportional to work."""
    return rollout_macs(model, window, long) / rollout_macs(model, window, short)


def training_step_macs(model: dict[str, Any], prompt: float, response: float, rows: int) -> dict[str, float]:
    """Multiply-adds of one RL training step over ``rows`` completions, by phase.

    Each row is its full prompt of ``prompt`` tokens and ``response`` tokens (means over the
    batch), computed as if no row shared anything with another (so an implementation that runs a
    repeated prompt once can go below this floor on the prompt part):

    - generation: every position once through the policy (prefill, then one decode step per token),
      the LM head on each generated token;
    - reference: the teacher-forced pass of the reference model, the LM head on response positions;
    - update: the policy's teacher-forced pass with gradients, forward plus backward (about twice
      the forward: gradients of the inputs and of the weights), so three forwards.
    """
    layers, width, vocab = int(model["n_layer"]), int(model["n_embd"]), int(model["vocab_size"])
    positions = prompt + response
    body = layers * 12 * width * width * positions
    attention = layers * 2 * width * positions * (positions + 1) / 2
    forward = body + attention + width * vocab * response
    return {"generation": rows * forward, "reference": rows * forward, "update": rows * 3 * forward}


def matmul_rate(threads: int, size: int = 1024, repeats: int = 5) -> float:
    """This machine's fp32 multiply-adds per second on a ``size``-square matmul (best of ``repeats``),
    on ``threads`` torch threads: what time proportional to work would run at."""
    import time

    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(size, size), torch.randn(size, size)
        torch.mm(a, b)  # warm-up
        best = float("inf")
        for _ in range(repeats):
            start = time.perf_counter()
            torch.mm(a, b)
            best = min(best, time.perf_counter() - start)
    finally:
        torch.set_num_threads(previous)
    return size**3 / best
