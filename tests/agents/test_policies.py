from __future__ import annotations

import copy
import sys

import numpy as np
import pytest
import torch
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel

from agents.policies import (
    POLICY_ALIASES,
    BasePolicy,
    LMActorCriticPolicy,
    LMPolicy,
    check_policy_vocab,
    obs_to_tensors,
    resolve_policy,
    sample_from_logits,
)
from agents.policies.base import _exponential_race_draw
from textrl_env.logprobs import position_ids_from_mask, sequence_logprobs

V = 64
# env layout: prompt block P=4 (left-padded), response block T=4 (right-padded)
IDS = np.array(
    [
        [0, 0, 5, 6, 7, 8, 0, 0],  # 2-token prompt, 2 response tokens so far
        [9, 10, 11, 12, 13, 0, 0, 0],  # 4-token prompt, 1 response token
        [0, 3, 4, 5, 0, 0, 0, 0],  # 3-token prompt, nothing yet
    ]
)
MASK = (IDS != 0).astype(np.int64)
OBS = {"input_ids": IDS, "attention_mask": MASK}


def _naive_next_logits(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    logits = model(input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)).logits
    last = mask.cumsum(-1).argmax(-1)
    return logits[torch.arange(ids.shape[0]), last]  # (B, V)


def test_forward_is_next_token_logits_at_last_real_column(tiny_lm: nn.Module) -> None:
    policy = LMPolicy(tiny_lm)
    got = policy(OBS)
    assert got.shape == (3, V)
    expected = _naive_next_logits(tiny_lm, torch.as_tensor(IDS), torch.as_tensor(MASK))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
    # torch obs and a single (L,) obs give the same numbers
    torch.testing.assert_close(policy({k: torch.as_tensor(v) for k, v in OBS.items()}), got)
    single = policy({"input_ids": IDS[1], "attention_mask": MASK[1]})
    torch.testing.assert_close(single, got[1:2], rtol=1e-4, atol=1e-5)


def test_act_and_predict(tiny_lm: nn.Module) -> None:
    policy = LMPolicy(tiny_lm, temperature=0.7)
    greedy = policy.act(OBS, deterministic=True)
    assert greedy.tolist() == policy(OBS).argmax(-1).tolist()
    a = policy.act(OBS, generator=torch.Generator().manual_seed(3))
    b = policy.act(OBS, generator=torch.Generator().manual_seed(3))
    assert a.shape == (3,) and torch.equal(a, b) and ((a >= 0) & (a < V)).all()
    actions, state = policy.predict(OBS, deterministic=True)
    assert isinstance(actions, np.ndarray) and actions.shape == (3,) and state is None
    one, _ = policy.predict({"input_ids": IDS[0], "attention_mask": MASK[0]}, deterministic=True)
    assert one.shape == () and int(one) == greedy[0].item()


def test_evaluate_actions_uses_temperature_and_has_grad(tiny_lm: nn.Module) -> None:
    policy = LMPolicy(tiny_lm, temperature=0.5)
    actions = torch.tensor([3, 4, 5])
    values, log_prob, entropy = policy.evaluate_actions(OBS, actions)
    assert values is None and policy.predict_values(OBS) is None
    logits = policy(OBS).detach().float() / 0.5
    dist = torch.distributions.Categorical(logits=logits)
    torch.testing.assert_close(log_prob.detach(), dist.log_prob(actions))
    torch.testing.assert_close(entropy.detach(), dist.entropy())
    log_prob.sum().backward()
    assert tiny_lm.lm_head.weight.grad is not None


def test_sequence_logprobs_agree_with_per_step_evaluation(tiny_lm: nn.Module) -> None:
    """What the env records per step (teacher-forced) equals what the agent computes per observation."""
    policy = LMPolicy(tiny_lm, temperature=0.8)
    ids, mask = torch.as_tensor(IDS[:1]), torch.as_tensor(MASK[:1])
    full_ids = ids.clone()
    full_ids[0, 6:] = torch.tensor([20, 1])  # response: 7, 8, 20, EOS
    full_mask = torch.ones_like(mask)
    full_mask[0, :2] = 0
    seq = policy.sequence_logprobs(full_ids, full_mask, response_start=4)
    for j in range(4):
        prefix_mask = full_mask.clone()
        prefix_mask[0, 4 + j :] = 0  # the observation before response token j
        obs = {"input_ids": full_ids * prefix_mask, "attention_mask": prefix_mask}
        _, step_lp, _ = policy.evaluate_actions(obs, full_ids[0, 4 + j])
        assert step_lp.item() == pytest.approx(seq[0, j].item(), abs=1e-5)


