"""Checkpoints: a directory that a crash can never leave half-written.

Layout of ``path/``::

    textrl_checkpoint.json     format, algorithm, versions, the algorithm's config
    trainer_state.pt           optimizer, KL controller, RNG states, counters, extra (torch.load(weights_only=True))
    model/                     policy.model.save_pretrained(...) (safetensors) + the tokenizer, when the policy
                               wraps a transformers model: AutoModelForCausalLM.from_pretrained("path/model") works
                               (a LoRA policy saves its adapter here instead)
    policy_extra.safetensors   the policy's other weights (value head, separate critic)
    policy.safetensors         the whole policy state_dict, for a policy without ``.model.save_pretrained``

Everything is written to a temporary directory beside ``path`` and renamed into place at the end, so
an interrupted save leaves the previous checkpoint untouched.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from agents.atomic import atomic_directory, recover_directory
from agents.policies import BasePolicy, LMPolicy
from agents.rng import get_rng_state, set_rng_state

FORMAT = "textrl-checkpoint"
FORMAT_VERSION = 2  # 2: the config names of issue 10 (kl_target, target_kl, gae_lambda, ...)
META_FILE = "textrl_checkpoint.json"
STATE_FILE = "trainer_state.pt"
MODEL_DIR = "model"
EXTRA_FILE = "policy_extra.safetensors"
POLICY_FILE = "policy.safetensors"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded: damaged, incomplete, or written by another algorithm."""


__all__ = [
    "CheckpointError",
    "atomic_directory",
    "get_rng_state",
    "load_checkpoint",
    "load_policy_weights",
    "save_checkpoint",
    "set_rng_state",
]


def _textrl_version() -> str:
    try:
        return metadata.version("textrl")
    except metadata.PackageNotFoundError:
        return "0+unknown"


# --------------------------------------------------------------------------- validation helpers

_PLAIN = (int, float, bool, str, type(None), torch.Tensor, torch.dtype, torch.device, torch.Size)


def _check_weights_only(obj: Any, where: str) -> None:
    """Raise a TypeError naming the first value ``torch.load(weights_only=True)`` would refuse."""
    if isinstance(obj, _PLAIN):
        return
    if isinstance(obj, dict):
        for key, value in obj.items():
            if not isinstance(key, str | int):
                raise TypeError(
                    f"{where} has a key {key!r} of type {type(key).__name__}; use str or int keys"
                )
            _check_weights_only(value, f"{where}[{key!r}]")
        return
    if isinstance(obj, list | tuple):
        for i, value in enumerate(obj):
            _check_weights_only(value, f"{where}[{i}]")
        return
    fix = (
        "convert it with torch.as_tensor(...) or .tolist()"
        if isinstance(obj, np.ndarray | np.generic)
        else ("store plain tensors, numbers, strings, lists and dicts (e.g. its state_dict())")
    )
    raise TypeError(
        f"{where} is a {type(obj).__module__}.{type(obj).__qualname__}, which checkpoints cannot hold; {fix}"
    )


