"""Scoring a policy on held-out prompts: mean reward, mean KL to the reference, win-rate, samples.

:func:`evaluate_policy` samples completions from the env's model (the policy) and reads what the
env measures for each: the reward model's score and the KL to the env's frozen reference, summed
over the response. It then samples the same prompts from the reference and asks a judge (by default
the env's own reward) which of each pair is better: the win-rate is the share of pairs the policy
wins, a tie counting half. Nothing of a training run is touched: sampling has its own seed.

Example::

    envs = gym.make_vec("textrl/Sentiment-v0", num_envs=16, vectorization_mode="vector_entry_point",
                        model="runs/train/policy", ref_model=reference)
    report = evaluate_policy(envs, HELDOUT_SENTIMENT_PROMPTS, n_samples=4)
    print(report.reward_mean, report.kl_mean, report.win_rate)
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar, cast

import torch

from agents.collect import collect_episodes
from reward_models.protocol import RewardModel, compute_rewards, reward_name
from reward_models.safe_loading import from_pretrained_safely
from textrl_env import TextGenerationVectorEnv


@dataclass
class Completions:
    """Sampled completions with the env's score and summed KL of each (all on the CPU)."""

    prompts: list[str]
    completions: list[str]
    scores: torch.Tensor  # (N,)
    kl: torch.Tensor  # (N,) sum over the response of the per-token KL to the reference


@dataclass
class Sample:
    """One evaluated prompt: the policy's completion and, with a reference, the reference's."""

    prompt: str
    completion: str
    reward: float
    kl: float
    reference_completion: str | None = None
    judge_policy: float | None = None
    judge_reference: float | None = None


@dataclass
class EvalReport:
    """What :func:`evaluate_policy` measured.

    Attributes:
        reward_mean: mean reward-model score of the policy's completions (no KL term).
        reward_std: their standard deviation.
        kl_mean: mean KL to the reference, summed over each response (nats).
        win_rate: share of prompts where the judge prefers the policy's completion to the
            reference's (ties count half); None when no reference was sampled.
        reference_reward_mean: mean reward of the reference's completions (None without them).
        judge: the judge's name (None without a reference).
        n_prompts: distinct prompts evaluated.
        n_samples: completions per prompt.
        samples: every evaluated completion, in prompt order.
    """

    reward_mean: float
    reward_std: float
    kl_mean: float
    win_rate: float | None
    reference_reward_mean: float | None
    judge: str | None
    n_prompts: int
    n_samples: int
    samples: list[Sample] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (the samples included)."""
        return asdict(self)

    def save_json(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`to_dict` to ``path`` through a temp file and a rename (never half-written)."""
        return write_json_atomic(path, self.to_dict())

    def table(self, n_examples: int = 8) -> Any:
        """A rich table of the first ``n_examples`` prompts' completions (one per prompt)."""
        from rich.table import Table

        table = Table(title="Sample completions", show_lines=True)
        table.add_column("prompt", style="bold")
        table.add_column("policy")
        with_reference = self.win_rate is not None
        if with_reference:
            table.add_column("reference")
        from rich.markup import escape  # model output is text, never markup

        for sample in self.samples[:: max(self.n_samples, 1)][:n_examples]:
            row = [escape(sample.prompt), f"{escape(sample.completion)} [dim]({sample.reward:+.2f})[/dim]"]
            if with_reference:
                row.append(
                    f"{escape(sample.reference_completion or '')} [dim]({sample.judge_reference:+.2f})[/dim]"
                )
            table.add_row(*row)
        return table

    def summary_table(self) -> Any:
        """A rich table of the headline numbers."""
        from rich.table import Table

        table = Table(title=f"Evaluation on {self.n_prompts} prompts x {self.n_samples} samples")
        table.add_column("metric")
        table.add_column("value", justify="right")
        table.add_row("mean reward", f"{self.reward_mean:+.3f} (std {self.reward_std:.3f})")
        table.add_row("mean KL to reference", f"{self.kl_mean + 0.0:.3f}")
        if self.win_rate is not None:
            table.add_row("reference mean reward", f"{self.reference_reward_mean:+.3f}")
            table.add_row(f"win-rate vs reference ({self.judge})", f"{self.win_rate:.3f}")
        return table


