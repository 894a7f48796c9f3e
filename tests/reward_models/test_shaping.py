"""Known answers and properties of the reward-shaping functions."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from reward_models import kl_penalty, missing_eos_penalty, shaped_rewards, whiten
from reward_models.shaping import RunningMeanStd
from textrl_env.testing import kl_coefs, logprob_tensors, reward_batches

PROPERTY = settings(max_examples=60, deadline=None)

# ---------------------------------------------------------------- kl_penalty: known answers


def test_kl_estimators_known_answers():
    # log-ratios logp - ref = 0.5, -0.5, 0 (last one masked out)
    logprobs = torch.tensor([[-1.0, -2.0, -0.3]])
    ref = torch.tensor([[-1.5, -1.5, -4.0]])
    mask = torch.tensor([[1, 1, 0]])
    # k1 = logp - ref
    torch.testing.assert_close(kl_penalty(logprobs, ref, mask, "k1"), torch.tensor([[0.5, -0.5, 0.0]]))
    # k2 = 0.5 * (logp - ref)^2 = 0.5 * 0.25
    torch.testing.assert_close(kl_penalty(logprobs, ref, mask, "k2"), torch.tensor([[0.125, 0.125, 0.0]]))
    # k3 = exp(r) - 1 - r with r = ref - logp: r = -0.5 -> e^-0.5 - 0.5 = 0.10653; r = 0.5 -> e^0.5 - 1.5 = 0.14872
    k3 = kl_penalty(logprobs, ref, mask, "k3")
    torch.testing.assert_close(k3, torch.tensor([[0.1065307, 0.1487213, 0.0]]), rtol=0, atol=1e-6)


def test_kl_log_ratio_is_clamped():
    logprobs, ref = torch.tensor([[0.0]]), torch.tensor([[-1000.0]])
    assert kl_penalty(logprobs, ref, estimator="k1").item() == pytest.approx(20.0)
    assert kl_penalty(ref, logprobs, estimator="k3").item() == pytest.approx(math.exp(20) - 21, rel=1e-5)


def test_kl_rejects_unknown_estimator_and_shape_mismatch():
    with pytest.raises(ValueError, match="unknown KL estimator 'k4'"):
        kl_penalty(torch.zeros(2, 3), torch.zeros(2, 3), estimator="k4")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"logprobs=\(2, 3\), ref_logprobs=\(2, 4\)"):
        kl_penalty(torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"mask=\(3, 3\)"):
        kl_penalty(torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(3, 3))


# ---------------------------------------------------------------- kl_penalty: properties


@PROPERTY
@given(logprob_tensors(), st.sampled_from(["k2", "k3"]))
def test_k2_k3_are_nonnegative(triple, estimator):
    logprobs, ref, mask = triple
    assert bool((kl_penalty(logprobs, ref, mask, estimator) >= 0).all())


@PROPERTY
@given(logprob_tensors(), st.sampled_from(["k1", "k2", "k3"]))
def test_kl_is_zero_for_identical_models(triple, estimator):
    logprobs, _, mask = triple
    assert bool((kl_penalty(logprobs, logprobs.clone(), mask, estimator) == 0).all())


@PROPERTY
@given(logprob_tensors(), st.sampled_from(["k1", "k2", "k3"]))
def test_kl_masked_positions_are_zero(triple, estimator):
    logprobs, ref, mask = triple
    assert bool((kl_penalty(logprobs, ref, mask, estimator)[mask == 0] == 0).all())


# ---------------------------------------------------------------- shaped_rewards


def test_shaped_rewards_known_answer():
    scores = torch.tensor([1.0, -2.0])
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    mask = torch.tensor([[1, 1, 0], [1, 1, 1]])
    expected = torch.tensor(
        [
            [-0.01, -0.02 + 1.0, 0.0],  # score lands on index 1, the last unmasked token
            [-0.04, -0.05, -0.06 - 2.0],
        ]
    )
    torch.testing.assert_close(shaped_rewards(scores, kl, mask, kl_coef=0.1), expected)


def test_shaped_rewards_does_not_modify_inputs():
    scores, kl, mask = torch.tensor([1.0]), torch.tensor([[0.5, 0.5]]), torch.tensor([[1.0, 1.0]])
    shaped_rewards(scores, kl, mask, 0.2)
    assert kl.tolist() == [[0.5, 0.5]] and scores.tolist() == [1.0]


@PROPERTY
@given(st.data(), kl_coefs(), st.sampled_from(["k1", "k2", "k3"]))
def test_shaped_rewards_sum_to_the_episode_return(data, kl_coef, estimator):
    logprobs, ref, mask = data.draw(logprob_tensors())
    scores = data.draw(reward_batches(batch_size=logprobs.shape[0]))
    kl = kl_penalty(logprobs, ref, mask, estimator)
    rewards = shaped_rewards(scores, kl, mask, kl_coef)
    # float64 reference: k3 reaches e^20 so float32 sums need a relative tolerance
    expected = scores.double() - kl_coef * kl.double().sum(dim=1)
    torch.testing.assert_close(rewards.double().sum(dim=1), expected, rtol=1e-5, atol=1e-4)
    assert bool((rewards[mask == 0] == 0).all())


def test_shaped_rewards_errors():
    kl, mask = torch.zeros(2, 3), torch.ones(2, 3)
    with pytest.raises(ValueError, match=r"scores=\(3,\), kl=\(2, 3\)"):
        shaped_rewards(torch.zeros(3), kl, mask, 0.1)
    with pytest.raises(ValueError, match=r"kl=\(2, 3\), mask=\(2, 4\)"):
        shaped_rewards(torch.zeros(2), kl, torch.ones(2, 4), 0.1)
    with pytest.raises(ValueError, match=r"mask rows \[1\] are all zero"):
        shaped_rewards(torch.zeros(2), kl, torch.tensor([[1, 0, 0], [0, 0, 0]]), 0.1)
    with pytest.raises(ValueError, match="kl_coef=-0.1"):
        shaped_rewards(torch.zeros(2), kl, mask, -0.1)
    with pytest.raises(ValueError, match="kl_coef=nan"):
        shaped_rewards(torch.zeros(2), kl, mask, float("nan"))


# ---------------------------------------------------------------- whiten


def test_whiten_known_answer_and_mask():
    values = torch.tensor([[1.0, 2.0, 3.0, 100.0]])
    mask = torch.tensor([[1, 1, 1, 0]])
    # mean 2, unbiased std 1 -> (-1, 0, 1); the masked 100 neither counts nor survives
    torch.testing.assert_close(whiten(values, mask), torch.tensor([[-1.0, 0.0, 1.0, 0.0]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        whiten(values, mask, shift_mean=False), torch.tensor([[1.0, 2.0, 3.0, 0.0]]), atol=1e-6, rtol=0
    )


@PROPERTY
@given(logprob_tensors(max_batch_size=6))
def test_whiten_gives_zero_mean_unit_variance(triple):
    values, _, mask = triple
    n = int(mask.sum())
    keep = mask.bool()
    spread = values[keep].double().std() if n > 1 else torch.tensor(0.0)
    out = whiten(values.double(), mask)
    assert bool((out[~keep] == 0).all())
    assert abs(float(out[keep].mean())) < 1e-6
    if n > 1 and float(spread) > 1e-3:
        assert float(out[keep].std()) == pytest.approx(1.0, rel=1e-4)


def test_whiten_errors():
    with pytest.raises(ValueError, match="no unmasked values"):
        whiten(torch.ones(2, 2), torch.zeros(2, 2))
    with pytest.raises(ValueError, match=r"values=\(2, 2\), mask=\(2, 3\)"):
        whiten(torch.ones(2, 2), torch.ones(2, 3))


# ---------------------------------------------------------------- missing_eos_penalty


def test_missing_eos_penalty():
    scores = torch.tensor([1.0, 1.0, -0.5])
    out = missing_eos_penalty(scores, torch.tensor([True, False, False]), penalty=1.0)
    torch.testing.assert_close(out, torch.tensor([1.0, 0.0, -1.5]))
    assert scores.tolist() == [1.0, 1.0, -0.5]
    with pytest.raises(ValueError, match=r"scores=\(3,\), has_eos=\(2,\)"):
        missing_eos_penalty(scores, torch.tensor([True, False]), 1.0)
    with pytest.raises(ValueError, match="penalty=-1"):
        missing_eos_penalty(scores, torch.tensor([True, False, True]), -1)


# ---------------------------------------------------------------- RunningMeanStd


@PROPERTY
@given(st.lists(reward_batches(max_batch_size=6), min_size=1, max_size=5))
def test_running_mean_std_matches_the_whole_stream(batches):
    rms = RunningMeanStd()
    for batch in batches:
        rms.update(batch)
    everything = torch.cat(batches).double()
    assert rms.count == everything.numel()
    torch.testing.assert_close(rms.mean, everything.mean(), rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(rms.var, everything.var(unbiased=False), rtol=1e-7, atol=1e-9)


def test_running_mean_std_normalize_and_state_round_trip(tmp_path):
    rms = RunningMeanStd()
    rms.update(torch.tensor([2.0, 4.0, 6.0, 8.0]))  # mean 5, var 5
    out = rms.normalize(torch.tensor([5.0, 10.0]))
    torch.testing.assert_close(out, torch.tensor([0.0, 5.0 / math.sqrt(5.0)]))
    assert out.dtype == torch.float32
    torch.save(rms.state_dict(), tmp_path / "rms.pt")
    restored = RunningMeanStd()
    restored.load_state_dict(torch.load(tmp_path / "rms.pt", weights_only=True))
    assert restored.count == 4.0
    torch.testing.assert_close(restored.normalize(torch.tensor([5.0, 10.0])), out)


def test_running_mean_std_vector_shape_and_errors():
    rms = RunningMeanStd(shape=(2,))
    rms.update(torch.tensor([[0.0, 10.0], [2.0, 20.0]]))
    torch.testing.assert_close(rms.mean, torch.tensor([1.0, 15.0], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"batch of shape \(2, 3\)"):
        rms.update(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="NaN or infinite"):
        rms.update(torch.tensor([[0.0, float("inf")]]))
    with pytest.raises(ValueError, match="same shape="):
        RunningMeanStd().load_state_dict(rms.state_dict())
