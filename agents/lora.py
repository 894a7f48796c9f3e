"""LoRA policies: the KL reference is the policy's own model with the adapter switched off.

:meth:`agents.policies.LMPolicy.reference_model` builds an :class:`AdapterOffReference`, and the agent
hands it to the env with ``env.attach_policy(reference=...)``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class AdapterOffReference(nn.Module):
    """The reference model of a LoRA policy, without a second copy of the weights.

    A peft adapter adds small trainable matrices beside frozen base weights, so the base model
    *is* the starting point: running the policy's model with ``disable_adapter()`` gives exactly
    the reference log-probs. The peft model is held outside the module tree on purpose: the env
    freezes its reference (``requires_grad_(False)``), which must not freeze the adapter.
    """

    def __init__(self, peft_model: nn.Module) -> None:
        super().__init__()
        if not hasattr(peft_model, "disable_adapter"):
            raise TypeError(f"expected a peft model with disable_adapter(), got {type(peft_model).__name__}")
        self._peft_model: Any
        object.__setattr__(self, "_peft_model", peft_model)

    def get_base_model(self) -> nn.Module:
        """The underlying transformers model (its forward signature tells which arguments it takes)."""
        return self._peft_model.get_base_model()

    @torch.no_grad()
    def forward(self, **kwargs: Any) -> Any:
        with self._peft_model.disable_adapter():
            return self._peft_model(**kwargs)