def write_json_atomic(path: str | os.PathLike[str], data: Any) -> Path:
    """``json.dump`` to a temp file beside ``path``, fsync, then ``os.replace`` into place."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, target)
    return target


def win_rate(policy_scores: torch.Tensor, reference_scores: torch.Tensor) -> float:
    """Share of pairs where the policy's score beats the reference's; a tie counts half.

    Raises:
        ValueError: the two tensors differ in shape or are empty.
    """
    if policy_scores.shape != reference_scores.shape or policy_scores.numel() == 0:
        raise ValueError(
            f"win_rate() needs two non-empty score tensors of one shape, got {tuple(policy_scores.shape)} "
            f"and {tuple(reference_scores.shape)}; pass one score per pair in each"
        )
    wins = (policy_scores > reference_scores).float() + 0.5 * (policy_scores == reference_scores).float()
    return float(wins.mean())


@torch.no_grad()
def sample_completions(
    env: TextGenerationVectorEnv,
    prompts: Sequence[str],
    n_samples: int = 1,
    seed: int = 0,
    act: Callable[[dict[str, torch.Tensor]], torch.Tensor] | None = None,
    deterministic: bool = False,
) -> Completions:
    """Complete each prompt ``n_samples`` times (adjacent) with the env's model, in batches of ``num_envs``.

    Args:
        env: the native vector env; its model is the policy sampled.
        prompts: the prompts.
        n_samples: completions per prompt.
        seed: seeds a sampler of its own.
        act: for a policy whose logits are not the env model's, ``obs -> logits``; None samples the env's.
        deterministic: greedy tokens instead of sampled ones.
    """
    if isinstance(prompts, str) or len(prompts) == 0:
        raise ValueError(f"prompts must be a non-empty list of strings, got {prompts!r}")
    if not (isinstance(n_samples, int) and n_samples >= 1):
        raise ValueError(f"n_samples must be an int >= 1, got {n_samples!r}")
    wanted = [p for p in prompts for _ in range(n_samples)]
    n = env.num_envs
    generator = torch.Generator(device=env.device).manual_seed(seed)
    was_training = env.model.training
    env.model.eval()
    texts: list[str] = []
    scores, kl = [], []
    try:
        for start in range(0, len(wanted), n):
            chunk = wanted[start : start + n]
            padded = chunk + [chunk[-1]] * (n - len(chunk))  # every row needs a prompt
            episodes = collect_episodes(env, padded, act, generator, deterministic=deterministic)
            assert episodes is not None  # no on_step hook, so collection never stops early
            texts += episodes.completions[: len(chunk)]
            scores.append(episodes.scores[: len(chunk)].float().cpu())
            kl.append(episodes.kl.sum(-1)[: len(chunk)].float().cpu())
    finally:
        env.model.train(was_training)
    return Completions(wanted, texts, torch.cat(scores), torch.cat(kl))


def reference_env(env: TextGenerationVectorEnv) -> TextGenerationVectorEnv:
    """A vector env like ``env`` whose model is ``env``'s frozen reference (so its KL is 0)."""
    return TextGenerationVectorEnv(
        model=env.ref_model,
        tokenizer=env.tokenizer,
        prompts=env.prompts,
        reward_model=env.reward_model,
        num_envs=env.num_envs,
        kl_coef=env.kl_coef,
        kl_estimator=env.kl_estimator,
        max_new_tokens=env.max_new_tokens,
        max_prompt_tokens=env.prompt_length,
        temperature=env.temperature,
        ref_model=env.ref_model,
        device=env.device,
    )


def evaluate_policy(
    env: TextGenerationVectorEnv,
    prompts: Sequence[str] | None = None,
    *,
    n_samples: int = 4,
    seed: int = 0,
    reference: bool | TextGenerationVectorEnv = True,
    judge: RewardModel | None = None,
) -> EvalReport:
    """Score the env's model (the policy) on ``prompts``: reward, KL to the reference, win-rate, samples.

    Args:
        env: a native vector env built around the policy (``model=``) and the reference (``ref_model=``).
        prompts: held-out prompts; None uses the env's own prompts.
        n_samples: completions per prompt (the reference gets as many).
        seed: the sampler's seed (the same for policy and reference).
        reference: True samples the env's reference for the win-rate, an env samples that env's
            model instead, False skips the win-rate.
        judge: the reward that decides each policy-vs-reference pair; None uses the env's reward.

    Returns:
        An :class:`EvalReport`.
    """
    prompts = list(env.prompts if prompts is None else prompts)
    policy = sample_completions(env, prompts, n_samples, seed)
    samples = [
        Sample(p, c, float(r), float(k))
        for p, c, r, k in zip(policy.prompts, policy.completions, policy.scores, policy.kl, strict=True)
    ]
    win, ref_mean, judge_name = None, None, None
    if reference is not False:
        ref_env = reference_env(env) if reference is True else reference
        ref = sample_completions(ref_env, prompts, n_samples, seed)  # type: ignore[arg-type]
        judge = judge if judge is not None else env.reward_model
        judge_name = reward_name(judge)
        judged_policy = compute_rewards(judge, policy.prompts, policy.completions)
        judged_ref = compute_rewards(judge, ref.prompts, ref.completions)
        win, ref_mean = win_rate(judged_policy, judged_ref), float(ref.scores.mean())
        for sample, text, jp, jr in zip(samples, ref.completions, judged_policy, judged_ref, strict=True):
            sample.reference_completion, sample.judge_policy, sample.judge_reference = (
                text,
                float(jp),
                float(jr),
            )
    std = float(policy.scores.std()) if len(samples) > 1 else 0.0
    return EvalReport(
        reward_mean=float(policy.scores.mean()),
        reward_std=std if math.isfinite(std) else 0.0,
        kl_mean=float(policy.kl.mean()),
        win_rate=win,
        reference_reward_mean=ref_mean,
        judge=judge_name,
        n_prompts=len(prompts),
        n_samples=n_samples,
        samples=samples,
    )


