"""The native vector env against SyncVectorEnv of single envs: same observations, rewards, ends."""

from __future__ import annotations

from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
import torch

from tests.conftest import EOS, build_char_tokenizer, build_tiny_lm
from tests.textrl_env.test_text_env import PROMPTS, length_reward, perturbed
from textrl_env import TextGenerationEnv, TextGenerationVectorEnv


def random_actions(rng: np.random.Generator, n: int, vocab: int, eos_prob: float) -> np.ndarray:
    actions = rng.integers(3, vocab, size=n)
    actions[rng.random(n) < eos_prob] = EOS
    return actions


def assert_same_step(sync_out: tuple, vec_out: tuple, step: int) -> None:
    (o1, r1, te1, tr1, i1), (o2, r2, te2, tr2, i2) = sync_out, vec_out
    for key in ("input_ids", "attention_mask"):
        np.testing.assert_array_equal(o1[key], o2[key].cpu().numpy(), err_msg=f"{key} at step {step}")
    np.testing.assert_array_equal(te1, te2.cpu().numpy(), err_msg=f"terminated at step {step}")
    np.testing.assert_array_equal(tr1, tr2.cpu().numpy(), err_msg=f"truncated at step {step}")
    np.testing.assert_allclose(r1, r2.cpu().numpy(), atol=1e-4, err_msg=f"rewards at step {step}")
    if "_score" in i1:
        ended = i1["_score"]
        np.testing.assert_array_equal(ended, i2["_score"])
        np.testing.assert_allclose(i1["score"][ended], i2["score"].cpu().numpy()[ended], atol=1e-6)
        np.testing.assert_allclose(np.stack(i1["kl"][ended]), i2["kl"].cpu().numpy()[ended], atol=1e-4)
        assert list(i1["completion"][ended]) == list(i2["completion"][ended])
    else:
        assert "_score" not in i2