def test_dropout_stays_off_while_training() -> None:
    config = GPT2Config(
        vocab_size=V, n_layer=1, n_head=2, n_embd=32, n_positions=64, resid_pdrop=0.5, embd_pdrop=0.5
    )
    policy = LMActorCriticPolicy(GPT2LMHeadModel(config), value_head="separate")
    policy.train()
    assert policy.training and not policy.model.training and not policy.critic.training
    torch.testing.assert_close(policy(OBS), policy(OBS))
    assert policy.model.transformer.wte.weight.requires_grad
    policy.model.transformer.h[0].train()  # a user's call deep inside the model
    policy.train()
    assert not any(m.training for m in policy.modules() if m is not policy)
    policy.eval()
    assert not policy.training
    with pytest.raises(ValueError, match="boolean"):
        policy.train(1)  # type: ignore[arg-type]


def test_actor_critic_shared_values_align_with_states(tiny_lm: nn.Module) -> None:
    policy = LMActorCriticPolicy(tiny_lm, value_head_init_std=0.5)
    values = policy.predict_values(OBS)
    assert values.shape == (3,)
    # the value is the head on the last layer's (final-norm) hidden state at the last real column
    ids, mask = torch.as_tensor(IDS), torch.as_tensor(MASK)
    hidden = tiny_lm.transformer(
        input_ids=ids, attention_mask=mask, position_ids=position_ids_from_mask(mask)
    )
    last = mask.cumsum(-1).argmax(-1)
    expected = policy.value_head(hidden.last_hidden_state[torch.arange(3), last]).squeeze(-1)
    torch.testing.assert_close(values, expected, rtol=1e-4, atol=1e-5)
    # per-token values: column j is the value of the observation just before response token j
    seq_values = policy.sequence_values(ids, mask, response_start=4)
    assert seq_values.shape == (3, 4)
    for row in range(3):
        for j in range(4):
            if mask[row, 4 + j] == 0:
                assert seq_values[row, j].item() == 0.0
                continue
            prefix = mask[row : row + 1].clone()
            prefix[:, 4 + j :] = 0  # the observation whose next action is response token j
            state = {"input_ids": ids[row : row + 1] * prefix, "attention_mask": prefix}
            assert seq_values[row, j].item() == pytest.approx(policy.predict_values(state).item(), abs=1e-5)
    v, lp, ent = policy.evaluate_sequence(ids, mask, response_start=4)
    torch.testing.assert_close(v, seq_values)
    torch.testing.assert_close(lp, sequence_logprobs(tiny_lm, ids, mask, 4), rtol=1e-4, atol=1e-5)
    assert (v[:, 2:][mask[:, 6:] == 0] == 0).all() and ent.shape == (3, 4)


def test_value_head_starts_at_zero_by_default(tiny_lm: nn.Module) -> None:
    policy = LMActorCriticPolicy(tiny_lm)
    assert torch.count_nonzero(policy.predict_values(OBS)) == 0
    values, _, _ = policy.evaluate_actions(OBS, torch.tensor([1, 2, 3]))
    ((values - 1.0) ** 2).sum().backward()
    assert policy.value_head.weight.grad.abs().sum() > 0


def test_separate_critic_does_not_touch_the_policy(tiny_lm: nn.Module) -> None:
    policy = LMActorCriticPolicy(tiny_lm, value_head="separate", value_head_init_std=0.1)
    assert policy.critic is not None and policy.critic.wte.weight is not tiny_lm.transformer.wte.weight
    names = [name for name, _ in policy.named_parameters()]
    assert len(names) == len(set(names))
    ids, mask = torch.as_tensor(IDS), torch.as_tensor(MASK)
    values, logprobs, _ = policy.evaluate_sequence(ids, mask, 4)
    values.sum().backward()
    assert tiny_lm.transformer.wte.weight.grad is None
    assert policy.critic.wte.weight.grad is not None
    seq_values = policy.sequence_values(ids, mask, 4)
    torch.testing.assert_close(seq_values, values.detach())
    # obs row 0 ends at response column 1: its state is the one before response token 2, which the
    # sequence sees when token 2 is present
    full = ids.clone()
    full[0, 6] = 30
    full_mask = (full != 0).long()
    assert policy.predict_values(OBS)[0].item() == pytest.approx(
        policy.sequence_values(full, full_mask, 4)[0, 2].item(), abs=1e-5
    )


