"""Policies: the seam between an algorithm and the network, with Stable-Baselines3's verbs on token tensors.

An observation is the env's ``Dict`` of ``input_ids`` and ``attention_mask`` (see the env contract): a
left-padded prompt, the response so far, then right padding. The next token is predicted from the
last column whose mask is 1. Every method accepts numpy or torch observations, batched ``(B, L)`` or
single ``(L,)``.

The protocol an algorithm relies on (a :class:`BasePolicy` subclass or any class with these methods):

- ``forward(obs) -> logits`` of the next token ``(B, V)``, raw (not temperature-scaled);
- ``act(obs, deterministic=False) -> actions (B,)``;
- ``evaluate_actions(obs, actions) -> (values | None, log_prob, entropy)``;
- ``predict_values(obs) -> values (B,) | None``.

Dropout is always off inside the policy (the wrapped model stays in ``eval()`` mode while gradients
still flow): with dropout on, the log-prob of a token at sampling time and at update time would be
measured under different random masks, so the PPO ratio and the KL to the reference would be noise
even before any update ("The N+ implementation details of RLHF with PPO", detail on dropout).
"""

from __future__ import annotations

import copy
import difflib
import os
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from textrl_env.logprobs import (
    accepts_logits_to_keep,
    drop_common_padding,
    position_ids_from_mask,
    roll_rows_index,
    sequence_logprobs,
    token_entropy,
    token_logprobs,
)

Obs = Mapping[str, Any]
PROTOCOL_METHODS = ("forward", "act", "evaluate_actions", "predict_values")


def obs_to_tensors(
    obs: Obs, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor, bool]:
    """``(input_ids (B, L), attention_mask (B, L), batched)`` as int64 tensors on ``device``."""
    if not isinstance(obs, Mapping) or "input_ids" not in obs or "attention_mask" not in obs:
        raise TypeError(
            "obs must be the textrl observation: a dict with 'input_ids' and 'attention_mask' "
            f"(numpy arrays or torch tensors), got {type(obs).__name__}"
        )
    ids = torch.as_tensor(obs["input_ids"], device=device).long()
    mask = torch.as_tensor(obs["attention_mask"], device=device).long()
    if ids.shape != mask.shape or ids.dim() not in (1, 2):
        raise ValueError(
            f"obs['input_ids'] {tuple(ids.shape)} and obs['attention_mask'] {tuple(mask.shape)} must share "
            "one shape, (L,) for a single env or (B, L) for a batch"
        )
    batched = ids.dim() == 2
    return (ids, mask, True) if batched else (ids.unsqueeze(0), mask.unsqueeze(0), False)


