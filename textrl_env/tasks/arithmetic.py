"""``textrl/Arithmetic-v0``: answer ``a+b=``; a verifiable reward (exact match)."""

from __future__ import annotations

from typing import Any

from textrl_env.text_env import TextGenerationEnv
from textrl_env.vector_env import TextGenerationVectorEnv


def arithmetic_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The task's defaults, overridden by whatever the caller passed."""
    from reward_models import ExactMatchReward
    from textrl_env.default_model import DEFAULT_MODEL_PATH, arithmetic_answer, arithmetic_prompts

    merged: dict[str, Any] = {"kl_coef": 0.01, "max_new_tokens": 4, "max_prompt_tokens": 8} | kwargs
    partial_credit = bool(merged.pop("partial_credit", False))
    num_prompts = int(merged.pop("num_prompts", 256))
    merged.setdefault("model", DEFAULT_MODEL_PATH)
    if merged.get("prompts") is None:
        merged["prompts"] = arithmetic_prompts(num_prompts, seed=0)
    if merged.get("reward_model") is None:
        merged["reward_model"] = ExactMatchReward(answers=arithmetic_answer, partial_credit=partial_credit)
    return merged


class ArithmeticEnv(TextGenerationEnv):
    """Answer an addition question written as ``a+b=``.

    ## Description
    The prompt is an addition such as ``12+7=``; the policy writes the answer and then EOS.
    The reward is verifiable: it is checked against the true sum, no reward model involved.

    ## Action Space
    ``Discrete(vocab_size)``: the next token.

    ## Observation Space
    ``Dict(input_ids, attention_mask)``, integer arrays of length prompt window + ``max_new_tokens``
    (see :class:`textrl_env.TextGenerationEnv`).

    ## Rewards
    On the last step: 1.0 when the completion's answer equals ``a+b`` exactly, else 0.0 (with
    ``partial_credit=True``, partial scores for near answers, see
    ``reward_models.ExactMatchReward``), minus ``kl_coef * sum(KL)``. 0 on other steps.

    ## Starting State
    A question drawn with the env's seeded RNG (or ``options={"prompt": "3+4="}``).

    ## Episode End
    Terminated on EOS; truncated after ``max_new_tokens`` (4) tokens.

    ## Arguments
    Those of :class:`textrl_env.TextGenerationEnv`, all optional here (default model, 256
    generated questions, ``kl_coef`` 0.01, ``max_new_tokens`` 4, ``max_prompt_tokens`` 8), plus
    ``partial_credit`` (False)
    and ``num_prompts`` (256).

    ## Version History
    - v0: initial version.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**arithmetic_kwargs(kwargs))


class ArithmeticVectorEnv(TextGenerationVectorEnv):
    """``num_envs`` :class:`ArithmeticEnv` episodes as one batch on the model's device."""

    def __init__(self, num_envs: int = 8, **kwargs: Any) -> None:
        super().__init__(num_envs=num_envs, **arithmetic_kwargs(kwargs))