def test_custom_base_policy_subclass_gets_the_verbs() -> None:
    class BagOfTokens(BasePolicy):
        def __init__(self, vocab_size: int) -> None:
            super().__init__(temperature=1.0)
            self.embed = nn.EmbeddingBag(vocab_size, vocab_size, mode="sum")

        def forward(self, obs):  # noqa: ANN001, ANN202
            ids, mask, _ = obs_to_tensors(obs, self.device)
            return self.embed(ids, per_sample_weights=mask.float())  # (B, V)

    policy = resolve_policy(BagOfTokens)(vocab_size=V)
    actions = policy.act(OBS)
    _, log_prob, entropy = policy.evaluate_actions(OBS, actions)
    assert actions.shape == log_prob.shape == entropy.shape == (3,)
    assert policy.predict(OBS)[0].shape == (3,)


def test_resolve_policy_aliases_and_errors() -> None:
    assert resolve_policy("LMPolicy") is LMPolicy
    assert resolve_policy("LMActorCriticPolicy") is LMActorCriticPolicy
    assert set(POLICY_ALIASES) == {"LMPolicy", "LMActorCriticPolicy"}
    with pytest.raises(ValueError, match="unknown policy alias 'LMPolcy'. Did you mean 'LMPolicy'\\?"):
        resolve_policy("LMPolcy")

    class Duck:
        def forward(self, obs): ...  # noqa: ANN001, ANN202
        def act(self, obs, deterministic=False): ...  # noqa: ANN001, ANN202
        def evaluate_actions(self, obs, actions): ...  # noqa: ANN001, ANN202
        def predict_values(self, obs): ...  # noqa: ANN001, ANN202

    assert resolve_policy(Duck) is Duck

    class HalfDuck(nn.Module):
        def act(self, obs): ...  # noqa: ANN001, ANN202

    with pytest.raises(TypeError, match="missing forward, evaluate_actions, predict_values"):
        resolve_policy(HalfDuck)
    with pytest.raises(TypeError, match="pass the class itself"):
        resolve_policy(LMPolicy(GPT2LMHeadModel(GPT2Config(vocab_size=8, n_layer=1, n_head=1, n_embd=4))))


def test_check_policy_vocab() -> None:
    check_policy_vocab(64, 64)
    with pytest.raises(ValueError, match=r"emits 50 logits .* Discrete\(64\).*resize_token_embeddings\(64\)"):
        check_policy_vocab(50, 64)
    assert (
        LMPolicy(GPT2LMHeadModel(GPT2Config(vocab_size=50, n_layer=1, n_head=1, n_embd=4))).vocab_size == 50
    )


def test_bad_obs_and_arguments(tiny_lm: nn.Module) -> None:
    policy = LMPolicy(tiny_lm)
    with pytest.raises(TypeError, match="'input_ids' and 'attention_mask'"):
        policy(IDS)
    with pytest.raises(ValueError, match="must share one shape"):
        policy({"input_ids": IDS, "attention_mask": MASK[:, :-1]})
    with pytest.raises(ValueError, match="value_head must be"):
        LMActorCriticPolicy(tiny_lm, value_head="twin")
    with pytest.raises(ValueError, match="temperature must be > 0"):
        LMPolicy(tiny_lm, temperature=0)
    with pytest.raises(ValueError, match="needs a LoRA policy"):
        policy.reference_logprobs(torch.as_tensor(IDS), torch.as_tensor(MASK), 4)


LORA = {"r": 4, "lora_alpha": 8, "target_modules": ["c_attn"], "fan_in_fan_out": True}


def test_lora_reference_is_the_adapter_switched_off(tiny_lm: nn.Module) -> None:
    pytest.importorskip("peft")
    original = copy.deepcopy(tiny_lm)
    policy = LMActorCriticPolicy(tiny_lm, lora_config=LORA)
    trainable = {name for name, p in policy.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in name or name.startswith("value_head") for name in trainable)
    with torch.no_grad():  # move the adapter away from its zero init
        for name, p in policy.model.named_parameters():
            if "lora_B" in name:
                p.normal_(std=0.5)
    ids, mask = torch.as_tensor(IDS), torch.as_tensor(MASK)
    ref = policy.reference_logprobs(ids, mask, 4)
    torch.testing.assert_close(ref, sequence_logprobs(original, ids, mask, 4), rtol=1e-4, atol=1e-5)
    assert not torch.allclose(policy.sequence_logprobs(ids, mask, 4), ref, atol=1e-3)