def build_tiny_llama(vocab_size: int = 46) -> torch.nn.Module:
    """A two-layer Llama (rotary positions, grouped-query attention): another cache and mask path."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from tests.conftest import BOS, PAD

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
        pad_token_id=PAD, eos_token_id=EOS, bos_token_id=BOS,
    )  # fmt: skip
    return LlamaForCausalLM(config).eval()


@pytest.mark.parametrize(
    ("estimator", "build"), [("k1", build_tiny_lm), ("k3", build_tiny_lm), ("k1", build_tiny_llama)]
)
def test_matches_sync_vector_env(estimator: str, build: Callable[[], torch.nn.Module]) -> None:
    policy = build()
    kwargs = dict(
        tokenizer=build_char_tokenizer(), prompts=PROMPTS + ["a", "bb"], reward_model=length_reward,
        max_new_tokens=5, kl_coef=0.1, kl_estimator=estimator, ref_model=perturbed(policy), temperature=0.7,
    )  # fmt: skip
    n = 6
    sync = gym.vector.SyncVectorEnv([lambda: TextGenerationEnv(policy, **kwargs) for _ in range(n)])
    vec = TextGenerationVectorEnv(policy, num_envs=n, **kwargs)
    o1, _ = sync.reset(seed=7)
    o2, _ = vec.reset(seed=7)
    np.testing.assert_array_equal(o1["input_ids"], o2["input_ids"].numpy())
    rng = np.random.default_rng(0)
    ended = 0
    for step in range(120):  # long enough for many autoresets and for the cache to be compacted
        actions = random_actions(rng, n, 46, eos_prob=0.2)
        out_sync = sync.step(actions)
        out_vec = vec.step(torch.as_tensor(actions))
        assert_same_step(out_sync, out_vec, step)
        ended += int(out_sync[2].sum() + out_sync[3].sum())
    assert ended > 50


def test_restarted_rows_ignore_their_action() -> None:
    vec = TextGenerationVectorEnv(build_tiny_lm(), build_char_tokenizer(), PROMPTS, length_reward, num_envs=2,
                                  max_new_tokens=4)  # fmt: skip
    vec.reset(seed=0)
    _, _, terminated, _, info = vec.step(torch.tensor([EOS, 5]))
    assert terminated.tolist() == [True, False] and info["_score"].tolist() == [True, False]
    obs, rewards, terminated, truncated, _ = vec.step(
        torch.tensor([10_000, 5])
    )  # row 0 restarts: action ignored
    assert rewards[0] == 0 and not terminated[0] and not truncated[0]
    assert obs["attention_mask"][0, vec.prompt_length :].sum() == 0


@pytest.mark.parametrize("fast", [True, False], ids=["gpt2-decode-step", "model-forward"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_next_token_logits_match_a_full_forward(attention: str, fast: bool) -> None:
    policy = build_tiny_lm()
    policy.set_attn_implementation(attention)
    vec = TextGenerationVectorEnv(policy, build_char_tokenizer(), PROMPTS, length_reward, num_envs=3,
                                  max_new_tokens=6)  # fmt: skip
    if not fast:  # what any model that is not a plain GPT-2 gets: the model's own forward
        vec._decoder._fast_ok = False
    obs, _ = vec.reset(seed=0)
    for token in (5, 9):
        obs, *_ = vec.step(torch.full((3,), token))
    if fast:  # textrl_env.gpt2_plain's step gave the model's logits on its first step, so it stays on
        assert vec._decoder._fast is not None and vec._decoder._fast_ok
    else:  # SDPA reads a ready boolean 4D mask as the 2D one; eager attention adds masks, so it keeps 2D.
        assert vec._decoder._mask_4d is (attention == "sdpa")
    mask = obs["attention_mask"]
    with torch.no_grad():
        logits = policy(input_ids=obs["input_ids"], attention_mask=mask,
                        position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits  # fmt: skip
    last = vec.prompt_length + 1
    torch.testing.assert_close(vec.next_token_logits, logits[:, last], atol=1e-4, rtol=1e-4)


def test_bad_actions_and_order() -> None:
    vec = TextGenerationVectorEnv(build_tiny_lm(), build_char_tokenizer(), PROMPTS, length_reward, num_envs=2)
    with pytest.raises(RuntimeError, match="before reset"):
        vec.step(torch.tensor([5, 5]))
    vec.reset(seed=0)
    with pytest.raises(ValueError, match=r"action 46 for row 1 is not a token id"):
        vec.step(torch.tensor([5, 46]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        vec.step(torch.tensor([5, 5, 5]))
    with pytest.raises(ValueError, match="integer token ids"):
        vec.step(torch.tensor([0.5, 1.0]))
    with pytest.raises(ValueError, match="num_envs must be an int >= 1"):
        TextGenerationVectorEnv(build_tiny_lm(), build_char_tokenizer(), PROMPTS, length_reward, num_envs=0)


def test_declares_next_step_autoreset() -> None:
    vec = TextGenerationVectorEnv(build_tiny_lm(), build_char_tokenizer(), PROMPTS, length_reward, num_envs=2)
    assert vec.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    assert vec.single_action_space.n == 46


def test_external_policy_logits_are_used_and_required() -> None:
    policy = build_tiny_lm()
    kwargs = dict(num_envs=2, max_new_tokens=3, logits_source="policy")
    vec = TextGenerationVectorEnv(policy, build_char_tokenizer(), PROMPTS, length_reward, **kwargs)
    vec.reset(seed=0)
    with pytest.raises(RuntimeError, match=r"set_policy_logits\(logits\) before every step"):
        vec.step(torch.tensor([5, 5]))
    with pytest.raises(ValueError, match=r"shape \(2, 46\)"):
        vec.set_policy_logits(torch.zeros(2, 10))
    uniform = torch.zeros(2, 46)  # a policy that is uniform over the vocabulary
    for _ in range(3):
        vec.set_policy_logits(uniform)
        _, _, _, truncated, info = vec.step(torch.tensor([5, 6]))
    assert truncated.all()
    torch.testing.assert_close(info["logprobs"], torch.full((2, 3), -np.log(46.0)))


def test_restart_with_a_prompt_longer_than_the_cache() -> None:
    """Short prompts first (a 1-slot cache), then a row restarts with a long one: still exact."""
    policy = build_tiny_lm()
    kwargs = dict(tokenizer=build_char_tokenizer(), prompts=["the movie was long"], reward_model=length_reward,
                  max_new_tokens=3, ref_model=perturbed(policy), kl_coef=0.5)  # fmt: skip
    vec = TextGenerationVectorEnv(policy, num_envs=2, **kwargs)
    single = TextGenerationEnv(policy, **kwargs)
    vec.reset(options={"prompt": ["a", "a"]})  # the cache is 1 slot wide
    _, _, terminated, _, _ = vec.step(torch.tensor([EOS, 5]))
    assert terminated.tolist() == [True, False]
    vec.step(torch.tensor([0, 6]))  # row 0 restarts from the env's only prompt, the long one
    assert vec._row_prompts[0] == "the movie was long"
    single.reset(options={"prompt": "the movie was long"})
    for token in (7, 8, 9):
        _, r_single, _, truncated_single, info_single = single.step(token)
        _, r_vec, _, truncated_vec, info_vec = vec.step(torch.tensor([token, 5]))
    assert truncated_single and bool(truncated_vec[0])
    assert float(r_vec[0]) == pytest.approx(r_single, abs=1e-5)
    np.testing.assert_allclose(info_vec["logprobs"][0].numpy(), info_single["logprobs"], atol=1e-5)


def test_disabled_autoreset_keeps_ended_rows_and_resets_by_mask() -> None:
    kwargs = dict(
        tokenizer=build_char_tokenizer(), prompts=PROMPTS, reward_model=length_reward, max_new_tokens=3
    )
    off = TextGenerationVectorEnv(build_tiny_lm(), num_envs=3, autoreset_mode="Disabled", **kwargs)
    assert off.metadata["autoreset_mode"] == gym.vector.AutoresetMode.DISABLED
    assert TextGenerationVectorEnv.metadata["autoreset_mode"] == gym.vector.AutoresetMode.NEXT_STEP
    off.reset(seed=1)
    _, _, terminated, _, info = off.step(torch.tensor([EOS, 5, 6]))
    assert terminated.tolist() == [True, False, False] and info["_score"].tolist() == [True, False, False]
    ended = off._obs()
    obs, rewards, terminated, truncated, info = off.step(
        torch.tensor([10_000, 8, EOS])
    )  # row 0's action ignored
    assert rewards[0] == 0 and terminated.tolist() == [False, False, True] and not truncated.any()
    torch.testing.assert_close(obs["input_ids"][0], ended["input_ids"][0])  # row 0 stays as it ended
    _, _, _, truncated, info = off.step(torch.tensor([5, 9, 5]))
    assert truncated.tolist() == [False, True, False] and info["_score"].tolist() == [False, True, False]
    obs, rewards, terminated, truncated, info = off.step(torch.tensor([5, 5, 5]))  # every row has ended
    assert not info and not rewards.any() and not terminated.any() and not truncated.any()
    obs, _ = off.reset(options={"reset_mask": np.array([True, False, False]), "prompt": "bb"})
    assert off._row_prompts[0] == "bb" and obs["attention_mask"][0, off.prompt_length :].sum() == 0
    _, _, terminated, _, info = off.step(torch.tensor([EOS, 5, 5]))
    assert terminated.tolist() == [True, False, False] and info["prompt"][0] == "bb"
    with pytest.raises(ValueError, match="reset_mask"):
        off.reset(options={"reset_mask": np.array([1, 0, 0])})


def test_score_together_scores_every_row_at_the_last_end_as_one_pass_would_each() -> None:
    """Under ``without_autoreset(score_together=True)`` each row reports its end at its own step and
    its reward and info at the step where the last row ends, equal to per-step scoring's."""
    kwargs = dict(
        tokenizer=build_char_tokenizer(), prompts=PROMPTS, reward_model=length_reward, max_new_tokens=4
    )
    actions = [[EOS, 5, 6], [9, 8, EOS], [9, 5, 5], [7, 7, 7]]  # rows end at steps 1, 2 and 4 (truncated)
    per_step = TextGenerationVectorEnv(build_tiny_lm(), num_envs=3, **kwargs)
    together = TextGenerationVectorEnv(build_tiny_lm(), num_envs=3, **kwargs)
    expected: dict[str, torch.Tensor] = {}
    rewards_seen = torch.zeros(3)
    with per_step.without_autoreset():
        per_step.reset(seed=3)
        for action in actions:
            _, rewards, terminated, truncated, info = per_step.step(torch.tensor(action))
            ended = (terminated | truncated).numpy()
            rewards_seen[ended] = rewards[ended]
            for key in ("score", "kl", "ref_logprobs", "logprobs"):
                if ended.any():
                    expected.setdefault(key, torch.zeros_like(info[key]))[ended] = info[key][ended]
    with together.without_autoreset(score_together=True):
        together.reset(seed=3)
        ends = []
        for step, action in enumerate(actions):
            _, rewards, terminated, truncated, info = together.step(torch.tensor(action))
            ends.append((terminated | truncated).tolist())
            if step < len(actions) - 1:
                assert not info and not rewards.any(), f"step {step} scored before the last row ended"
    assert ends == [[True, False, False], [False, False, True], [False, False, False], [False, True, False]]
    assert info["_score"].all()
    torch.testing.assert_close(rewards, rewards_seen, rtol=1e-5, atol=1e-5)
    for key, value in expected.items():
        torch.testing.assert_close(info[key], value, rtol=1e-5, atol=1e-5, msg=key)
    assert not together._score_together  # restored after the block


