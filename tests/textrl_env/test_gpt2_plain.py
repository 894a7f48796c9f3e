"""The plain-tensor GPT-2 passes (decode step, packed teacher-forced pass): the model's own numbers,
and the model's forward wherever they would differ."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel

import textrl_env.gpt2_plain as gpt2_plain
from tests.conftest import BOS, EOS, PAD, build_char_tokenizer, build_tiny_lm
from tests.textrl_env.test_text_env import PROMPTS, length_reward
from tests.textrl_env.test_vector_env import build_tiny_llama, random_actions
from textrl_env import TextGenerationVectorEnv, shared_prefix
from textrl_env.gpt2_plain import GPT2DecodeStep, plain_gpt2
from textrl_env.logprobs import sequence_logprobs, teacher_forced


def two_layer_gpt2(dropout: float = 0.0) -> GPT2LMHeadModel:
    """Two layers, so the cache's layer index matters; scaled by inverse layer index, a config option."""
    torch.manual_seed(1)
    config = GPT2Config(
        vocab_size=46, n_layer=2, n_head=4, n_embd=32, n_positions=64, bos_token_id=BOS,
        eos_token_id=EOS, pad_token_id=PAD, scale_attn_by_inverse_layer_idx=True,
        resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout,
    )  # fmt: skip
    return GPT2LMHeadModel(config).eval()


def vector_env(policy: torch.nn.Module, fast: bool, **kwargs) -> TextGenerationVectorEnv:  # noqa: ANN003
    vec = TextGenerationVectorEnv(policy, build_char_tokenizer(), PROMPTS + ["a", "bb"], length_reward,
                                  num_envs=5, max_new_tokens=7, **kwargs)  # fmt: skip
    if not fast:  # as if its first step had disagreed with the model: the model's forward throughout
        vec._decoder._fast_ok = False
    return vec


