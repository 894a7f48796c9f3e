"""Where a training step's time goes, on either side: exclusive wall time per phase.

Both sides' phase functions are wrapped (methods patched on their classes for the run), each
call's time is charged to its phase minus the time of the wrapped calls inside it (exclusive
time), and a function can be charged to a different phase depending on the phase it is called
from: TRL's ``_get_per_token_logps_and_entropies`` is the reference pass inside
``_generate_and_score_completions`` and the update's forward inside ``compute_loss``. Phases:

- ``rollout``: generating the completions (prefill, decode steps, sampling);
- ``reward``: the reward function;
- ``reference``: the reference model's teacher-forced pass;
- ``scoring other``: the rest of scoring a batch (text decoding, KL, advantages, bookkeeping);
- ``update forward``: the policy's teacher-forced pass with gradients, and the loss;
- ``backward`` and ``optimizer``;
- ``other``: the rest of the step (the trainer's or the agent's own loop, logging, callbacks).

A patched function costs a few microseconds per call: negligible beside these phases.
"""

from __future__ import annotations

import functools
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import torch

PHASES = (
    "rollout",
    "reward",
    "reference",
    "scoring other",
    "update forward",
    "backward",
    "optimizer",
    "other",
)


class PhaseClock:
    """Exclusive time per phase over the wrapped calls (see the module docstring)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self._stack: list[list[Any]] = []  # [phase, start, time of wrapped calls inside]
        self._undo: list[Callable[[], None]] = []

    def wrap(self, owner: Any, name: str, phase: str, within: dict[str, str] | None = None) -> None:
        """Charge ``owner.name`` to ``phase`` (or to ``within[enclosing phase]`` when called inside one)."""
        original = getattr(owner, name)

        @functools.wraps(original)
        def timed(*args: Any, **kwargs: Any) -> Any:
            enclosing = self._stack[-1][0] if self._stack else None
            label = (within or {}).get(enclosing or "", phase)
            self._stack.append([label, time.perf_counter(), 0.0])
            try:
                return original(*args, **kwargs)
            finally:
                label, start, inner = self._stack.pop()
                spent = time.perf_counter() - start
                self.seconds[label] += spent - inner
                if self._stack:
                    self._stack[-1][2] += spent

        setattr(owner, name, timed)
        self._undo.append(lambda: setattr(owner, name, original))

    def wrap_common(self) -> None:
        """The phases both sides reach through torch itself: backward and the optimizer step."""
        self.wrap(torch.Tensor, "backward", "backward")
        for optimizer in (torch.optim.Adam, torch.optim.AdamW):
            self.wrap(optimizer, "step", "optimizer")

    def restore(self) -> None:
        """Put every patched function back."""
        while self._undo:
            self._undo.pop()()

    def report(self, step_times_s: list[float]) -> dict[str, float]:
        """Mean seconds per step of each phase; ``other`` is the steps' remainder."""
        steps = len(step_times_s)
        out = {phase: self.seconds.get(phase, 0.0) / steps for phase in PHASES if phase != "other"}
        out["other"] = sum(step_times_s) / steps - sum(out.values())
        return out


def textrl_clock() -> PhaseClock:
    """The clock for textrl's agents: the env's decoder, its scoring pass, the agent's update."""
    import textrl_env.core as core
    from agents import collect
    from agents.update_steps import UpdateSteps
    from textrl_env.decoder import CachedDecoder
    from textrl_env.vector_env import TextGenerationVectorEnv

    clock = PhaseClock()
    clock.wrap(TextGenerationVectorEnv, "reset", "rollout")
    clock.wrap(TextGenerationVectorEnv, "step", "rollout")
    clock.wrap(CachedDecoder, "advance", "rollout")
    clock.wrap(collect, "sample_from_logits", "rollout")
    clock.wrap(core.GenerationCore, "score", "scoring other")
    clock.wrap(core, "sequence_logprobs", "reference")
    clock.wrap(core, "compute_rewards", "reward")
    clock.wrap(core, "score_skipping_errors", "reward")
    clock.wrap(UpdateSteps, "evaluate_sequence", "update forward")
    clock.wrap_common()
    return clock


def trl_clock(trainer_class: type) -> PhaseClock:
    """The clock for TRL's ``GRPOTrainer``/``RLOOTrainer``."""
    clock = PhaseClock()
    clock.wrap(trainer_class, "_generate", "rollout")
    clock.wrap(trainer_class, "_calculate_rewards", "reward")
    clock.wrap(trainer_class, "_generate_and_score_completions", "scoring other")
    clock.wrap(trainer_class, "compute_loss", "update forward")
    forward = {"scoring other": "reference", "update forward": "update forward"}
    clock.wrap(trainer_class, "_get_per_token_logps_and_entropies", "reference", within=forward)
    clock.wrap_common()
    return clock
