"""The settings of one RLHF pipeline run: a flat dataclass whose fields are ``textrl pipeline``'s flags.

One flat dataclass (rather than nested sections) so that every field is a flag of the same name,
a key of a ``--config`` YAML/TOML file, and a line of the run directory's ``config.yaml``, which
``textrl pipeline --config RUN_DIR/config.yaml`` reads back. Prefixes group the stages:
``sft_`` (round 0), ``pairs_``/``label_`` (feedback), ``rm_`` (reward model), ``rl`` and the agent
settings, ``early_stop_``, ``eval_``.

Settings left as None are resolved when a run starts (:func:`resolve_config`): on the embedded
default model, the agent's learning rate, rows and policy come from the tuned table of
:mod:`agents.hyperparams` (its ``textrl/Sentiment-v0`` entry); the resolved values are what the run
directory records.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

TUNED_ENV = "textrl/Sentiment-v0"  # the task the pipeline runs on the default model


def _help(text: str, default: Any = None) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass
class PipelineConfig:
    """Everything a pipeline run depends on; saved as ``config.yaml`` in the run directory."""

    # Path settings, resolved against a --config file's folder (agents.cli.paths).
    PATHS: ClassVar[dict[str, str]] = {"run_dir": "output", "model": "model"}

    # ---------------------------------------------------------------- the run
    run_dir: str = _help("the run directory: config, checkpoints, metrics, plots, summary.", "runs/pipeline")
    rounds: int = _help("feedback rounds after SFT (each: pairs, labels, reward model, RL, eval).", 3)
    seed: int = _help("seeds every stage (each stage derives its own seed from it).", 0)
    device: str = _help("cpu or cuda.", "cpu")
    model: str | None = _help("the starting causal LM (id or directory); default: the embedded model.")
    max_new_tokens: int = _help("response length limit of every sample.", 16)
    threads: int | None = _help(
        "torch CPU threads; default: 1 for the embedded model on CPU (fastest for a model this small), "
        "else torch's own choice."
    )
    # ---------------------------------------------------------------- round 0: SFT
    sft_demonstrations: int = _help("demonstrations generated for SFT (review lines of the corpus).", 2000)
    sft_min_gold: float = _help(
        "keep only demonstrations whose gold score is at least this (0: no negative reviews).", 0.0
    )
    sft_epochs: int = _help("SFT passes over the demonstrations.", 2)
    sft_learning_rate: float = _help("SFT AdamW learning rate.", 1e-3)
    sft_batch_size: int = _help("demonstrations per SFT step.", 32)
    # ---------------------------------------------------------------- feedback
    labeler: str = _help(
        "who labels the pairs: simulated (the gold scorer with Bradley-Terry noise), human (people on the "
        "labelling page; the round waits for them), or mixed (people first, the simulated annotator the rest).",
        "simulated",
    )
    pairs_per_round: int = _help(
        "pairs of the current policy's responses sampled and labelled per round.", 512
    )
    label_host: str = _help(
        "human/mixed: interface of the labelling page (not loopback: a token is required).", "127.0.0.1"
    )
    label_port: int = _help("human/mixed: TCP port of the labelling page (0: any free port).", 8000)
    label_per_pair: int = _help("human/mixed: answers wanted per pair; the majority decides.", 1)
    label_token: str | None = _help("human/mixed: access token to require; generated when not on loopback.")
    label_timeout: float | None = _help(
        "human/mixed: seconds to wait for people per round before going on with what is labelled (None: no limit)."
    )
    label_temperature: float = _help(
        "simulated annotator noise: P(a preferred) = sigmoid((gold_a - gold_b) / label_temperature).", 0.1
    )
    # ---------------------------------------------------------------- reward model
    rm_epochs: int = _help("reward-model passes over all pairs so far (retrained from the SFT model).", 3)
    rm_learning_rate: float = _help("reward-model AdamW learning rate.", 1e-4)
    rm_batch_size: int = _help("pairs per reward-model step.", 32)
    rm_eval_fraction: float = _help(
        "share of each round's pairs never trained on, for the reward model's accuracy.", 0.2
    )
    rm_normalize: bool = _help(
        "rescale the reward model so the current policy's samples score mean 0, std 1.", True
    )
    # ---------------------------------------------------------------- RL
    agent: str = _help("the RL algorithm: rloo, reinforce or ppo.", "rloo")
    rl_timesteps: int = _help("RL env steps x rows per round.", 16384)
    num_envs: int | None = _help("rows of the RL vector env; default: the tuned table's, else 16.")
    learning_rate: float | None = _help("RL learning rate; default: the tuned table's, else the agent's.")
    kl_coef: float = _help("initial coefficient of the KL penalty to the SFT model.", 0.05)
    kl_target: float | None = _help(
        "per-sequence KL target of the adaptive KL controller (None: a fixed kl_coef).", None
    )
    kl_horizon: int | None = _help(
        "horizon (episodes) of the adaptive KL controller; default: the agent's (10000). A round sees about "
        "rl_timesteps / max_new_tokens episodes, so e.g. 256 lets the coefficient move within a round."
    )
    # ---------------------------------------------------------------- counter-measures
    early_stop_tolerance: float | None = _help(
        "stop a round's RL when the held-out gold score falls this far below its best while the proxy "
        "does not fall (None: off).",
        None,
    )
    early_stop_check_every: int = _help("RL timesteps between two gold-vs-proxy checks.", 2048)
    early_stop_samples: int = _help("completions per held-out prompt at each check.", 2)
    # ---------------------------------------------------------------- evaluation
    eval_samples: int = _help("completions per held-out prompt when a round is evaluated.", 8)

    def __post_init__(self) -> None:
        positive = (
            "rounds", "max_new_tokens", "sft_demonstrations", "sft_epochs", "sft_batch_size", "pairs_per_round",
            "rm_epochs", "rm_batch_size", "rl_timesteps", "early_stop_check_every", "early_stop_samples",
            "eval_samples",
        )  # fmt: skip
        for name in positive:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if (
            isinstance(self.label_per_pair, bool)
            or not isinstance(self.label_per_pair, int)
            or self.label_per_pair < 1
        ):
            raise ValueError(f"label_per_pair must be an int >= 1, got {self.label_per_pair!r}")
        if self.label_timeout is not None and not (
            math.isfinite(self.label_timeout) and self.label_timeout > 0
        ):
            raise ValueError(f"label_timeout must be None or a finite number > 0, got {self.label_timeout!r}")
        for name in ("num_envs", "threads", "kl_horizon"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"{name} must be None or an int >= 1, got {value!r}")
        rates: dict[str, float | None] = {
            "sft_learning_rate": self.sft_learning_rate,
            "rm_learning_rate": self.rm_learning_rate,
            "label_temperature": self.label_temperature,
            "learning_rate": self.learning_rate,
            "kl_target": self.kl_target,
            "early_stop_tolerance": self.early_stop_tolerance,
        }
        for name, value in rates.items():
            if value is not None and not (
                isinstance(value, int | float) and math.isfinite(value) and value > 0
            ):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not (isinstance(self.kl_coef, int | float) and math.isfinite(self.kl_coef) and self.kl_coef >= 0):
            raise ValueError(f"kl_coef must be a finite number >= 0, got {self.kl_coef!r}")
        if not 0.0 < self.rm_eval_fraction < 1.0:
            raise ValueError(
                f"rm_eval_fraction must be in (0, 1) (some pairs train, some measure accuracy), "
                f"got {self.rm_eval_fraction!r}"
            )
        if not -1.0 <= self.sft_min_gold < 1.0:
            raise ValueError(
                f"sft_min_gold must be in [-1, 1) (the gold scorer's range), got {self.sft_min_gold!r}"
            )
        from agents.pipeline.labelers import LABELERS
        from agents.train import ALGORITHMS

        _check_choice("labeler", self.labeler, tuple(LABELERS))
        _check_choice("agent", self.agent, tuple(ALGORITHMS))

    def to_dict(self) -> dict[str, Any]:
        """The fields as a plain dict (what ``config.yaml`` holds)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "config") -> PipelineConfig:
        """Build a config from a mapping of field names, refusing unknown keys (naming the closest field)."""
        names = [f.name for f in dataclasses.fields(cls)]
        for key in data:
            if key not in names:
                close = difflib.get_close_matches(str(key), names, n=1)
                hint = f" Did you mean {close[0]!r}?" if close else ""
                raise ValueError(f"{where}: {key!r} is not a pipeline setting.{hint}")
        return cls(**data)


