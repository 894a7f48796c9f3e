"""Training an agent from a few settings: the Python function behind ``textrl train``.

Either on a registered env id (its model, prompts and reward, each replaceable), or on your own
causal LM + reward model + prompts file (``textrl/TextGeneration-v0``). With no settings of your
own, a registered env starts from the tuned table of :mod:`agents.hyperparams`; what you set wins.
Before and after training the policy is scored on held-out prompts (:func:`agents.evaluation.evaluate_policy`).

Example::

    from agents.train import TrainArguments, train_agent

    result = train_agent(TrainArguments(env="textrl/Sentiment-v0", agent="ppo", out="runs/ppo"))
    print(result.before.reward_mean, "->", result.after.reward_mean)
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from agents.base import BaseAlgorithm
from agents.config import AlgoConfig
from agents.distributed import local_device
from agents.evaluation import EvalReport, evaluate_policy, write_json_atomic
from agents.grpo import GRPO
from agents.hyperparams import RUN_KEYS, tuned_agents, tuned_hyperparams
from agents.ppo import PPO
from agents.reinforce import REINFORCE
from agents.rloo import RLOO

# agent name -> class. Another agent is one line here.
ALGORITHMS: dict[str, type[BaseAlgorithm]] = {"reinforce": REINFORCE, "rloo": RLOO, "ppo": PPO, "grpo": GRPO}
# Without a tuned entry: a policy with a value head for PPO, the plain LM for the others.
DEFAULT_POLICY = {"ppo": "LMActorCriticPolicy"}
FALLBACK_TIMESTEPS, FALLBACK_NUM_ENVS = 10_000, 16
GENERIC_ENV = "textrl/TextGeneration-v0"
RESULT_FILE = "train.json"
EVAL_SEED = 1234  # the held-out sampler's seed, the same before and after training


def _help(text: str, default: Any = None) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass
class TrainArguments:
    """What to train, on what, and where the results go (the agent's own settings are its config)."""

    # Path settings, resolved against a --config file's folder (agents.cli.paths).
    PATHS: ClassVar[dict[str, str]] = {
        "model": "model", "reward_model": "model", "prompts": "input", "eval_prompts": "input", "out": "output",
    }  # fmt: skip

    env: str | None = _help(
        "a registered env id (`textrl envs` lists them); omit it to train --model on --reward_model and --prompts"
    )
    agent: str = _help("the algorithm: reinforce, rloo, ppo or grpo.", "rloo")
    model: str | None = _help(
        "the policy: a causal LM id or directory; default: the env's (the embedded model)."
    )
    reward_model: str | None = _help(
        "a reward model directory (a sequence classifier, as `textrl rm` writes)."
    )
    prompts: str | None = _help(
        "training prompts: a .jsonl file of {'prompt': ...} lines, or text, one per line."
    )
    eval_prompts: str | None = _help(
        "held-out prompts (same formats); default: the env's held-out openers, else its first 32 prompts."
    )
    total_timesteps: int | None = _help("env steps x rows to train for; default: tuned, else 10000.")
    num_envs: int | None = _help("rows of the vector env; default: tuned, else 16.")
    policy: str | None = _help("LMPolicy or LMActorCriticPolicy; default: tuned, else by agent.")
    max_new_tokens: int | None = _help("response length limit; default: the env's.")
    seed: int = _help("seeds the agent (Python, NumPy, torch, the sampler).", 0)
    device: str = _help("cpu or cuda.", "cpu")
    out: str | None = _help("run directory (checkpoint, logs, train.json); default: runs/<env>-<agent>.")
    eval_samples: int = _help("completions per held-out prompt, before and after training.", 8)
    tuned: bool = _help(
        "start from the tuned table of agents/hyperparams (--no_tuned: library defaults).", True
    )
    overwrite: bool = _help("replace a previous run in --out instead of refusing.", False)
    progress: bool = _help("show a progress bar.", True)


@dataclass
class TrainResult:
    """What :func:`train_agent` did: the agent, its held-out scores before and after, and where it saved."""

    agent: BaseAlgorithm
    before: EvalReport
    after: EvalReport
    out: Path
    settings: dict[str, Any]
    seconds: float

    @property
    def policy_path(self) -> Path:
        """The trained model's directory (``AutoModelForCausalLM.from_pretrained`` loads it)."""
        return self.out / "agent" / "model"


def check_agent(name: str) -> type[BaseAlgorithm]:
    """The class of agent ``name`` (case-insensitive); a ValueError with the valid names otherwise."""
    algo = ALGORITHMS.get(name.lower()) if isinstance(name, str) else None
    if algo is None:
        close = difflib.get_close_matches(str(name).lower(), list(ALGORITHMS), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown agent {name!r}; choose one of {', '.join(ALGORITHMS)}.{hint}")
    return algo


def check_env_id(env_id: str) -> str:
    """``env_id`` if registered; a ValueError with the closest ids ("Did you mean ...?") otherwise."""
    import gymnasium as gym

    import textrl_env  # noqa: F401  (registers the textrl/... ids)

    if env_id in gym.registry:
        return env_id
    ids = sorted(k for k in gym.registry if k.startswith("textrl/")) or sorted(gym.registry)
    close = difflib.get_close_matches(env_id, ids, n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(
        f"unknown env id {env_id!r}.{hint} Registered textrl ids: {', '.join(ids)} (`textrl envs`)"
    )


def read_prompts(path: str | os.PathLike[str]) -> list[str]:
    """Prompts from a ``.jsonl`` file of ``{"prompt": ...}`` objects, or a text file, one per line.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a malformed JSONL line (``file:line: reason``), or no prompts at all.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(
            f"prompts file {os.fspath(path)} not found; pass a .jsonl file of {{'prompt': ...}} lines or a "
            "text file with one prompt per line"
        )
    if file.suffix.lower() == ".jsonl":
        from reward_models.jsonl import read_jsonl_records, record_problem

        def problem(record: object) -> str | None:
            return record_problem(
                record, ("prompt",), ("prompt",), "an empty prompt gives the policy no task"
            )

        prompts = read_jsonl_records(file, problem, lambda r: str(r["prompt"]), "raise", UserWarning)
    else:
        prompts = [line for line in file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"{os.fspath(path)} holds no prompts; add one per line")
    return prompts


def _heldout_prompts(env_id: str, args: TrainArguments, envs: Any) -> list[str]:
    if args.eval_prompts is not None:
        return read_prompts(args.eval_prompts)
    if args.prompts is None and env_id in ("textrl/Sentiment-v0", "textrl/Preference-v0"):
        from textrl_env.default_model import HELDOUT_SENTIMENT_PROMPTS

        return list(HELDOUT_SENTIMENT_PROMPTS)
    return list(envs.unwrapped.prompts[:32])


def _prompt_window(model: str | None, prompts: list[str]) -> int:
    """Tokens of the longest prompt, under the policy's tokenizer (training and held-out prompts share the window)."""
    from transformers import AutoTokenizer

    from textrl_env.default_model import DEFAULT_MODEL_ID
    from textrl_env.prompts import tokenize_prompt

    tokenizer = AutoTokenizer.from_pretrained(model or DEFAULT_MODEL_ID)
    return max(len(tokenize_prompt(tokenizer, p)) for p in prompts)


def make_envs(args: TrainArguments, num_envs: int) -> tuple[str, Any]:
    """``(env id, native vector env)`` from the arguments: a registered id, or model + reward + prompts."""
    import gymnasium as gym

    kwargs: dict[str, Any] = {}
    device = _rank_device(args.device)
    if args.env is None:
        missing = [flag for flag in ("model", "reward_model", "prompts") if getattr(args, flag) is None]
        if missing:
            raise ValueError(
                f"no env id and no {', '.join('--' + m for m in missing)}: give a registered env id "
                "(e.g. textrl/Sentiment-v0), or a model, a reward model and a prompts file"
            )
    env_id = check_env_id(args.env or GENERIC_ENV)
    if args.model is not None:
        kwargs["model"] = args.model
    if args.reward_model is not None:
        from reward_models.learned import LearnedRewardModel

        kwargs["reward_model"] = LearnedRewardModel(args.reward_model, device=device)
    if args.prompts is not None:
        kwargs["prompts"] = read_prompts(args.prompts)
        if args.eval_prompts is not None:  # else the window fits the training prompts only
            kwargs["max_prompt_tokens"] = _prompt_window(
                args.model, kwargs["prompts"] + read_prompts(args.eval_prompts)
            )
    if args.max_new_tokens is not None:
        kwargs["max_new_tokens"] = args.max_new_tokens
    envs = gym.make_vec(
        env_id, num_envs=num_envs, vectorization_mode="vector_entry_point", device=device, **kwargs
    )
    return env_id, envs


def _rank_device(device: str) -> str:
    """``"cuda"`` is this rank's own GPU under ``torchrun`` (``cuda:LOCAL_RANK``); anything else as given."""
    return str(local_device("cuda")) if device == "cuda" else device


def _check_out(out: Path, overwrite: bool) -> None:
    if (out / RESULT_FILE).exists() and not overwrite:
        raise ValueError(
            f"{out} already holds a training run ({RESULT_FILE}); choose another --out, or pass --overwrite to "
            "replace it"
        )


def tuned_for(env_id: str | None, agent: str) -> dict[str, Any]:
    """The tuned table's entry for ``env_id`` and ``agent``; ``{}`` without an env or a table for the agent."""
    if env_id is None or agent.lower() not in tuned_agents():
        return {}
    return tuned_hyperparams(env_id, agent)


def resolve_settings(args: TrainArguments, config: AlgoConfig | None) -> tuple[dict[str, Any], AlgoConfig]:
    """Run settings (timesteps, rows, policy) and the agent's config, tuned where unset."""
    algo = check_agent(args.agent)
    tuned = tuned_for(args.env, args.agent) if args.tuned else {}
    if config is None:
        config = algo.config_class(**{k: v for k, v in tuned.items() if k not in RUN_KEYS})
    elif not isinstance(config, algo.config_class):
        raise TypeError(
            f"config is a {type(config).__name__}; agent {args.agent!r} takes a {algo.config_class.__name__}"
        )
    run = {
        "total_timesteps": args.total_timesteps or tuned.get("total_timesteps", FALLBACK_TIMESTEPS),
        "num_envs": args.num_envs or tuned.get("num_envs", FALLBACK_NUM_ENVS),
        "policy": args.policy or tuned.get("policy", DEFAULT_POLICY.get(args.agent.lower(), "LMPolicy")),
    }
    return run, config


def train_agent(args: TrainArguments, config: AlgoConfig | None = None) -> TrainResult:
    """Build the env and agent, score the held-out prompts, train, score again, save everything.

    Args:
        args: what to train on and where to save.
        config: the agent's config dataclass (e.g. :class:`~agents.rloo.RLOOConfig`); None takes the
            tuned table's entry for ``args.env`` (when ``args.tuned``) over the library defaults.

    Returns:
        A :class:`TrainResult`; ``out/`` holds ``agent/`` (checkpoint; ``agent/model`` is the policy),
        ``progress.csv`` and TensorBoard logs, and ``train.json`` (settings and both evaluations).

    Raises:
        ValueError: an unknown env id or agent, a bad prompts file, or an ``out`` holding a run.
    """
    algo = check_agent(args.agent)
    if args.env is not None:
        check_env_id(args.env)
    run, config = resolve_settings(args, config)
    out = Path(args.out or f"runs/{(args.env or 'custom').split('/')[-1]}-{args.agent.lower()}")
    _check_out(out, args.overwrite)
    env_id, envs = make_envs(args, run["num_envs"])
    agent = algo(
        run["policy"], envs, seed=args.seed, tensorboard_log=out, verbose=0, **dataclasses.asdict(config)
    )
    prompts = _heldout_prompts(env_id, args, envs)
    vector_env = envs.unwrapped
    before = evaluate_policy(
        vector_env, prompts, n_samples=args.eval_samples, seed=EVAL_SEED, reference=False
    )
    start = time.perf_counter()
    agent.learn(total_timesteps=run["total_timesteps"], progress_bar=args.progress)
    seconds = time.perf_counter() - start
    after = evaluate_policy(vector_env, prompts, n_samples=args.eval_samples, seed=EVAL_SEED)
    agent.save(out / "agent")
    settings = {"arguments": dataclasses.asdict(args), "run": run, "config": dataclasses.asdict(config)}
    summary = {
        "env": env_id,
        "agent": args.agent.lower(),
        **settings,
        "seconds": seconds,
        "before": {k: v for k, v in before.to_dict().items() if k != "samples"},
        "after": {k: v for k, v in after.to_dict().items() if k != "samples"},
        "samples": after.to_dict()["samples"][:: args.eval_samples],
    }
    agent.parallel.on_main(
        lambda: write_json_atomic(out / RESULT_FILE, summary), phase="summary"
    )  # rank 0 writes
    return TrainResult(agent, before, after, out, settings, seconds)


__all__ = [
    "ALGORITHMS",
    "TrainArguments",
    "TrainResult",
    "check_agent",
    "check_env_id",
    "make_envs",
    "read_prompts",
    "resolve_settings",
    "train_agent",
    "tuned_for",
]
