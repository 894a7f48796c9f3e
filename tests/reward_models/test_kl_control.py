"""The fixed and adaptive KL controllers."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reward_models import AdaptiveKLController, FixedKLController, KLController, make_kl_controller

kls = st.floats(0.0, 1000.0, allow_nan=False)
steps = st.integers(1, 20000)


def test_adaptive_known_answer():
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    # KL 9 -> e = 9/6 - 1 = 0.5, clipped to 0.2; factor 1 + 0.2 * 256 / 10000
    assert ctl.update(9.0, 256) == pytest.approx(0.1 * 1.00512)
    # KL 4.5 -> e = -0.25 clipped to -0.2
    assert ctl.update(4.5, 256) == pytest.approx(0.1 * 1.00512 * 0.99488)
    # KL 6.6 -> e = 0.1, inside the clip
    ctl = AdaptiveKLController(0.2, target=6.0, horizon=100)
    assert ctl.update(torch.tensor(6.6), 10) == pytest.approx(0.2 * 1.01)


@settings(max_examples=100, deadline=None)
@given(st.floats(1e-3, 10.0), st.floats(0.1, 20.0), st.floats(100.0, 1e5), kls, steps)
def test_adaptive_moves_towards_target_bounded_by_the_clip(init, target, horizon, kl, n):
    ctl = AdaptiveKLController(init, target, horizon)
    new = ctl.update(kl, n)
    if kl > target:
        assert new > init
    elif kl < target:
        assert new < init
    else:
        assert new == init
    # one update moves the coefficient by at most the 0.2 clip times n / horizon
    assert abs(new / init - 1.0) <= 0.2 * n / horizon + 1e-12


def test_fixed_controller_never_moves():
    ctl = FixedKLController(0.05)
    assert ctl.update(100.0, 64) == 0.05 and ctl.update(0.0, 64) == 0.05 and ctl.value == 0.05


@pytest.mark.parametrize("ctl", [FixedKLController(0.3), AdaptiveKLController(0.3, 2.0, 500)])
def test_state_survives_a_weights_only_checkpoint(ctl, tmp_path):
    assert isinstance(ctl, KLController)
    ctl.update(5.0, 32)
    torch.save({"kl": ctl.state_dict()}, tmp_path / "ckpt.pt")
    fresh = (
        make_kl_controller(1.0, target=1.0)
        if isinstance(ctl, AdaptiveKLController)
        else FixedKLController(1.0)
    )
    fresh.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True)["kl"])
    assert fresh.value == ctl.value and fresh.state_dict() == ctl.state_dict()
    assert fresh.update(0.5, 8) == ctl.update(0.5, 8)


def test_fixed_zero_coefficient_means_no_penalty():
    assert make_kl_controller(0.0).update(3.0, 8) == 0.0


def test_make_kl_controller():
    assert isinstance(make_kl_controller(0.1), FixedKLController)
    adaptive = make_kl_controller(0.1, target=6.0, horizon=500)
    assert isinstance(adaptive, AdaptiveKLController) and adaptive.horizon == 500


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: FixedKLController(-0.1), "kl_coef=-0.1"),
        (lambda: AdaptiveKLController(0.0, 6.0, 100), "init_kl_coef=0.0.*> 0"),
        (lambda: FixedKLController(float("inf")), "kl_coef=inf"),
        (lambda: AdaptiveKLController(0.1, -1.0, 100), "target=-1.0"),
        (lambda: AdaptiveKLController(0.1, 6.0, 0), "horizon=0"),
        (lambda: AdaptiveKLController(0.1, 6.0, 100).update(float("nan"), 4), "current_kl=nan"),
        (lambda: AdaptiveKLController(0.1, 6.0, 100).update(1.0, 0), "n_steps=0"),
        (lambda: AdaptiveKLController(0.1, 6.0, 100).update(1.0, 2.5), "n_steps=2.5"),
        (lambda: AdaptiveKLController(0.1, 6.0, 100).update(torch.ones(3), 4), r"shape \(3,\)"),
        (lambda: AdaptiveKLController(0.1, 6.0, 100).load_state_dict({"value": 1.0}), "missing"),
    ],
)
def test_invalid_arguments(build, message):
    with pytest.raises(ValueError, match=message):
        build()