def _check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown {name} {value!r}; choose one of {', '.join(choices)}.{hint}")


def resolve_config(config: PipelineConfig) -> PipelineConfig:
    """``config`` with its None agent settings filled in (tuned table on the default model, else fallbacks)."""
    from agents.hyperparams import tuned_hyperparams
    from agents.train import FALLBACK_NUM_ENVS

    tuned = tuned_hyperparams(TUNED_ENV, config.agent) if config.model is None else {}
    updates: dict[str, Any] = {}
    if config.threads is None and config.model is None and config.device == "cpu":
        updates["threads"] = 1
    if config.num_envs is None:
        updates["num_envs"] = int(tuned.get("num_envs", FALLBACK_NUM_ENVS))
    if config.learning_rate is None:
        from agents.train import ALGORITHMS

        default = ALGORITHMS[config.agent].config_class().learning_rate
        updates["learning_rate"] = float(tuned.get("learning_rate", default))
    return dataclasses.replace(config, **updates)


def agent_settings(config: PipelineConfig) -> tuple[str, dict[str, Any]]:
    """``(policy alias, agent keyword arguments)`` of the RL stage: the tuned extras, then the config's own."""
    from agents.hyperparams import RUN_KEYS, tuned_hyperparams
    from agents.train import ALGORITHMS, DEFAULT_POLICY

    algo = ALGORITHMS[config.agent]
    tuned = tuned_hyperparams(TUNED_ENV, config.agent) if config.model is None else {}
    policy = str(tuned.get("policy", DEFAULT_POLICY.get(config.agent, "LMPolicy")))
    kwargs = {k: v for k, v in tuned.items() if k not in RUN_KEYS and k in algo.config_class.field_names()}
    kwargs |= {"learning_rate": config.learning_rate, "kl_coef": config.kl_coef}
    kwargs["kl_target"] = config.kl_target
    if config.kl_horizon is not None:
        kwargs["kl_horizon"] = config.kl_horizon
    return policy, kwargs


def config_differences(stored: PipelineConfig, given: dict[str, Any]) -> list[str]:
    """``name: stored vs given`` for each given setting that differs from the stored run's.

    ``run_dir`` may differ (the same folder, spelt another way), ``model`` may be the same folder
    spelt another way (``config.yaml`` stores it absolute), and ``rounds`` may grow: resuming a
    finished run with more rounds continues it.
    """
    stored_values = stored.to_dict()
    return [
        f"{name}: {stored_values[name]!r} (the run) vs {value!r} (given)"
        for name, value in given.items()
        if name in stored_values
        and name != "run_dir"
        and stored_values[name] != value
        and not (name == "rounds" and value > stored_values[name])
        and not (name == "model" and _same_folder(stored_values[name], value))
    ]


def _same_folder(a: Any, b: Any) -> bool:
    if not (isinstance(a, str) and isinstance(b, str)):
        return False
    first, second = Path(a).expanduser(), Path(b).expanduser()
    return first.exists() and second.exists() and first.resolve() == second.resolve()


__all__ = [
    "PipelineConfig",
    "agent_settings",
    "config_differences",
    "resolve_config",
]
