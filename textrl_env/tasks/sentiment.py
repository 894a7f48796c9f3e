"""``textrl/Sentiment-v0``: continue a movie-review opener; the reward is its VADER sentiment."""

from __future__ import annotations

from typing import Any

from textrl_env.text_env import TextGenerationEnv
from textrl_env.vector_env import TextGenerationVectorEnv


def review_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """Defaults the review-opener tasks (Sentiment-v0, Preference-v0) share, all but the reward; the caller wins."""
    from textrl_env.default_model import DEFAULT_MODEL_PATH, SENTIMENT_PROMPTS

    # A fixed 16-token prompt window, so longer openers than the built-in ones (held-out
    # evaluation prompts, a user's own) fit without rebuilding the env.
    defaults: dict[str, Any] = {"kl_coef": 0.05, "max_new_tokens": 16, "max_prompt_tokens": 16}
    merged = defaults | kwargs
    merged.setdefault("model", DEFAULT_MODEL_PATH)
    if merged.get("prompts") is None:
        merged["prompts"] = list(SENTIMENT_PROMPTS)
    return merged


def sentiment_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The task's defaults, overridden by whatever the caller passed."""
    from reward_models import SentimentReward

    merged = review_kwargs(kwargs)
    if merged.get("reward_model") is None:
        merged["reward_model"] = SentimentReward()
    return merged


class SentimentEnv(TextGenerationEnv):
    """Continue a movie-review opener so that the review reads as positive.

    ## Description
    The prompt is the opening of a movie review ("the movie was", "i thought the acting", ...);
    the policy writes the rest of the sentence. The embedded default model was trained on reviews
    that are as often negative as positive, so its mean sentiment starts near 0.

    ## Action Space
    ``Discrete(vocab_size)``: the next token.

    ## Observation Space
    ``Dict(input_ids, attention_mask)``, integer arrays of length prompt window + ``max_new_tokens``
    (see :class:`textrl_env.TextGenerationEnv`).

    ## Rewards
    On the last step: the VADER compound sentiment of the completion (in [-1, 1]; a lexicon of
    words rated by human annotators, from the ``vadersentiment`` package) minus
    ``kl_coef * sum(KL)`` to the reference model. 0 on other steps.

    ## Starting State
    A review opener drawn with the env's seeded RNG (or ``options={"prompt": ...}``).

    ## Episode End
    Terminated on EOS; truncated after ``max_new_tokens`` (16) tokens.

    ## Arguments
    Those of :class:`textrl_env.TextGenerationEnv`, all optional here: ``model`` defaults to the
    embedded default model, ``prompts`` to the built-in review openers, ``reward_model`` to
    ``reward_models.SentimentReward()``, ``kl_coef`` 0.05, ``max_new_tokens`` 16,
    ``max_prompt_tokens`` 16.

    ## Version History
    - v0: initial version.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**sentiment_kwargs(kwargs))


class SentimentVectorEnv(TextGenerationVectorEnv):
    """``num_envs`` :class:`SentimentEnv` episodes as one batch on the model's device.

    The native vector twin of :class:`SentimentEnv` (same arguments plus ``num_envs``); see
    :class:`textrl_env.TextGenerationVectorEnv` for the batched observation, info and autoreset rules.
    """

    def __init__(self, num_envs: int = 8, **kwargs: Any) -> None:
        super().__init__(num_envs=num_envs, **sentiment_kwargs(kwargs))