def counting(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    calls: list[int] = []
    original = GPT2DecodeStep.__call__

    def call(self: GPT2DecodeStep, *args, **kwargs) -> torch.Tensor:  # noqa: ANN002, ANN003
        calls.append(1)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(GPT2DecodeStep, "__call__", call)
    return calls


@pytest.mark.parametrize("autoreset_mode", ["NextStep", "Disabled"])
def test_a_rollout_is_the_same_with_the_model_forward(
    autoreset_mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Autoresets, dropped ended rows (Disabled) and cache compaction, step by step against the model."""
    calls = counting(monkeypatch)
    policy = two_layer_gpt2()
    fast, slow = (vector_env(policy, f, autoreset_mode=autoreset_mode) for f in (True, False))
    rng = np.random.default_rng(0)
    for episode in range(3):
        o1, _ = fast.reset(seed=episode)
        o2, _ = slow.reset(seed=episode)
        for step in range(40):
            torch.testing.assert_close(fast.next_token_logits, slow.next_token_logits, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(o1["input_ids"], o2["input_ids"])
            actions = torch.as_tensor(random_actions(rng, 5, 46, eos_prob=0.15))
            o1, r1, te1, tr1, _ = fast.step(actions)
            o2, r2, te2, tr2, _ = slow.step(actions)
            torch.testing.assert_close(r1, r2, atol=1e-5, rtol=1e-5)
            assert te1.tolist() == te2.tolist() and tr1.tolist() == tr2.tolist(), step
            if autoreset_mode == "Disabled" and bool((te1 | tr1).all()):
                break
    assert fast._decoder._fast is not None and slow._decoder._fast is None
    assert fast._decoder._prefill_ok is True  # the prompts' pass was the plain one too
    assert len(calls) > 10  # the fast env decoded with it


def test_a_forward_hook_keeps_the_model_forward_until_it_is_removed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting(monkeypatch)
    policy = build_tiny_lm()
    seen: list[int] = []
    handle = policy.transformer.h[0].register_forward_hook(lambda *_: seen.append(1))
    vec = vector_env(policy, fast=True)
    vec.reset(seed=0)
    for _ in range(3):
        vec.step(torch.full((5,), 7))
    assert len(seen) >= 1 + 3 and not calls  # the prefill and every decode step ran the hooked model
    handle.remove()
    before = len(seen)
    vec.reset(seed=0)
    vec.step(torch.full((5,), 7))
    assert len(seen) == before and calls  # checked once, then the plain step


def test_dropout_in_training_mode_keeps_the_model_forward(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = counting(monkeypatch)
    policy = two_layer_gpt2(dropout=0.1)
    vec = vector_env(policy, fast=True)
    policy.train()  # the env sets eval mode; an agent's update may leave training mode on
    vec.reset(seed=0)
    vec.step(torch.full((5,), 7))
    assert not calls  # dropout would make the model's forward random: only it can say what it gives
    policy.eval()
    vec.step(torch.full((5,), 7))
    assert calls


def test_a_prefill_whose_keys_disagree_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """The prompts' logits can agree while a cached key does not: the keys are checked too."""
    original = gpt2_plain.prompt_pass

    def wrong_keys(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        last, layers = original(*args, **kwargs)
        return last, [(keys + 1.0, values) for keys, values in layers]

    monkeypatch.setattr(gpt2_plain, "prompt_pass", wrong_keys)
    policy = build_tiny_lm()
    fast, slow = vector_env(policy, fast=True), vector_env(policy, fast=False)
    fast.reset(seed=0)
    slow.reset(seed=0)
    assert fast._decoder._prefill_ok is False
    for _ in range(3):
        fast.step(torch.full((5,), 7))
        slow.step(torch.full((5,), 7))
        torch.testing.assert_close(fast.next_token_logits, slow.next_token_logits, atol=1e-5, rtol=1e-5)


def test_a_step_that_disagrees_with_the_model_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    """A model variant the step does not know: its first decode step's check falls back for good."""
    monkeypatch.setattr(gpt2_plain, "_layer_norm", lambda norm, x: x)  # not what the model computes
    policy = build_tiny_lm()
    vec = vector_env(policy, fast=True)
    obs, _ = vec.reset(seed=0)
    obs, *_ = vec.step(torch.full((5,), 7))
    assert vec._decoder._fast_ok is False and vec._decoder._prefill_ok is False
    mask = obs["attention_mask"]
    with torch.no_grad():
        logits = policy(input_ids=obs["input_ids"], attention_mask=mask,
                        position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits  # fmt: skip
    torch.testing.assert_close(vec.next_token_logits, logits[:, vec.prompt_length], atol=1e-4, rtol=1e-4)


def test_only_a_plain_gpt2_qualifies() -> None:
    from peft import LoraConfig, get_peft_model

    assert plain_gpt2(build_tiny_lm())
    assert not plain_gpt2(build_tiny_llama())
    lora = get_peft_model(build_tiny_lm(), LoraConfig(r=2, target_modules=["c_attn"], fan_in_fan_out=True))
    assert not plain_gpt2(lora)  # the wrapper
    assert not plain_gpt2(lora.get_base_model())  # adapters replaced its c_attn modules
    torch.manual_seed(0)
    small = {"vocab_size": 46, "n_layer": 1, "n_head": 2, "n_embd": 32}
    assert not plain_gpt2(GPT2LMHeadModel(GPT2Config(**small, add_cross_attention=True)))
    upcast = GPT2LMHeadModel(GPT2Config(**small, reorder_and_upcast_attn=True))
    upcast.set_attn_implementation("eager")
    assert not plain_gpt2(upcast)  # eager attention then rounds its own way


def test_adapters_injected_after_the_env_is_built_are_decoded_with() -> None:
    """The documented LoRA path wraps ``env.model`` after the env exists: the next reset sees it."""
    from peft import LoraConfig, get_peft_model

    policy = build_tiny_lm()
    vec = vector_env(policy, fast=True)
    vec.reset(seed=0)
    vec.step(torch.full((5,), 7))
    assert vec._decoder._fast_ok  # plain so far
    lora = get_peft_model(policy, LoraConfig(r=2, target_modules=["c_attn"], fan_in_fan_out=True))
    with torch.no_grad():  # lora_B starts at zero: make the adapters change the logits
        for name, parameter in lora.named_parameters():
            if "lora_B" in name:
                parameter.normal_()
    obs, _ = vec.reset(seed=1)
    for _ in range(2):
        obs, *_ = vec.step(torch.full((5,), 7))
    mask = obs["attention_mask"]
    with torch.no_grad():
        logits = lora(input_ids=obs["input_ids"], attention_mask=mask,
                      position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits  # fmt: skip
    torch.testing.assert_close(vec.next_token_logits, logits[:, vec.prompt_length + 1], atol=1e-4, rtol=1e-4)


def test_a_backward_hook_keeps_the_model_forward() -> None:
    policy = build_tiny_lm()
    handle = policy.transformer.h[0].register_full_backward_hook(lambda *_: None)
    assert not gpt2_plain.unhooked(policy)
    handle.remove()
    assert gpt2_plain.unhooked(policy)


def k_sample_batch(k: int = 4) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Two left-padded prompts x k samples, responses of 1..6 tokens (an EOS-ended run each)."""
    torch.manual_seed(2)
    prompts = torch.tensor([[0, 0, 7, 8, 9, 10], [11, 12, 13, 14, 15, 16]])
    prompt_mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1]])
    ids = torch.cat([prompts.repeat_interleave(k, 0), torch.randint(2, 40, (2 * k, 6))], 1)
    lengths = torch.tensor([1, 6, 3, 2, 6, 4, 5, 1])[: 2 * k]
    response_mask = (torch.arange(6).unsqueeze(0) < lengths.unsqueeze(1)).long()
    return ids, torch.cat([prompt_mask.repeat_interleave(k, 0), response_mask], 1), 6


def log_probs_and_grads(
    lm: torch.nn.Module, ids: torch.Tensor, mask: torch.Tensor, start: int
) -> list[torch.Tensor]:
    lm.zero_grad()
    logprobs, entropy = sequence_logprobs(lm, ids, mask, start, 0.7, return_entropy=True, vocab_size=40)
    (logprobs.sum() + 0.1 * entropy.sum()).backward()
    return [logprobs.detach(), entropy.detach(), *(p.grad.clone() for p in lm.parameters())]


def test_the_packed_pass_gives_transformers_log_probs_and_gradients(monkeypatch: pytest.MonkeyPatch) -> None:
    lm = two_layer_gpt2()
    ids, mask, start = k_sample_batch()
    assert teacher_forced(lm, ids, mask, start).flat is not None  # packed: real tokens only
    packed = log_probs_and_grads(lm, ids, mask, start)
    monkeypatch.setattr(shared_prefix, "PACKED", False)
    assert teacher_forced(lm, ids, mask, start).flat is None
    reference = log_probs_and_grads(lm, ids, mask, start)
    for got, want in zip(packed, reference, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert packed[0][mask[:, start:] == 0].eq(0).all() and packed[2].abs().max() > 0.1


def test_the_packed_pass_is_skipped_where_it_would_differ(monkeypatch: pytest.MonkeyPatch) -> None:
    lm = two_layer_gpt2()
    ids, mask, start = k_sample_batch()
    holed = mask.clone()
    holed[1, start + 2] = 0  # a hole inside a response
    assert teacher_forced(lm, ids, holed, start).flat is None
    # Hidden states: the model's forward (which also installs transformers' output-capturing hooks
    # for good; those do not count as hooks, see the last line).
    assert teacher_forced(lm, ids, mask, start, hidden=True).flat is None
    assert teacher_forced(build_tiny_llama(), ids, mask, start).flat is None
    handle = lm.transformer.h[1].register_forward_pre_hook(lambda *_: None)
    assert teacher_forced(lm, ids, mask, start).flat is None
    handle.remove()
    assert teacher_forced(lm, ids, mask, start).flat is not None


def test_a_packed_pass_that_disagrees_with_the_model_is_dropped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(gpt2_plain, "_layer_norm", lambda norm, x: x)  # not what the model computes
    lm = two_layer_gpt2()
    ids, mask, start = k_sample_batch()
    got = sequence_logprobs(lm, ids, mask, start)
    assert shared_prefix._packed_ok[lm] is False and teacher_forced(lm, ids, mask, start).flat is None
    monkeypatch.setattr(shared_prefix, "SHARED_PREFIX", False)
    torch.testing.assert_close(got, sequence_logprobs(lm, ids, mask, start), rtol=1e-5, atol=1e-5)
