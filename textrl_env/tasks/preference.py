"""``textrl/Preference-v0``: continue a movie-review opener; the reward is a learned Bradley-Terry model.

The shipped reward model (``textrl_env/default_model/reward_model``) was trained by
``python -m textrl_env.default_model.build_reward_model`` on pairs of the default policy's own
completions, ranked by VADER sentiment. So the env runs the RLHF loop offline end to end: the
reward is a learned proxy of a gold scorer, and ``SentimentReward`` can still measure the gold
score an agent reaches (and whether it learnt to exploit the proxy).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from reward_models import LearnedRewardModel
from textrl_env.core import GenerationCore
from textrl_env.default_model import DEFAULT_REWARD_MODEL_PATH
from textrl_env.tasks.sentiment import review_kwargs
from textrl_env.text_env import TextGenerationEnv
from textrl_env.vector_env import TextGenerationVectorEnv

BUILD_COMMAND = "python -m textrl_env.default_model.build_reward_model --out DIR"


def load_reward_model(path: str | os.PathLike[str], device: str | torch.device = "cpu") -> LearnedRewardModel:
    """Load a one-output sequence classifier saved with ``save_pretrained`` as a reward.

    Args:
        path: a local directory (or a hub id, for users with hub access).
        device: where the reward model runs.

    Raises:
        ValueError: nothing loadable at ``path``; the message names it and says how to make one.
    """
    from transformers import AutoConfig

    where = os.fspath(path)
    local = Path(where)
    if local.exists() and not (local / "config.json").is_file():
        raise ValueError(
            f"reward_model_path={where!r} has no config.json, so it is not a saved model; point it at a "
            f"folder written by save_pretrained (train_reward_model(..., output_dir=DIR) or `{BUILD_COMMAND}`)"
        )
    try:
        config = AutoConfig.from_pretrained(where)
    except (OSError, ValueError) as error:  # transformers reports a missing path/id as either
        raise ValueError(
            f"could not load a reward model from reward_model_path={where!r}: it is neither a local folder "
            f"nor a reachable hub id. Build one with `{BUILD_COMMAND}` or train_reward_model(..., "
            f"output_dir=DIR), or omit reward_model_path to use the shipped model ({error})"
        ) from error
    # Texts longer than the position table would index past it; keep their end (where the score is read).
    positions = getattr(config, "max_position_embeddings", None)
    max_length = min(512, positions) if isinstance(positions, int) and positions > 0 else 512
    return LearnedRewardModel(where, device=device, max_length=max_length)


def sample_completions(
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    n_samples: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    seed: int = 0,
    batch_size: int = 64,
) -> tuple[list[str], list[str]]:
    """``n_samples`` sampled ``(prompts, completions)`` of ``model``, cycling over ``prompts``.

    Seeded; the caller's global RNG state is restored afterwards.
    """
    from reward_models.pairs import sample_pairs_of_completions

    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(f"n_samples={n_samples!r} is invalid; expected an int >= 2")
    device = next(model.parameters()).device
    # Two completions per prompt (the pair sampler's shape), so ceil(n / 2) prompt slots.
    slots = [prompts[i % len(prompts)] for i in range(math.ceil(n_samples / 2))]
    out_prompts: list[str] = []
    completions: list[str] = []
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices), torch.no_grad():
        torch.manual_seed(seed)
        for start in range(0, len(slots), batch_size):
            batch = slots[start : start + batch_size]
            first, second = sample_pairs_of_completions(
                model, tokenizer, batch, max_new_tokens, temperature, device
            )
            out_prompts += batch + batch
            completions += first + second
    return out_prompts[:n_samples], completions[:n_samples]


def normalized_reward_model(
    reward_model: Any,
    model: nn.Module,
    tokenizer: Any,
    prompts: Sequence[str],
    n_samples: int,
    max_new_tokens: int,
    temperature: float = 1.0,
    seed: int = 0,
) -> LearnedRewardModel:
    """A copy of ``reward_model`` whose scores of ``model``'s samples have mean 0 and std 1.

    The copy shares the network (no extra memory) but has its own gain and bias, so the caller's
    reward model is left as it was.

    Raises:
        TypeError: ``reward_model`` is not a :class:`~reward_models.LearnedRewardModel`.
    """
    if not isinstance(reward_model, LearnedRewardModel):
        raise TypeError(
            f"normalize=True needs a reward_models.LearnedRewardModel (it fits the gain and bias of one), "
            f"got {type(reward_model).__name__}; pass normalize=False, or wrap your scores yourself"
        )
    copy = LearnedRewardModel(
        reward_model.model,
        reward_model.tokenizer,
        device=reward_model.device,
        batch_size=reward_model.batch_size,
        max_length=reward_model.max_length,
        separator=reward_model.separator,
        append_eos=reward_model.append_eos,
        name=reward_model.name,
    )
    sample_prompts, completions = sample_completions(
        model, tokenizer, prompts, n_samples, max_new_tokens, temperature, seed
    )
    copy.normalize_to(sample_prompts, completions)
    return copy


def _reward_device(merged: dict[str, Any]) -> str | torch.device:
    """Where the env's models will run: ``device`` if given, else a given module's device, else CPU."""
    if merged.get("device") is not None:
        return merged["device"]
    model = merged.get("model")
    if isinstance(model, nn.Module):
        return next(model.parameters()).device
    return "cpu"  # the env loads a model given by id/path onto the CPU too


def preference_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    """The task's defaults, overridden by whatever the caller passed.

    Consumes ``reward_model_path``; ``reward_model`` given directly wins over the default path.
    """
    merged = review_kwargs(kwargs)
    path = merged.pop("reward_model_path", None)
    if merged.get("reward_model") is not None and path is not None:
        raise ValueError(
            f"got both reward_model={merged['reward_model']!r} and reward_model_path={os.fspath(path)!r}; "
            "pass one of them"
        )
    if merged.get("reward_model") is None:
        merged["reward_model"] = load_reward_model(
            path if path is not None else DEFAULT_REWARD_MODEL_PATH, _reward_device(merged)
        )
    return merged


def _check_normalize(normalize: bool, normalize_samples: int) -> None:
    if not isinstance(normalize, bool):
        raise TypeError(f"normalize must be True or False, got {normalize!r}")
    if isinstance(normalize_samples, bool) or not isinstance(normalize_samples, int) or normalize_samples < 2:
        raise ValueError(f"normalize_samples must be an int >= 2, got {normalize_samples!r}")


def _normalize(core: GenerationCore, normalize_samples: int) -> None:
    """``normalize=True``: refit the core's reward model on samples of the core's own policy."""
    core.reward_model = normalized_reward_model(
        core.reward_model, core.model, core.tokenizer, core.prompts,
        normalize_samples, core.max_new_tokens, core.temperature,
    )  # fmt: skip


class PreferenceEnv(TextGenerationEnv):
    """Continue a movie-review opener so that a learned reward model rates it highly.

    ## Description
    The prompt is the opening of a movie review ("the movie was", ...); the policy writes the
    rest of the sentence. The reward is a learned Bradley-Terry reward model, the RLHF setting:
    the shipped one is a small GPT-2 classifier trained on pairs of the default policy's own
    completions, labelled by VADER sentiment (``build_info.json`` next to it records its held-out
    accuracy). It is a proxy: ``reward_models.SentimentReward`` measures the gold score an agent
    really reaches.

    ## Action Space
    ``Discrete(vocab_size)``: the next token.

    ## Observation Space
    ``Dict(input_ids, attention_mask)``, integer arrays of length prompt window + ``max_new_tokens``
    (see :class:`textrl_env.TextGenerationEnv`).

    ## Rewards
    On the last step: the reward model's score of ``prompt + completion`` (read at an appended
    EOS, after its saved gain and bias) minus ``kl_coef * sum(KL)`` to the reference model; 0 on
    other steps. The shipped model's gain and bias were fitted so that the default policy's samples
    on the built-in openers score mean 0 and std 1; ``normalize=True`` refits them at construction
    on ``normalize_samples`` samples of the env's own policy (use it with another policy or reward
    model). Unbounded, unlike VADER.

    ## Starting State
    A review opener drawn with the env's seeded RNG (or ``options={"prompt": ...}``).

    ## Episode End
    Terminated on EOS; truncated after ``max_new_tokens`` (16) tokens.

    ## Arguments
    Those of :class:`textrl_env.TextGenerationEnv`, all optional here: ``model`` defaults to the
    embedded default model, ``prompts`` to the built-in review openers, ``kl_coef`` 0.05,
    ``max_new_tokens`` 16, ``max_prompt_tokens`` 16. Plus:

    - ``reward_model_path``: a folder written by ``save_pretrained`` (e.g. by
      ``reward_models.train_reward_model(..., output_dir=...)``) holding a one-output sequence
      classifier, or a hub id; default the shipped model. Loaded as a
      ``reward_models.LearnedRewardModel`` on the env's device.
    - ``reward_model``: a reward object instead of a path (any ``reward(prompts, completions)``;
      not together with ``reward_model_path``).
    - ``normalize`` (False): refit gain and bias so that ``normalize_samples`` (256) completions of
      the policy, sampled with a fixed seed at the env's temperature, score mean 0 and std 1. Needs a
      ``LearnedRewardModel``; a given one is copied (sharing its network), not changed.

    ## Version History
    - v0: initial version.
    """

    def __init__(self, normalize: bool = False, normalize_samples: int = 256, **kwargs: Any) -> None:
        _check_normalize(normalize, normalize_samples)
        super().__init__(**preference_kwargs(kwargs))
        if normalize:
            _normalize(self.core, normalize_samples)


class PreferenceVectorEnv(TextGenerationVectorEnv):
    """``num_envs`` :class:`PreferenceEnv` episodes as one batch on the model's device.

    The native vector twin of :class:`PreferenceEnv` (same arguments plus ``num_envs``); see
    :class:`textrl_env.TextGenerationVectorEnv` for the batched observation, info and autoreset rules.
    """

    def __init__(
        self, num_envs: int = 8, normalize: bool = False, normalize_samples: int = 256, **kwargs: Any
    ) -> None:
        _check_normalize(normalize, normalize_samples)
        super().__init__(num_envs=num_envs, **preference_kwargs(kwargs))
        if normalize:
            _normalize(self.core, normalize_samples)
