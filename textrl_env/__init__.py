"""textrl environments: a language model emits one token per step; a reward model scores the text.

Importing the package registers the ``textrl/...`` ids with Gymnasium::

    import gymnasium as gym
    import textrl_env

    env = gym.make("textrl/Sentiment-v0")
    envs = gym.make_vec("textrl/Sentiment-v0", num_envs=16, vectorization_mode="vector_entry_point")
"""

from textrl_env.registration import BUILTIN_ENVS, register_envs
from textrl_env.text_env import TextGenerationEnv
from textrl_env.vector_env import TextGenerationVectorEnv

register_envs()

__all__ = ["BUILTIN_ENVS", "TextGenerationEnv", "TextGenerationVectorEnv", "register_envs"]
