"""KL coefficient controllers: a fixed one, and Ziegler et al.'s (2019) adaptive one.

Both have the same interface (``.value``, ``update(current_kl, n_steps)``, ``state_dict()``,
``load_state_dict()``), so agents hold either without caring which. Their state is plain floats,
so it goes into checkpoints saved with ``torch.save`` and loads back with ``weights_only=True``.
"""

from __future__ import annotations

import math
import operator
from typing import Protocol, runtime_checkable

import torch

from reward_models.checks import positive_finite

# Ziegler et al. (2019), "Fine-Tuning Language Models from Human Preferences", section 2.2:
# the proportional error is clipped to ±0.2 so one noisy KL estimate cannot swing the coefficient.
ERROR_CLIP = 0.2


def _check_update(current_kl: float | torch.Tensor, n_steps: int) -> float:
    if isinstance(current_kl, torch.Tensor):
        if current_kl.numel() != 1:
            raise ValueError(
                f"current_kl must be a single number; got a tensor of shape {tuple(current_kl.shape)} "
                "(average the per-sequence KL first)"
            )
        current_kl = current_kl.item()
    kl = float(current_kl)
    if not math.isfinite(kl):
        raise ValueError(f"current_kl={kl} is not finite; check the log-probs the KL was computed from")
    try:
        steps = operator.index(n_steps)  # ints and numpy ints; rejects floats such as 2.5
    except TypeError:
        steps = 0
    if isinstance(n_steps, bool) or steps < 1:
        raise ValueError(f"n_steps={n_steps!r} is invalid; expected a positive int (samples in this batch)")
    return kl


@runtime_checkable
class KLController(Protocol):
    """What agents need from a KL controller."""

    @property
    def value(self) -> float: ...

    def update(self, current_kl: float | torch.Tensor, n_steps: int) -> float: ...

    def state_dict(self) -> dict[str, float]: ...

    def load_state_dict(self, state: dict[str, float]) -> None: ...


class FixedKLController:
    """A constant KL coefficient; ``update`` validates its input and changes nothing.

    Args:
        kl_coef: the coefficient beta (>= 0; 0 trains without a KL penalty).
    """

    def __init__(self, kl_coef: float) -> None:
        self._value = positive_finite("kl_coef", kl_coef, allow_zero=True)

    @property
    def value(self) -> float:
        """The current coefficient."""
        return self._value

    def update(self, current_kl: float | torch.Tensor, n_steps: int) -> float:
        """Accept a measurement and return the (unchanged) coefficient."""
        _check_update(current_kl, n_steps)
        return self._value

    def state_dict(self) -> dict[str, float]:
        """Plain floats, safe for ``torch.load(..., weights_only=True)``."""
        return {"value": self._value}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore from :meth:`state_dict`."""
        if "value" not in state:
            raise ValueError(f"FixedKLController state needs a 'value' key; got keys {sorted(state)}")
        self._value = positive_finite("value", state["value"], allow_zero=True)

    def __repr__(self) -> str:
        return f"FixedKLController(kl_coef={self._value})"


class AdaptiveKLController:
    """Adaptive KL coefficient (Ziegler et al. 2019) that steers the measured KL towards ``target``.

    After each batch: ``e = clip(current_kl / target - 1, -0.2, 0.2)`` and
    ``value *= 1 + e * n_steps / horizon``. KL above target raises the coefficient (pulling the
    policy back), below target lowers it; one update changes it by at most a factor
    ``1 ± 0.2 * n_steps / horizon``.

    Args:
        init_kl_coef: starting coefficient (> 0: the update is multiplicative, so 0 would stay 0).
        target: KL per sequence (nats) to aim for (> 0), e.g. 6.0.
        horizon: samples over which a full proportional correction happens (> 0), e.g. 10000.
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: float) -> None:
        self._value = positive_finite("init_kl_coef", init_kl_coef)
        self.target = positive_finite("target", target)
        self.horizon = positive_finite("horizon", horizon)

    @property
    def value(self) -> float:
        """The current coefficient."""
        return self._value

    def update(self, current_kl: float | torch.Tensor, n_steps: int) -> float:
        """Adapt to the mean KL of the last batch of ``n_steps`` samples; returns the new value.

        Raises:
            ValueError: ``current_kl`` is not finite or ``n_steps`` is not a positive int.
        """
        kl = _check_update(current_kl, n_steps)
        error = min(max(kl / self.target - 1.0, -ERROR_CLIP), ERROR_CLIP)
        # With n_steps > horizon the factor could reach 0 or below; keep the coefficient positive.
        self._value = max(self._value * (1.0 + error * n_steps / self.horizon), 1e-12)
        return self._value

    def state_dict(self) -> dict[str, float]:
        """Plain floats, safe for ``torch.load(..., weights_only=True)``."""
        return {"value": self._value, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict[str, float]) -> None:
        """Restore from :meth:`state_dict`."""
        missing = {"value", "target", "horizon"} - set(state)
        if missing:
            raise ValueError(
                f"AdaptiveKLController state is missing {sorted(missing)}; pass a dict from state_dict()"
            )
        self._value = positive_finite("value", state["value"])
        self.target = positive_finite("target", state["target"])
        self.horizon = positive_finite("horizon", state["horizon"])

    def __repr__(self) -> str:
        return f"AdaptiveKLController(value={self._value}, target={self.target}, horizon={self.horizon})"


def make_kl_controller(
    kl_coef: float, target: float | None = None, horizon: float = 10000
) -> FixedKLController | AdaptiveKLController:
    """A fixed controller, or an adaptive one starting at ``kl_coef`` when ``target`` is given.

    Raises:
        ValueError: a negative or non-finite ``kl_coef`` (or 0 with a ``target``), ``target`` or
            ``horizon``.
    """
    if target is None:
        return FixedKLController(kl_coef)
    return AdaptiveKLController(kl_coef, target, horizon)