def _help(text: str, default: Any = None) -> Any:
    return field(default=default, metadata={"help": text})


@dataclass
class EvalArguments:
    """What :func:`evaluate_model` scores, on what, against what (``textrl eval``'s flags)."""

    # Path settings, resolved against a --config file's folder (agents.cli.paths).
    PATHS: ClassVar[dict[str, str]] = {
        "policy": "input", "reference": "model", "reward_model": "model", "prompts": "input",
        "judge": "model", "out": "output",
    }  # fmt: skip

    policy: str | None = _help(
        "the policy: a causal LM directory, a `textrl train` run directory or an agent checkpoint."
    )
    env: str = _help("registered env id whose reward and prompts are used.", "textrl/Sentiment-v0")
    reference: str | None = _help(
        "reference model (KL and win-rate); default: the env's model (the embedded one)."
    )
    reward_model: str | None = _help("score with this reward model directory instead of the env's reward.")
    prompts: str | None = _help(
        "held-out prompts file (.jsonl of {'prompt'} or text lines); default: the env's held-out."
    )
    judge: str = _help(
        "who decides the win-rate: 'reward' (the env's reward), 'sentiment' (VADER) or a reward model.",
        "reward",
    )
    n_samples: int = _help("completions per prompt.", 4)
    num_envs: int = _help("rows sampled at once.", 16)
    max_new_tokens: int | None = _help("response length limit; default: the env's.")
    seed: int = _help("the sampler's seed (the same for policy and reference).", 1234)
    device: str = _help("cpu or cuda.", "cpu")
    out: str | None = _help("write the report (with every sample) to this JSON file.")
    examples: int = _help("prompts shown in the table of sample completions.", 8)


def resolve_policy_dir(path: str | os.PathLike[str]) -> Path:
    """The model directory of a causal LM dir, an agent checkpoint (``.../model``) or a train run (``.../agent/model``)."""
    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(
            f"policy {os.fspath(path)} not found; pass a model directory, a `textrl train` run directory or a checkpoint"
        )
    for candidate in (root / "agent", root):
        if (candidate / "textrl_checkpoint.json").is_file():
            return candidate / "model"
    return root


def _judge(name: str, device: str) -> RewardModel | None:
    if name == "reward":
        return None
    if name == "sentiment":
        from reward_models import SentimentReward

        return SentimentReward()
    from reward_models.learned import LearnedRewardModel

    return LearnedRewardModel(name, device=device)


def evaluate_model(args: EvalArguments) -> EvalReport:
    """Load the policy and reference named by ``args``, build the env, and :func:`evaluate_policy` them.

    Raises:
        ValueError: an unknown env id, no policy, or a reward model that is not a sequence classifier.
        FileNotFoundError: a missing policy or prompts file.
    """
    import gymnasium as gym
    from transformers import AutoModelForCausalLM

    from agents.train import check_env_id, read_prompts
    from textrl_env.default_model import DEFAULT_MODEL_PATH, HELDOUT_SENTIMENT_PROMPTS

    if args.policy is None:
        raise ValueError("no policy to evaluate: pass its directory (textrl eval RUN_DIR_OR_MODEL)")
    env_id = check_env_id(args.env)
    if args.reference is None and env_id == "textrl/TextGeneration-v0":
        raise ValueError(f"{env_id} has no default model: pass --reference MODEL_DIR")
    policy = from_pretrained_safely(AutoModelForCausalLM, resolve_policy_dir(args.policy))
    reference = from_pretrained_safely(AutoModelForCausalLM, args.reference or DEFAULT_MODEL_PATH)
    kwargs: dict[str, Any] = {"model": policy, "ref_model": reference, "device": args.device}
    if args.reward_model is not None:
        from reward_models.learned import LearnedRewardModel

        kwargs["reward_model"] = LearnedRewardModel(args.reward_model, device=args.device)
    if args.max_new_tokens is not None:
        kwargs["max_new_tokens"] = args.max_new_tokens
    if args.prompts is not None:
        prompts = read_prompts(args.prompts)
        kwargs["prompts"] = prompts
    made = gym.make_vec(env_id, num_envs=args.num_envs, vectorization_mode="vector_entry_point", **kwargs)
    env = cast(TextGenerationVectorEnv, made.unwrapped)
    if args.prompts is None:
        review = env_id in ("textrl/Sentiment-v0", "textrl/Preference-v0")
        prompts = list(HELDOUT_SENTIMENT_PROMPTS) if review else list(env.prompts)
    report = evaluate_policy(
        env,
        prompts,
        n_samples=args.n_samples,
        seed=args.seed,
        judge=_judge(args.judge, args.device),
    )
    if args.out is not None:
        report.save_json(args.out)
    return report


__all__ = [
    "Completions",
    "EvalArguments",
    "EvalReport",
    "Sample",
    "evaluate_model",
    "evaluate_policy",
    "reference_env",
    "resolve_policy_dir",
    "sample_completions",
    "win_rate",
    "write_json_atomic",
]