def test_rows_with_the_same_prompt_share_one_prefill_and_get_its_logits() -> None:
    """Four rows of two prompts: the prefill runs two rows, every row gets its prompt's logits."""
    policy = build_tiny_lm()
    vec = TextGenerationVectorEnv(policy, build_char_tokenizer(), PROMPTS, length_reward, num_envs=4,
                                  max_new_tokens=3)  # fmt: skip
    rows_run = []
    original = policy.forward

    def counting(*args: object, **kwargs: object) -> object:
        rows_run.append(kwargs["input_ids"].shape[0])  # type: ignore[union-attr]
        return original(*args, **kwargs)

    policy.forward = counting  # type: ignore[method-assign]
    obs, _ = vec.reset(options={"prompt": [PROMPTS[0], PROMPTS[1], PROMPTS[0], PROMPTS[1]]})
    assert rows_run == [2]
    policy.forward = original  # type: ignore[method-assign]
    mask = obs["attention_mask"][:, : vec.prompt_length]
    with torch.no_grad():
        logits = policy(input_ids=obs["input_ids"][:, : vec.prompt_length], attention_mask=mask,
                        position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits[:, -1]  # fmt: skip
    torch.testing.assert_close(vec.next_token_logits, logits, atol=1e-4, rtol=1e-4)
    obs, *_ = vec.step(torch.tensor([5, 6, 7, 8]))  # the shared cache rows decode independently
    mask = obs["attention_mask"]
    with torch.no_grad():
        logits = policy(input_ids=obs["input_ids"], attention_mask=mask,
                        position_ids=(mask.cumsum(-1) - 1).clamp(min=0)).logits  # fmt: skip
    torch.testing.assert_close(vec.next_token_logits, logits[:, vec.prompt_length], atol=1e-4, rtol=1e-4)


def test_rows_that_ended_leave_the_decode_batch_without_changing_any_row() -> None:
    """Under DISABLED autoreset the decoder drops ended rows once at most half go on; logits and
    log-probs equal those of a decoder that keeps every row, also after a partial reset brings
    dropped rows back (their slots restored, then prefilled)."""
    kwargs = dict(
        tokenizer=build_char_tokenizer(), prompts=PROMPTS, reward_model=length_reward, max_new_tokens=8,
        num_envs=6, autoreset_mode="Disabled",
    )  # fmt: skip
    keeping = TextGenerationVectorEnv(build_tiny_lm(), **kwargs)
    dropping = TextGenerationVectorEnv(build_tiny_lm(), **kwargs)
    keeping._decoder._should_drop = lambda going_on: False  # type: ignore[method-assign]
    rng = np.random.default_rng(0)
    for env in (keeping, dropping):
        env.reset(seed=5)
    # rows 0-3 end early (EOS at steps 1-2); rows 4-5 run on; then rows 0-2 restart mid-way
    script = [[EOS, 5, 6, 7, 8, 9], [0, EOS, EOS, EOS, 8, 9]] + [
        list(rng.integers(2, 20, 6)) for _ in range(3)
    ]
    held = []
    for step, action in enumerate(script + ["reset"] + [list(rng.integers(2, 20, 6)) for _ in range(4)]):
        if action == "reset":
            for env in (keeping, dropping):
                env.reset(options={"reset_mask": np.array([True, True, True, False, False, False])})
            continue
        outs = [env.step(torch.tensor(action)) for env in (keeping, dropping)]
        held.append(dropping._decoder.cache_mask.shape[0])
        for a, b in zip(outs[0], outs[1], strict=True):
            if isinstance(a, dict):
                for key in a:
                    if isinstance(a[key], torch.Tensor):
                        torch.testing.assert_close(a[key], b[key], atol=1e-5, rtol=1e-5, msg=f"{key} {step}")
            elif isinstance(a, torch.Tensor):
                torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
        going = ~dropping._idle
        torch.testing.assert_close(
            keeping.next_token_logits[torch.as_tensor(going)], dropping.next_token_logits[torch.as_tensor(going)],
            atol=1e-5, rtol=1e-5,
        )  # fmt: skip
    assert min(held) == 2 and max(held) == 6  # it did drop rows (to the two that went on), then restored them


def test_a_partial_reset_of_a_row_waiting_for_its_score_is_refused() -> None:
    vec = TextGenerationVectorEnv(build_tiny_lm(), build_char_tokenizer(), PROMPTS, length_reward, num_envs=3,
                                  max_new_tokens=4)  # fmt: skip
    with vec.without_autoreset(score_together=True):
        vec.reset(seed=0)
        vec.step(torch.tensor([EOS, 5, 6]))  # row 0 ended; scored only when rows 1 and 2 end
        with pytest.raises(RuntimeError, match=r"rows \[0\] ended but are not scored yet"):
            vec.reset(options={"reset_mask": np.array([True, False, False])})
        vec.reset(seed=0)  # a full reset starts a new batch: allowed