def right_align(input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Roll each row so its last real token sits in the last column.

    The trailing padding moves to the front, where it is ordinary left padding, so a causal LM run
    with ``logits_to_keep=1`` yields every row's next-token logits without a ``(B, L, V)`` tensor.
    """
    length = input_ids.shape[1]
    last = attention_mask.cumsum(-1).argmax(-1)  # (B,) index of the last 1 (first max of the cumsum)
    index = roll_rows_index(length - 1 - last, length)  # (B, L)
    return input_ids.gather(1, index), attention_mask.gather(1, index)


def sample_from_logits(
    logits: torch.Tensor,
    temperature: float = 1.0,
    deterministic: bool = False,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Draw next tokens ``(B,)`` from raw logits ``(B, V)`` (e.g. the vector env's ``next_token_logits``)."""
    if deterministic:
        return logits.argmax(-1)
    if not temperature > 0:
        raise ValueError(
            f"temperature must be > 0, got {temperature}; use deterministic=True for greedy actions"
        )
    probs = torch.softmax(logits.float() / temperature, dim=-1)  # (B, V)
    # torch.multinomial refuses NaN probabilities; argmax would quietly pick one. Checked on the
    # device, so a GPU rollout does not wait for the host (there a failure is a device-side
    # assert, as multinomial's own check is).
    torch._assert_async(
        ~probs.isnan().any(),
        "textrl: the logits give NaN probabilities (a NaN or +inf logit, or a row of only -inf); "
        "the policy has diverged or a mask removed every token",
    )
    # The exponential race: argmax(p / E) with E ~ Exp(1) draws token i with probability p_i,
    # which is how torch.multinomial(probs, 1) samples too; drawing E as -log(U) from torch.rand
    # (one vectorised pass) instead of Tensor.exponential_ makes a draw about 3x faster on CPU.
    # U is float64 on CPU, as multinomial's draws are there, so even tokens with p ~ 1e-12 keep
    # their chance (float32 U would stop at p ~ 1e-7), and float32 elsewhere, as on CUDA. U = 0
    # would make E infinite and a row of p / E all zeros, where argmax would pick token 0 even
    # at p = 0: U is kept above the smallest normal float.
    dtype = torch.float64 if probs.device.type == "cpu" else probs.dtype
    uniform = torch.rand(probs.shape, generator=generator, device=probs.device, dtype=dtype)
    exponential = uniform.clamp_min_(torch.finfo(dtype).tiny).log_().neg_()  # (B, V) Exp(1)
    return (probs / exponential).argmax(-1)


def check_policy_vocab(policy_vocab_size: int, env_vocab_size: int) -> None:
    """Raise when the policy's logits and the env's action space disagree."""
    if policy_vocab_size != env_vocab_size:
        raise ValueError(
            f"the policy emits {policy_vocab_size} logits per token but the env's action space is "
            f"Discrete({env_vocab_size}); actions are token ids, so they must agree. Build the policy on the "
            "env's own model (the default), or resize its embeddings: "
            f"model.resize_token_embeddings({env_vocab_size})"
        )


def _model_vocab_size(model: Any) -> int:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and hasattr(head, "out_features"):
        return int(head.out_features)
    return int(model.config.vocab_size)


def _model_hidden_size(model: Any) -> int:
    """Width of the LM's last hidden state (duck-typed: any transformers causal LM)."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    return int(head.in_features) if head is not None else int(model.config.hidden_size)


def _value_head(model: Any, init_std: float, device: torch.device | None = None) -> nn.Linear:
    """A scalar linear head on ``model``'s last hidden state: weights ``N(0, init_std)``, bias 0."""
    head = nn.Linear(_model_hidden_size(model), 1, device=device)
    nn.init.normal_(head.weight, std=init_std)
    nn.init.zeros_(head.bias)
    return head


def _run_lm(
    model: Any, input_ids: torch.Tensor, attention_mask: torch.Tensor, keep: int, hidden: bool
) -> Any:
    """One causal-LM forward (positions from the mask, no cache); logits of the last ``keep`` columns where supported."""
    kwargs: dict[str, Any] = {"output_hidden_states": True} if hidden else {}
    if accepts_logits_to_keep(model):
        kwargs["logits_to_keep"] = keep
    return model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids_from_mask(attention_mask),
        use_cache=False,
        **kwargs,
    )


def _load_model(model: nn.Module | str | os.PathLike) -> nn.Module:
    if isinstance(model, str | os.PathLike):
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(os.fspath(model))
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a causal LM module or a path to one, got {type(model).__name__}")
    return model


def _wrap_lora(model: nn.Module, lora_config: Any) -> nn.Module:
    try:
        import peft
    except ImportError as err:
        raise ImportError(
            "lora_config needs the peft package; install it with: pip install textrl[lora]"
        ) from err
    if isinstance(lora_config, Mapping):
        lora_config = peft.LoraConfig(**{"task_type": "CAUSAL_LM", **lora_config})
    if not isinstance(lora_config, peft.LoraConfig):
        raise TypeError(
            f"lora_config must be a peft.LoraConfig, a dict of its fields, or None; got {lora_config!r}"
        )
    return peft.get_peft_model(model, lora_config)