def _json_config(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if dataclasses.is_dataclass(config) and not isinstance(config, type):
        config = dataclasses.asdict(config)
    if not isinstance(config, Mapping):
        raise TypeError(f"config must be a dict or a dataclass instance, got {type(config).__name__}")

    def plain(value: Any, where: str) -> Any:
        if isinstance(value, Mapping):
            return {str(k): plain(v, f"{where}[{k!r}]") for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
        if isinstance(value, os.PathLike | torch.device | torch.dtype):
            return str(value)
        if isinstance(value, int | float | str | bool | type(None)):
            return value
        raise TypeError(
            f"{where} is a {type(value).__name__}, which JSON cannot hold; store a str or number instead"
        )

    return plain(config, "config")


# --------------------------------------------------------------------------- save


def _save_policy(policy: nn.Module, root: Path, state: Mapping[str, torch.Tensor] | None) -> dict[str, Any]:
    model: Any = policy.model if isinstance(policy, LMPolicy) else None  # a transformers (or peft) model
    given, state = state is not None, policy.state_dict() if state is None else state
    if model is not None and hasattr(model, "save_pretrained"):
        if given:  # the full weights of a sharded model, gathered by the caller
            own = {k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")}
            model.save_pretrained(root / MODEL_DIR, state_dict=own)
        else:
            model.save_pretrained(root / MODEL_DIR)
        tokenizer = policy.tokenizer if isinstance(policy, LMPolicy) else None
        if tokenizer is not None:
            tokenizer.save_pretrained(root / MODEL_DIR)
        extra = {k: v for k, v in state.items() if not k.startswith("model.")}
        if extra:  # clones: safetensors refuses tensors that share memory
            save_file({k: v.detach().cpu().contiguous().clone() for k, v in extra.items()}, root / EXTRA_FILE)
        layout = "pretrained"
    else:
        save_file({k: v.detach().cpu().contiguous().clone() for k, v in state.items()}, root / POLICY_FILE)
        tokenizer, layout = None, "state_dict"
    return {
        "class": f"{type(policy).__module__}.{type(policy).__qualname__}",
        "layout": layout,
        "lora": isinstance(policy, BasePolicy) and policy.has_lora,
        "has_tokenizer": tokenizer is not None,
    }


def save_checkpoint(
    path: str | os.PathLike,
    *,
    algo_name: str,
    policy: nn.Module,
    optimizer: torch.optim.Optimizer | Mapping[str, Any] | None = None,
    kl_controller_state: Mapping[str, Any] | None = None,
    rng_states: Mapping[str, Any] | None = None,
    counters: Mapping[str, int | float] | None = None,
    config: Any = None,
    extra: Mapping[str, Any] | None = None,
    policy_state: Mapping[str, torch.Tensor] | None = None,
) -> Path:
    """Write a checkpoint directory atomically (see the module docstring for the layout).

    Args:
        path: the checkpoint directory; an existing one is replaced only once the new one is complete.
        algo_name: the algorithm's name (``"PPO"``); :func:`load_checkpoint` checks it.
        policy: the policy module (its model, tokenizer and extra weights are saved).
        optimizer: saved through ``state_dict()``, or that state dict itself.
        kl_controller_state: the KL controller's ``state_dict()``.
        rng_states: from :func:`get_rng_state`; captured now when None.
        counters: step counters, e.g. ``{"num_timesteps": ..., "iteration": ...}``.
        config: the algorithm's config (dataclass or dict), stored as JSON.
        extra: anything else weights-only loadable (tensors, numbers, strings, lists, dicts).
        policy_state: the policy's full ``state_dict()`` when ``policy.state_dict()`` would not give
            plain tensors (an FSDP-sharded policy); None reads it from ``policy``.

    Returns:
        The checkpoint directory.

    Raises:
        TypeError: a value the checkpoint could not load back (named, with the fix).
    """
    if not isinstance(algo_name, str) or not algo_name:
        raise ValueError(f"algo_name must be a non-empty string such as 'PPO', got {algo_name!r}")
    trainer_state = {
        "optimizer": optimizer.state_dict() if isinstance(optimizer, torch.optim.Optimizer) else optimizer,
        "kl_controller": dict(kl_controller_state) if kl_controller_state is not None else None,
        "rng": dict(rng_states) if rng_states is not None else get_rng_state(),
        "counters": dict(counters or {}),
        "extra": dict(extra or {}),
    }
    _check_weights_only(trainer_state, "trainer_state")
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "algo": algo_name,
        "textrl_version": _textrl_version(),
        "torch_version": torch.__version__,
        "config": _json_config(config),
    }
    with atomic_directory(path) as tmp:
        meta["policy"] = _save_policy(policy, tmp, policy_state)
        torch.save(trainer_state, tmp / STATE_FILE)
        (tmp / META_FILE).write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return Path(path)


# --------------------------------------------------------------------------- load


@dataclass
class Checkpoint:
    """What :func:`load_checkpoint` read; restore the policy with :meth:`load_policy`."""

    path: Path
    algo_name: str
    config: dict[str, Any]
    meta: dict[str, Any]
    optimizer_state: dict[str, Any] | None
    kl_controller_state: dict[str, Any] | None
    rng_states: dict[str, Any]
    counters: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def load_policy(self, policy: nn.Module) -> None:
        """Copy the saved weights into ``policy`` (built the same way as the saved one)."""
        load_policy_weights(self.path, policy)


def _damaged(file: Path, err: BaseException) -> CheckpointError:
    return CheckpointError(
        f"could not read {file}: {type(err).__name__}: {err}. The file is damaged or incomplete; "
        "re-save the checkpoint (agent.save(path)) or load an earlier one"
    )


def _read_meta(root: Path) -> dict[str, Any]:
    if not root.exists():
        raise FileNotFoundError(
            f"no checkpoint at {root}; check the path (agent.save(path) writes a directory)"
        )
    meta_path = root / META_FILE
    if not meta_path.is_file():
        raise CheckpointError(
            f"{root} is not a textrl checkpoint: {META_FILE} is missing. Pass the directory agent.save(path) "
            "wrote; if that save was interrupted, re-save it"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise _damaged(meta_path, err) from err
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or "algo" not in meta:
        raise CheckpointError(f"{meta_path} does not describe a textrl checkpoint; re-save the checkpoint")
    if int(meta.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{root} uses checkpoint format {meta['format_version']}, newer than this textrl reads "
            f"({FORMAT_VERSION}); upgrade textrl (it was written by textrl {meta.get('textrl_version')})"
        )
    return meta


def load_checkpoint(path: str | os.PathLike, expected_algo: str | None = None) -> Checkpoint:
    """Read a checkpoint directory written by :func:`save_checkpoint`.

    Args:
        path: the checkpoint directory.
        expected_algo: the loading algorithm's name; a checkpoint from another one is refused.

    Raises:
        FileNotFoundError: nothing at ``path``.
        CheckpointError (a ValueError): written by another algorithm, or a file is missing or damaged.
    """
    root = Path(path)
    recover_directory(root)  # a save killed between its two renames left the previous one beside it
    meta = _read_meta(root)
    if expected_algo is not None and meta["algo"] != expected_algo:
        raise CheckpointError(
            f"this checkpoint was written by {meta['algo']}; load it with {meta['algo']}.load "
            f"(not {expected_algo}.load)"
        )
    state_path = root / STATE_FILE
    if not state_path.is_file():
        raise CheckpointError(f"{state_path} is missing; the checkpoint is incomplete, re-save it")
    try:
        state = torch.load(state_path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, bad pickle, refused type: all mean the same to the user
        raise _damaged(state_path, err) from err
    return Checkpoint(
        path=root,
        algo_name=meta["algo"],
        config=meta.get("config", {}),
        meta=meta,
        optimizer_state=state.get("optimizer"),
        kl_controller_state=state.get("kl_controller"),
        rng_states=state.get("rng", {}),
        counters=state.get("counters", {}),
        extra=state.get("extra", {}),
    )


def _read_safetensors(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise CheckpointError(f"{file} is missing; the checkpoint is incomplete, re-save it")
    try:
        return load_file(file)
    except Exception as err:
        raise _damaged(file, err) from err


def _load_model_dir(model: Any, model_dir: Path, lora: bool) -> None:
    if not model_dir.is_dir():
        raise CheckpointError(f"{model_dir} is missing; the checkpoint is incomplete, re-save it")
    if lora:
        from peft import set_peft_model_state_dict

        result: Any = set_peft_model_state_dict(
            model, _read_safetensors(model_dir / "adapter_model.safetensors")
        )
        if getattr(result, "unexpected_keys", None):
            raise CheckpointError(
                f"the adapter in {model_dir} does not fit this policy (unexpected {result.unexpected_keys[:3]}); "
                "build the policy with the same lora_config"
            )
        return
    try:
        loaded = type(model).from_pretrained(model_dir)  # transformers' own loader: renames, tied weights
    except Exception as err:
        raise _damaged(model_dir, err) from err
    model.load_state_dict(loaded.state_dict())


def load_policy_weights(path: str | os.PathLike, policy: nn.Module) -> None:
    """Load a checkpoint's policy weights into an existing ``policy`` of the same architecture.

    Raises:
        CheckpointError: a weight file is missing or damaged, or the policy does not fit the saved one.
    """
    root = Path(path)
    info = _read_meta(root).get("policy", {})
    try:
        if info.get("layout") == "state_dict":
            policy.load_state_dict(_read_safetensors(root / POLICY_FILE))
            return
        if not isinstance(policy, LMPolicy):
            raise CheckpointError(
                f"{root} holds a language model policy ({info.get('class')}); build that class to load it into"
            )
        _load_model_dir(policy.model, root / MODEL_DIR, bool(info.get("lora")))
        if (root / EXTRA_FILE).exists():
            missing, unexpected = policy.load_state_dict(_read_safetensors(root / EXTRA_FILE), strict=False)
            if unexpected or any(not k.startswith("model.") for k in missing):
                raise CheckpointError(
                    f"{root / EXTRA_FILE} does not fit {type(policy).__name__}: unexpected {unexpected[:3]}, "
                    f"missing {[k for k in missing if not k.startswith('model.')][:3]}; build the policy with "
                    f"the saved class ({info.get('class')}) and arguments"
                )
    except RuntimeError as err:  # load_state_dict: shapes or keys differ
        raise CheckpointError(
            f"the weights in {root} do not fit this {type(policy).__name__}: {err}. Build the policy with the "
            f"saved class ({info.get('class')}) and the same model architecture"
        ) from err
