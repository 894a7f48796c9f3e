"""The settings every algorithm shares; each algorithm's config dataclass extends this one.

Names follow Stable-Baselines3 where SB3 has the concept (``target_kl`` is SB3's early stop of the
update, ``normalize_advantage``, ``gae_lambda``); the adaptive KL controller's target, which SB3 does
not have, is ``kl_target``. Names used before the renames raise an error that names the new one
(:func:`check_renamed`), and checkpoints written with them still load
(:func:`upgrade_config`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

# Settings renamed in checkpoint format 2, with the name each now has (None: no single new name).
RENAMED: dict[str, str] = {
    "target_policy_kl": "target_kl",
    "lam": "gae_lambda",
    "whiten_advantages": "normalize_advantage",
    "normalize_advantages": "normalize_advantage",
}


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _help(text: str, default: Any) -> Any:
    return field(default=default, metadata={"help": text})


def check_renamed(names: Iterable[str], owner: str) -> None:
    """Raise a TypeError for a setting passed under a name it had before the renames.

    Args:
        names: the keyword arguments a user passed.
        owner: who received them (for the message), e.g. ``"PPO"``.
    """
    for name in sorted(names):
        if name in RENAMED:
            raise TypeError(
                f"{owner}: the setting {name!r} is now called {RENAMED[name]!r} (Stable-Baselines3's name); "
                f"pass {RENAMED[name]}=... instead"
            )


def upgrade_config(config: Mapping[str, Any], format_version: int) -> dict[str, Any]:
    """An algorithm config saved by checkpoint format ``format_version``, in today's names.

    Format 1 called the adaptive KL controller's target ``target_kl`` (today ``kl_target``) and
    PPO's early stop ``target_policy_kl`` (today ``target_kl``); the order of the two renames matters.
    """
    config = dict(config)
    if format_version >= 2:
        return config
    if "target_kl" in config:
        config["kl_target"] = config.pop("target_kl")
    for old, new in RENAMED.items():
        if old in config:
            config[new] = config.pop(old)
    return config


@dataclass
class AlgoConfig:
    """Optimisation, KL and reward settings common to every algorithm."""

    learning_rate: float = _help("Adam learning rate.", 1e-5)
    adam_eps: float = _help("Adam epsilon; 1e-5 as in the RLHF PPO implementation details.", 1e-5)
    max_grad_norm: float = _help("gradient norm clip; 0 disables it.", 1.0)
    n_epochs: int = _help("passes over each rollout batch.", 1)
    minibatch_size: int | None = _help("episodes per gradient step; None = the whole rollout.", None)
    clip_range: float = _help("PPO-style ratio clip, which matters once n_epochs > 1.", 0.2)
    target_kl: float | None = _help(
        "Stable-Baselines3's early stop: end the update's epochs once a minibatch's approx KL to the "
        "rollout policy exceeds 1.5x this (that minibatch is not stepped on). None = never stop early.",
        None,
    )
    kl_coef: float | None = _help("initial KL coefficient; None takes the env's kl_coef.", None)
    kl_target: float | None = _help(
        "per-sequence KL (nats) the adaptive KL controller steers towards; None = fixed kl_coef.", None
    )
    kl_horizon: int = _help("horizon (in episodes) of the adaptive KL controller.", 10_000)
    normalize_rewards: bool = _help("scale sequence rewards by a running std (mean kept).", False)
    missing_eos_penalty: float | None = _help("subtracted from the score of responses with no EOS.", None)
    on_nonfinite: str = _help(
        "a NaN/inf loss or gradient norm: 'raise' stops with the iteration and the statistic named; "
        "'skip' drops that gradient step (counted in train/nonfinite_skips).",
        "raise",
    )

    def __post_init__(self) -> None:
        positive = {
            "learning_rate": self.learning_rate,
            "adam_eps": self.adam_eps,
            "clip_range": self.clip_range,
        }
        for name, value in positive.items():
            if not (_is_number(value) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not (
            _is_number(self.max_grad_norm) and math.isfinite(self.max_grad_norm) and self.max_grad_norm >= 0
        ):
            raise ValueError(f"max_grad_norm must be >= 0 (0 disables clipping), got {self.max_grad_norm!r}")
        if not (_is_int(self.n_epochs) and self.n_epochs >= 1):
            raise ValueError(f"n_epochs must be an int >= 1, got {self.n_epochs!r}")
        if self.minibatch_size is not None and not (
            _is_int(self.minibatch_size) and self.minibatch_size >= 1
        ):
            raise ValueError(f"minibatch_size must be None or an int >= 1, got {self.minibatch_size!r}")
        if self.kl_coef is not None and not (
            _is_number(self.kl_coef) and math.isfinite(self.kl_coef) and self.kl_coef >= 0
        ):
            raise ValueError(f"kl_coef must be None or a finite number >= 0, got {self.kl_coef!r}")
        for name in ("target_kl", "kl_target"):
            value = getattr(self, name)
            if value is not None and not (_is_number(value) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be None (off) or a finite number > 0, got {value!r}")
        if not (_is_int(self.kl_horizon) and self.kl_horizon >= 1):
            raise ValueError(f"kl_horizon must be an int >= 1, got {self.kl_horizon!r}")
        if not isinstance(self.normalize_rewards, bool):
            raise TypeError(f"normalize_rewards must be True or False, got {self.normalize_rewards!r}")
        if self.missing_eos_penalty is not None and not (
            _is_number(self.missing_eos_penalty) and math.isfinite(self.missing_eos_penalty)
        ):
            raise ValueError(
                f"missing_eos_penalty must be None (off) or a finite number, got {self.missing_eos_penalty!r}"
            )
        if self.on_nonfinite not in ("raise", "skip"):
            raise ValueError(
                f"on_nonfinite must be 'raise' or 'skip', got {self.on_nonfinite!r}; 'raise' stops training, "
                "'skip' drops the gradient step and counts it in train/nonfinite_skips"
            )

    @classmethod
    def field_names(cls) -> set[str]:
        """Names a user may pass as keyword arguments to the algorithm."""
        return {f.name for f in fields(cls)}