def test_lora_without_peft_is_a_clear_import_error(
    tiny_lm: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(ImportError, match=r"pip install textrl\[lora\]"):
        LMPolicy(tiny_lm, lora_config=LORA)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_autocast_agrees_with_cpu(tiny_lm: nn.Module) -> None:
    cpu = LMActorCriticPolicy(tiny_lm, value_head_init_std=0.1)
    gpu = copy.deepcopy(cpu).cuda()
    ids, mask = torch.as_tensor(IDS), torch.as_tensor(MASK)
    with torch.autocast("cuda", dtype=torch.bfloat16):
        values, logprobs, entropy = gpu.evaluate_sequence(ids.cuda(), mask.cuda(), 4)
        actions = gpu.act(OBS, generator=torch.Generator("cuda").manual_seed(0))
    assert logprobs.dtype == entropy.dtype == torch.float32 and actions.device.type == "cuda"
    ref_values, ref_logprobs, _ = cpu.evaluate_sequence(ids, mask, 4)
    torch.testing.assert_close(logprobs.cpu(), ref_logprobs.detach(), atol=0.05, rtol=0.05)
    torch.testing.assert_close(values.float().cpu(), ref_values.detach(), atol=0.05, rtol=0.05)


def test_sampling_draws_each_token_with_its_probability() -> None:
    """Frequencies match softmax(logits / T), masked tokens never come (the CPU draw)."""
    logits = torch.tensor([[2.0, float("-inf"), 1.0, 0.0, -1.0, float("-inf")]]).repeat(20_000, 1)  # (N, 6)
    generator = torch.Generator().manual_seed(0)
    for temperature in (1.0, 0.5):
        draws = sample_from_logits(logits, temperature, generator=generator)
        counts = torch.bincount(draws, minlength=6).double()
        expected = torch.softmax(logits[0] / temperature, -1).double() * len(draws)
        real = torch.isfinite(logits[0])
        assert counts[~real].sum() == 0
        chi2 = ((counts[real] - expected[real]) ** 2 / expected[real]).sum()
        assert chi2 < 16.3, f"chi-square {chi2:.1f} on 3 degrees of freedom (p < 0.001)"
    again = sample_from_logits(logits[:8], generator=torch.Generator().manual_seed(1))
    assert torch.equal(again, sample_from_logits(logits[:8], generator=torch.Generator().manual_seed(1)))
    assert sample_from_logits(logits[:2], deterministic=True).tolist() == [0, 0]


def test_the_device_draw_gives_each_token_its_probability() -> None:
    """The exponential race a GPU samples with, run here on CPU tensors."""
    probs = torch.softmax(torch.tensor([2.0, float("-inf"), 1.0, 0.0, -1.0]), -1)
    draws = _exponential_race_draw(probs.repeat(20_000, 1), torch.Generator().manual_seed(0))
    counts = torch.bincount(draws, minlength=5).double()
    expected = probs.double() * len(draws)
    assert counts[1] == 0
    real = expected > 0
    chi2 = ((counts[real] - expected[real]) ** 2 / expected[real]).sum()
    assert chi2 < 16.3, f"chi-square {chi2:.1f} on 3 degrees of freedom (p < 0.001)"


def test_sampling_refuses_nan_probabilities() -> None:
    bad = torch.tensor([[0.0, float("nan"), 1.0], [float("-inf")] * 3])
    for row in bad:
        with pytest.raises(RuntimeError, match="NaN probabilities"):
            sample_from_logits(row[None])


def test_sampling_never_draws_a_zero_probability_token_when_rand_gives_zero(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """torch.rand can return exactly 0; the only token with p > 0 must still win its row."""
    logits = torch.tensor([[float("-inf"), float("-inf"), 0.0, float("-inf")]])
    real_rand = torch.rand
    monkeypatch.setattr(torch, "rand", lambda *args, **kwargs: real_rand(*args, **kwargs).zero_())
    assert sample_from_logits(logits).tolist() == [2]


def test_sampling_never_draws_a_zero_probability_token_when_rand_gives_its_largest_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """u * total can round up to the total; the last token with p > 0 must still be the one."""
    logits = torch.tensor([[0.0, 3.0, 1.0, float("-inf"), float("-inf")]])
    real_rand = torch.rand
    largest = 1.0 - 2.0**-53
    monkeypatch.setattr(torch, "rand", lambda *args, **kwargs: real_rand(*args, **kwargs).fill_(largest))
    assert sample_from_logits(logits).tolist() == [2]
