"""A custom policy: the env's language model plus a small trainable head, trained with RLOO.

Copy this file to give a policy another head, another network, or extra inputs. Two methods define
the policy, and they must agree on every number:

- ``forward(obs)``: next-token logits ``(B, V)`` at each row's last real column (used to sample);
- ``evaluate_sequence(input_ids, attention_mask, response_start)``: teacher-forced log-probs of a
  whole response (used in the update). If the two disagree, the update's importance ratio is not 1
  on fresh samples and the gradient points the wrong way.

Because this policy's logits are not the env model's, the agent attaches it to the env with
``logits_source="policy"`` and hands it the policy's logits before every step, so the env's
``info["logprobs"]`` and its KL penalty are the custom policy's. The reference stays the env's frozen
copy of the starting LM; the head's last layer starts at zero, so the policy starts as that LM (KL 0).

    python examples/custom_policy.py                 # about a minute on a laptop CPU
    python examples/custom_policy.py --timesteps 512 # a smoke run
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import torch
from torch import nn

import textrl_env  # noqa: F401  (registers the textrl/... ids)
from agents import RLOO, LMPolicy
from agents.policies import Obs, obs_to_tensors, right_align
from textrl_env.default_model import HELDOUT_SENTIMENT_PROMPTS
from textrl_env.logprobs import position_ids_from_mask, token_entropy, token_logprobs


class ResidualHeadPolicy(LMPolicy):
    """The LM's logits plus a small MLP on its last hidden state: ``logits = lm(h) + mlp(h)``.

    Args:
        model, tokenizer, temperature: as :class:`agents.LMPolicy` (the agent passes the env's).
        head_size: width of the MLP's hidden layer.
        freeze_lm: train the head only; the LM (the env's model) stays as it is.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any = None,
        temperature: float = 1.0,
        head_size: int = 64,
        freeze_lm: bool = False,
    ) -> None:
        super().__init__(model, tokenizer, temperature)
        lm: Any = self.model  # a transformers causal LM
        out = nn.Linear(head_size, self.vocab_size)
        # Zero output layer: the policy starts exactly as the LM, so the first KL to the reference is 0.
        nn.init.zeros_(out.weight)
        nn.init.zeros_(out.bias)
        self.head = nn.Sequential(nn.Linear(lm.config.hidden_size, head_size), nn.Tanh(), out)
        if freeze_lm:
            self.model.requires_grad_(False)

    def _logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, keep: int) -> torch.Tensor:
        """Logits ``(B, keep, V)`` of the last ``keep`` columns, in one forward of the LM."""
        out = self.model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask),  # left padding must not shift positions
            logits_to_keep=keep,  # only these columns are projected onto the vocabulary
            output_hidden_states=True,
            use_cache=False,
        )
        hidden = out.hidden_states[-1][:, -keep:]  # (B, keep, H): what the LM head reads
        return out.logits + self.head(hidden)

    def forward(self, obs: Obs) -> torch.Tensor:
        """Raw next-token logits ``(B, V)`` (the agent applies the temperature)."""
        ids, mask, _ = obs_to_tensors(obs, self.device)
        ids, mask = right_align(ids, mask)  # every row's last real token into the last column
        return self._logits(ids, mask, keep=1)[:, -1]

    def evaluate_sequence(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int
    ) -> tuple[None, torch.Tensor, torch.Tensor]:
        """``(None, logprobs (B, T), entropy (B, T))`` of the response, the same numbers ``forward`` samples from."""
        n = input_ids.shape[1] - response_start
        logits = self._logits(input_ids, attention_mask, keep=n + 1)[:, :-1]  # column j predicts token j + 1
        tokens = input_ids[:, response_start:]  # (B, T)
        mask = attention_mask[:, response_start:].float()  # 0 after EOS
        logprobs = token_logprobs(logits, tokens, self.temperature) * mask
        return None, logprobs, token_entropy(logits, self.temperature) * mask


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--timesteps", type=int, default=32 * 16 * 24, help="env steps x rows to train for")
    parser.add_argument("--num-envs", type=int, default=32, help="rows of the vector env (prompts x k)")
    parser.add_argument("--k", type=int, default=4, help="completions per prompt")
    parser.add_argument("--head-size", type=int, default=64)
    parser.add_argument("--freeze-lm", action="store_true", help="train the head only")
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads; a model this small runs fastest on one"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> tuple[float, float]:
    """Train the custom policy on ``textrl/Sentiment-v0``; returns the mean held-out score before and after."""
    args = parse_args(argv)
    # Tiny matrices gain nothing from several threads, and threads contending for shared cores
    # slowed this script several-fold in our runs.
    torch.set_num_threads(args.threads)
    envs = gym.make_vec(
        "textrl/Sentiment-v0", num_envs=args.num_envs, vectorization_mode="vector_entry_point"
    )
    agent = RLOO(
        ResidualHeadPolicy,  # a class, built as ResidualHeadPolicy(env.model, tokenizer=..., temperature=..., **policy_kwargs)
        envs,
        policy_kwargs={"head_size": args.head_size, "freeze_lm": args.freeze_lm},
        k=args.k,
        learning_rate=args.learning_rate,
        seed=args.seed,
        verbose=0,
    )
    prompts = list(HELDOUT_SENTIMENT_PROMPTS)
    before = agent.evaluate(prompts, n_samples=2)
    agent.learn(total_timesteps=args.timesteps, progress_bar=True)
    after = agent.evaluate(prompts, n_samples=2)
    print(f"mean VADER score on held-out openers: {before.score_mean:+.3f} -> {after.score_mean:+.3f}")
    print(f"mean KL to the starting model:        {before.kl_mean:.3f} -> {after.kl_mean:.3f}")
    for prompt, completion in list(zip(after.prompts, after.completions, strict=True))[:4:2]:
        print(f"  {prompt!r} -> {completion!r}")
    return before.score_mean, after.score_mean


if __name__ == "__main__":
    main()
