"""The settings every algorithm shares; each algorithm's config dataclass extends this one."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass
class AlgoConfig:
    """Optimisation, KL and reward settings common to REINFORCE, RLOO and PPO."""

    learning_rate: float = _help("Adam learning rate.", 1e-5)
    adam_eps: float = _help("Adam epsilon; 1e-5 as in the RLHF PPO implementation details.", 1e-5)
    max_grad_norm: float = _help("gradient norm clip; 0 disables it.", 1.0)
    n_epochs: int = _help("passes over each rollout batch.", 1)
    minibatch_size: int | None = _help("episodes per gradient step; None = the whole rollout.", None)
    clip_range: float = _help("PPO-style ratio clip, which matters once n_epochs > 1.", 0.2)
    kl_coef: float | None = _help("initial KL coefficient; None takes the env's kl_coef.", None)
    target_kl: float | None = _help("per-sequence KL target of the adaptive controller; None = fixed.", None)
    kl_horizon: int = _help("horizon (in episodes) of the adaptive KL controller.", 10_000)
    normalize_rewards: bool = _help("scale sequence rewards by a running std (mean kept).", False)
    missing_eos_penalty: float | None = _help("subtracted from the score of responses with no EOS.", None)

    def __post_init__(self) -> None:
        positive = {
            "learning_rate": self.learning_rate,
            "adam_eps": self.adam_eps,
            "clip_range": self.clip_range,
        }
        for name, value in positive.items():
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not (isinstance(self.max_grad_norm, int | float) and self.max_grad_norm >= 0):
            raise ValueError(f"max_grad_norm must be >= 0 (0 disables clipping), got {self.max_grad_norm!r}")
        if not (isinstance(self.n_epochs, int) and self.n_epochs >= 1):
            raise ValueError(f"n_epochs must be an int >= 1, got {self.n_epochs!r}")
        if self.minibatch_size is not None and not (
            isinstance(self.minibatch_size, int) and self.minibatch_size >= 1
        ):
            raise ValueError(f"minibatch_size must be None or an int >= 1, got {self.minibatch_size!r}")
        if self.kl_coef is not None and not (math.isfinite(self.kl_coef) and self.kl_coef >= 0):
            raise ValueError(f"kl_coef must be None or a finite number >= 0, got {self.kl_coef!r}")
        if self.target_kl is not None and not (math.isfinite(self.target_kl) and self.target_kl > 0):
            raise ValueError(f"target_kl must be None or a finite number > 0, got {self.target_kl!r}")
        if not (isinstance(self.kl_horizon, int) and self.kl_horizon >= 1):
            raise ValueError(f"kl_horizon must be an int >= 1, got {self.kl_horizon!r}")

    @classmethod
    def field_names(cls) -> set[str]:
        """Names a user may pass as keyword arguments to the algorithm."""
        return {f.name for f in fields(cls)}