class BasePolicy(nn.Module):
    """Base of textrl policies: a subclass implements :meth:`forward` (next-token logits) and may
    override :meth:`predict_values`; sampling, evaluation and ``predict`` come from here.

    Args:
        temperature: the sampling temperature; log-probs are those of ``softmax(logits / temperature)``.
    """

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)

    @property
    def device(self) -> torch.device:
        param = next(self.parameters(), None)
        return param.device if param is not None else torch.device("cpu")

    def forward(self, obs: Obs) -> torch.Tensor:
        """Raw next-token logits ``(B, V)``."""
        raise NotImplementedError(
            f"{type(self).__name__} must implement forward(obs) -> next-token logits (B, V)"
        )

    def predict_values(self, obs: Obs) -> torch.Tensor | None:
        """State values ``(B,)``, or None for a policy without a critic."""
        return None

    def act(
        self, obs: Obs, deterministic: bool = False, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Next tokens ``(B,)`` (no grad): sampled at the policy's temperature, or greedy."""
        with torch.no_grad():
            return sample_from_logits(self(obs), self.temperature, deterministic, generator)

    def evaluate_actions(
        self, obs: Obs, actions: torch.Tensor
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """``(values (B,) | None, log_prob (B,), entropy (B,))`` of ``actions`` under the current policy (with grad)."""
        logits = self(obs)  # (B, V)
        actions = torch.as_tensor(actions, device=logits.device).long().reshape(-1)
        return (
            self.predict_values(obs),
            token_logprobs(logits, actions, self.temperature),
            token_entropy(logits, self.temperature),
        )

    def predict(
        self,
        obs: Obs,
        state: Any = None,
        episode_start: Any = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, None]:
        """Stable-Baselines3's ``predict``: numpy actions, shape ``()`` for one observation or ``(B,)``."""
        _, _, batched = obs_to_tensors(obs)
        actions = self.act(obs, deterministic=deterministic).cpu().numpy()
        return (actions if batched else actions[0]), None


class LMPolicy(BasePolicy):
    """A causal language model as a policy (no critic): REINFORCE and RLOO use it.

    Args:
        model: a transformers causal LM (``AutoModelForCausalLM``), or an id/path to load one. Pass the
            env's own ``env.model`` so the env scores the policy being trained.
        tokenizer: kept for saving and decoding; optional.
        temperature: the sampling temperature (match the env's).
        lora_config: train a LoRA adapter instead of the full model (``peft.LoraConfig`` or a dict of its
            fields); the reference is then the same model with the adapter disabled.
    """

    def __init__(
        self,
        model: nn.Module | str | os.PathLike,
        tokenizer: Any = None,
        temperature: float = 1.0,
        lora_config: Any = None,
    ) -> None:
        super().__init__(temperature)
        model = _load_model(model)
        self.model = _wrap_lora(model, lora_config) if lora_config is not None else model
        self.tokenizer = tokenizer
        self.has_lora = lora_config is not None
        self.model.eval()

    def train(self, mode: bool = True) -> LMPolicy:
        """Set the training flag but keep every submodule in eval mode (dropout off; see module doc)."""
        super().train(mode)
        for module in self.children():
            module.eval()
        return self

    @property
    def vocab_size(self) -> int:
        return _model_vocab_size(self.model)

    def _next_token(self, obs: Obs, hidden: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Next-token logits ``(B, V)`` and, when asked, the last layer's hidden state there ``(B, H)``."""
        ids, mask, _ = obs_to_tensors(obs, self.device)
        ids, mask = right_align(ids, mask)
        out = _run_lm(self.model, ids, mask, keep=1, hidden=hidden)
        return out.logits[:, -1], (out.hidden_states[-1][:, -1] if hidden else None)

    def forward(self, obs: Obs) -> torch.Tensor:
        """Raw (not temperature-scaled) next-token logits ``(B, V)`` at each row's last real column."""
        return self._next_token(obs)[0]

    def sequence_logprobs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        response_start: int,
        return_entropy: bool = False,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced log-probs ``(B, T)`` of ``input_ids[:, response_start:]`` at the policy's temperature."""
        return sequence_logprobs(
            self.model, input_ids, attention_mask, response_start, self.temperature, return_entropy
        )

    def evaluate_sequence(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        response_start: int,
    ) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor]:
        """The sequence form of :meth:`evaluate_actions`: ``(values (B, T) | None, logprobs (B, T), entropy (B, T))``."""
        logprobs, entropy = self.sequence_logprobs(
            input_ids, attention_mask, response_start, return_entropy=True
        )
        return None, logprobs, entropy

    def reference_logprobs(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int
    ) -> torch.Tensor:
        """Log-probs under the reference, i.e. the base model with the LoRA adapter switched off (no grad)."""
        if not self.has_lora:
            raise ValueError(
                "reference_logprobs needs a LoRA policy (lora_config=...): without an adapter there is no "
                "switched-off copy inside the policy; use the env's ref_model (info['ref_logprobs']) instead"
            )
        peft_model: Any = self.model
        with torch.no_grad(), peft_model.disable_adapter():
            return sequence_logprobs(self.model, input_ids, attention_mask, response_start, self.temperature)


class LMActorCriticPolicy(LMPolicy):
    """A causal LM with a scalar value head: PPO uses it.

    Args:
        model, tokenizer, temperature, lora_config: as for :class:`LMPolicy`.
        value_head: ``"shared"`` puts a linear head on the policy's last hidden state (one backbone,
            one forward for log-probs and values); ``"separate"`` gives the critic its own copy of the LM
            body (twice the memory, but value updates never move the policy's weights).
        value_head_init_std: std of the head's initial weights; 0 (the default, as lm-human-preferences)
            starts every value at 0, so the first value-loss gradients do not disturb a shared backbone.
    """

    def __init__(
        self,
        model: nn.Module | str | os.PathLike,
        tokenizer: Any = None,
        temperature: float = 1.0,
        lora_config: Any = None,
        value_head: Literal["shared", "separate"] = "shared",
        value_head_init_std: float = 0.0,
    ) -> None:
        if value_head not in ("shared", "separate"):
            raise ValueError(f"value_head must be 'shared' or 'separate', got {value_head!r}")
        body: Any = _load_model(model)
        # the critic copies the LM body (without the LM head) before any adapter is attached
        critic = copy.deepcopy(getattr(body, "base_model", body)) if value_head == "separate" else None
        super().__init__(body, tokenizer, temperature, lora_config)
        self.value_head_kind = value_head
        self.critic: nn.Module | None = critic.eval().requires_grad_(True) if critic is not None else None
        self.value_head = _value_head(body, value_head_init_std)

    def _values(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.value_head(hidden.to(self.value_head.weight.dtype)).squeeze(-1)  # (..., H) -> (...)

    def _critic_hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        assert self.critic is not None
        out = self.critic(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids_from_mask(attention_mask),
        )
        return out.last_hidden_state  # (B, L, H)

    def predict_values(self, obs: Obs) -> torch.Tensor:
        """Values ``(B,)`` of the state at each row's last real column."""
        if self.critic is None:
            hidden = self._next_token(obs, hidden=True)[1]
            assert hidden is not None
            return self._values(hidden)
        ids, mask, _ = obs_to_tensors(obs, self.device)
        ids, mask = right_align(ids, mask)
        return self._values(self._critic_hidden(ids, mask)[:, -1])

    def evaluate_actions(
        self, obs: Obs, actions: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if self.critic is not None:
            values, logprob, entropy = super().evaluate_actions(obs, actions)
            assert values is not None
            return values, logprob, entropy
        logits, hidden = self._next_token(obs, hidden=True)  # one forward for both heads
        assert hidden is not None
        actions = torch.as_tensor(actions, device=logits.device).long().reshape(-1)
        return (
            self._values(hidden),
            token_logprobs(logits, actions, self.temperature),
            token_entropy(logits, self.temperature),
        )

    def sequence_values(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int
    ) -> torch.Tensor:
        """Per-token values ``(B, T)``: column ``j`` is the value of the state before response token ``j``
        (the hidden state one column earlier, aligned with the log-probs); 0 where the mask is 0."""
        return self._evaluate_sequence(input_ids, attention_mask, response_start, need_policy=False)[0]

    def evaluate_sequence(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(values, logprobs, entropy)``, each ``(B, T)``; with a shared head, one forward for all three."""
        values, logprobs, entropy = self._evaluate_sequence(input_ids, attention_mask, response_start, True)
        assert logprobs is not None and entropy is not None
        return values, logprobs, entropy

    def _evaluate_sequence(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, response_start: int, need_policy: bool
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        # Prompt columns no row uses change nothing: a shorter forward (and backward) without them.
        input_ids, attention_mask, response_start = drop_common_padding(
            input_ids, attention_mask, response_start
        )
        n_response = input_ids.shape[1] - response_start
        mask = attention_mask[:, response_start:].to(torch.float32)  # (B, T)
        if self.critic is not None:
            hidden = self._critic_hidden(input_ids, attention_mask)[:, response_start - 1 : -1]  # (B, T, H)
            if not need_policy:
                return self._values(hidden) * mask, None, None
            logprobs, entropy = self.sequence_logprobs(
                input_ids, attention_mask, response_start, return_entropy=True
            )
            return self._values(hidden) * mask, logprobs, entropy
        out = _run_lm(self.model, input_ids, attention_mask, keep=n_response + 1, hidden=True)
        hidden = out.hidden_states[-1][:, response_start - 1 : -1]  # (B, T, H)
        values = self._values(hidden) * mask
        if not need_policy:
            return values, None, None
        logits = out.logits[:, -(n_response + 1) : -1]  # (B, T, V)
        tokens = input_ids[:, response_start:]  # (B, T)
        logprobs = token_logprobs(logits, tokens, self.temperature) * mask
        return values, logprobs, token_entropy(logits, self.temperature) * mask


def has_values(policy: Any) -> bool:
    """False for a policy known to have no critic (a :class:`BasePolicy` that keeps ``predict_values``)."""
    if hasattr(policy, "sequence_values"):
        return True
    if isinstance(policy, BasePolicy):
        return type(policy).predict_values is not BasePolicy.predict_values
    return True  # a protocol-only policy is checked when its first values come back


POLICY_ALIASES: dict[str, type[nn.Module]] = {
    "LMPolicy": LMPolicy,
    "LMActorCriticPolicy": LMActorCriticPolicy,
}


def resolve_policy(policy: str | type) -> type:
    """Turn an alias (``"LMPolicy"``) or a class into a policy class.

    A class is accepted when it subclasses :class:`BasePolicy` or has every protocol method
    (``forward``, ``act``, ``evaluate_actions``, ``predict_values``).

    Raises:
        ValueError: an unknown alias (with the closest known one).
        TypeError: a class missing protocol methods (listed), or neither a string nor a class.
    """
    if isinstance(policy, str):
        if policy in POLICY_ALIASES:
            return POLICY_ALIASES[policy]
        close = difflib.get_close_matches(policy, list(POLICY_ALIASES), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown policy alias {policy!r}.{hint} Known aliases: {', '.join(POLICY_ALIASES)}; "
            "or pass a policy class"
        )
    if not isinstance(policy, type):
        raise TypeError(
            f"policy must be an alias ({', '.join(POLICY_ALIASES)}) or a policy class, got {type(policy).__name__}; "
            "pass the class itself and its arguments through policy_kwargs"
        )
    if issubclass(policy, BasePolicy):
        return policy
    missing = [
        name
        for name in PROTOCOL_METHODS
        if not callable(getattr(policy, name, None))
        or getattr(policy, name) is getattr(nn.Module, name, None)
    ]
    if missing:
        raise TypeError(
            f"policy class {policy.__name__} does not meet the textrl policy protocol: missing "
            f"{', '.join(missing)}. Subclass agents.policies.BasePolicy (it provides act, evaluate_actions and "
            "predict_values given forward) or define the missing methods"
        )
    return policy
