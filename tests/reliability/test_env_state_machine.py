"""A stateful Hypothesis test: arbitrary interleavings of reset and step on the single and the native vector env.

The machine drives ``SyncVectorEnv`` of single envs and the native vector env side by side with
the same resets (with and without seeds, with and without a prompt option, full and partial) and
the same actions, and after every call checks the invariants: native == sync, shapes and dtypes,
masks (prompt left-padded, response a contiguous run), termination exactly on EOS, truncation at
the length limit, NEXT_STEP autoreset (a row that ended restarts on the next step with reward 0),
the return ``score - kl_coef * sum(kl)``, and that a seed determines the first observation.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.conftest import EOS, build_char_tokenizer, build_tiny_lm
from tests.textrl_env.test_text_env import length_reward, perturbed
from tests.textrl_env.test_vector_env import assert_same_step
from textrl_env import TextGenerationEnv, TextGenerationVectorEnv

N, T, KL_COEF = 3, 4, 0.1
PROMPTS = ["hello", "abc", "the cat sat", "x"]
NEW_PROMPT = "zz top"  # not among the env's prompts: tokenized at reset time
POLICY = build_tiny_lm()
KWARGS: dict[str, Any] = dict(
    tokenizer=build_char_tokenizer(), prompts=PROMPTS, reward_model=length_reward, max_new_tokens=T,
    kl_coef=KL_COEF, ref_model=perturbed(POLICY), max_prompt_tokens=12,
)  # fmt: skip
ACTIONS = st.lists(st.sampled_from([EOS, 3, 4, 5, 17, 30]), min_size=N, max_size=N)


class EnvMachine(RuleBasedStateMachine):
    """Native vector env vs SyncVectorEnv of single envs under arbitrary resets and steps."""

    @initialize(seed=st.integers(0, 3))
    def build(self, seed: int) -> None:
        self.sync = gym.vector.SyncVectorEnv([lambda: TextGenerationEnv(POLICY, **KWARGS) for _ in range(N)])
        self.native = TextGenerationVectorEnv(POLICY, num_envs=N, **KWARGS)
        self.started = False
        self.ended_last = np.zeros(N, dtype=bool)
        self.first_obs: dict[tuple[int, str | None], np.ndarray] = {}
        self.obs: Any = None
        # Unseeded envs draw from fresh entropy, so native and sync agree only once both are seeded;
        # later resets without a seed go on from these seeded streams (both sides alike).
        self.reset(seed=seed, prompt=None)

    @rule(seed=st.none() | st.integers(0, 3), prompt=st.none() | st.sampled_from([*PROMPTS, NEW_PROMPT]))
    def reset(self, seed: int | None, prompt: str | None) -> None:
        options = None if prompt is None else {"prompt": prompt}
        o_sync, _ = self.sync.reset(seed=seed, options=options)
        o_native, info = self.native.reset(seed=seed, options=options)
        np.testing.assert_array_equal(o_sync["input_ids"], o_native["input_ids"].numpy())
        np.testing.assert_array_equal(o_sync["attention_mask"], o_native["attention_mask"].numpy())
        if prompt is not None:
            assert list(info["prompt"]) == [prompt] * N
        if seed is not None:  # a seed (and the prompt option) determine the first observation
            key = (seed, prompt)
            ids = o_native["input_ids"].numpy()
            if key in self.first_obs:
                np.testing.assert_array_equal(self.first_obs[key], ids)
            self.first_obs[key] = ids
        self.started, self.ended_last, self.obs = True, np.zeros(N, dtype=bool), o_native

    @precondition(lambda self: self.started)
    @rule(actions=ACTIONS)
    def step(self, actions: list[int]) -> None:
        a = np.asarray(actions)
        out_sync = self.sync.step(a)
        out_native = self.native.step(torch.as_tensor(a))
        assert_same_step(out_sync, out_native, step=-1)
        obs, rewards, terminated, truncated, info = out_native
        restarted = self.ended_last
        # Autoreset (NEXT_STEP): a row that ended last step ignores its action and restarts.
        assert not (terminated[restarted].any() or truncated[restarted].any())
        assert (rewards[restarted] == 0).all()
        active = ~restarted
        assert torch.equal(terminated[active], torch.as_tensor(a[active] == EOS))
        ended = (terminated | truncated).numpy()
        assert not (terminated & truncated).any()
        if ended.any():
            assert info["_score"].tolist() == ended.tolist()
            expected = info["score"] - KL_COEF * info["kl"].sum(-1)
            torch.testing.assert_close(rewards[ended], expected[ended], atol=1e-5, rtol=1e-5)
            assert (rewards[~ended] == 0).all()
            lengths = info["response_mask"].sum(-1)
            assert (lengths[torch.as_tensor(truncated)] == T).all()
        else:
            assert (rewards == 0).all() and "_score" not in info
        self.ended_last, self.obs = ended, obs

    @precondition(lambda self: self.started)
    @rule(reset_ended=st.booleans())
    def partial_reset(self, reset_ended: bool) -> None:
        """Reset only some rows (Gymnasium's options['reset_mask']) in both envs."""
        mask = self.ended_last.copy() if reset_ended else np.array([True] + [False] * (N - 1))
        if not mask.any():
            return
        o_sync, _ = self.sync.reset(options={"reset_mask": mask})
        o_native, _ = self.native.reset(options={"reset_mask": mask})
        np.testing.assert_array_equal(o_sync["input_ids"], o_native["input_ids"].numpy())
        self.ended_last = self.ended_last & ~mask
        self.obs = o_native

    @invariant()
    def observations_are_well_formed(self) -> None:
        if self.obs is None:
            return
        ids, mask = self.obs["input_ids"], self.obs["attention_mask"]
        assert ids.dtype == torch.int64 and mask.dtype == torch.int64
        assert tuple(ids.shape) == tuple(mask.shape) == (N, self.native.prompt_length + T)
        assert set(mask.unique().tolist()) <= {0, 1}
        assert int(ids.min()) >= 0 and int(ids.max()) < self.native.single_action_space.n
        p = self.native.prompt_length
        prompt, response = mask[:, :p], mask[:, p:]
        # Left padding: once a prompt starts it runs to the window's end.
        assert (prompt[:, 1:] >= prompt[:, :-1]).all()
        # The response is one run from its first slot: no 1 after a 0.
        assert (response[:, 1:] <= response[:, :-1]).all()
        assert (ids[mask == 0] == self.native.pad_token_id).all()


EnvMachine.TestCase.settings = settings(
    max_examples=20, stateful_step_count=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestEnvStateMachine = EnvMachine.TestCase
