"""Registration of the built-in ``textrl/...`` ids with Gymnasium."""

from __future__ import annotations

import gymnasium as gym

# id -> (entry point, native vector entry point)
BUILTIN_ENVS: dict[str, tuple[str, str]] = {
    "textrl/TextGeneration-v0": (
        "textrl_env.text_env:TextGenerationEnv",
        "textrl_env.vector_env:TextGenerationVectorEnv",
    ),
    "textrl/Sentiment-v0": (
        "textrl_env.tasks.sentiment:SentimentEnv",
        "textrl_env.tasks.sentiment:SentimentVectorEnv",
    ),
    "textrl/Arithmetic-v0": (
        "textrl_env.tasks.arithmetic:ArithmeticEnv",
        "textrl_env.tasks.arithmetic:ArithmeticVectorEnv",
    ),
    "textrl/Preference-v0": (
        "textrl_env.tasks.preference:PreferenceEnv",
        "textrl_env.tasks.preference:PreferenceVectorEnv",
    ),
}


def register_envs() -> None:
    """Register every built-in id (idempotent, so re-importing ``textrl_env`` is harmless)."""
    for env_id, (entry_point, vector_entry_point) in BUILTIN_ENVS.items():
        if env_id in gym.registry:
            continue
        # No max_episode_steps: the env truncates itself at max_new_tokens, which callers may change.
        gym.register(
            id=env_id,
            entry_point=entry_point,
            vector_entry_point=vector_entry_point,
            disable_env_checker=False,
        )
