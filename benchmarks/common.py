"""Shared harness for the side-by-side benchmarks: settings, model, reward, result record, processes.

Every side of a comparison (textrl, TRL, ``generate``) reads the same frozen ``BenchSettings``,
builds its policy with ``build_policy_and_tokenizer`` and scores with the same reward, so the
only thing that differs is the code under test. Each side runs in its own Python process
(``run_module_in_subprocess``) so that peak memory, caches and thread pools never mix.

Heavy imports (transformers, tokenizers, vaderSentiment) stay inside functions, so the Hugging Face
offline switches (set by ``benchmarks.measure``, imported first) apply before ``huggingface_hub`` loads.
Peak memory, medians, machine info and output live in ``benchmarks.measure``.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmarks.measure import machine_info, median

REPO_ROOT = Path(__file__).resolve().parent.parent
# Bump when the tiny fallback model or its tokenizer corpus changes, so cached copies are rebuilt.
TINY_ASSET_VERSION = 1

SENTIMENT_PROMPTS: tuple[str, ...] = (
    "This movie was",
    "The acting in this film",
    "I walked out of the cinema feeling",
    "The plot of this story",
    "Honestly, the director",
    "The soundtrack was",
    "My friends and I thought the ending",
    "From the first scene, it was clear that",
    "The lead actress gave a performance that was",
    "Compared to the book, the film",
    "The special effects were",
    "After two hours, I felt",
    "The dialogue in this picture",
    "Critics called it",
    "The pacing of the second act",
    "This sequel is",
    "The cast delivers",
    "Watching it again, I found it",
    "The cinematography is",
    "Kids in the audience seemed",
    "The villain of the story was",
    "As a comedy, it is",
    "The script felt",
    "I would describe this film as",
    "The final battle scene was",
    "The characters were",
    "Overall, the experience was",
    "The opening credits",
    "This documentary is",
    "The romance between the leads",
    "By the end of the movie, I was",
    "The costumes and sets looked",
)


ALGOS: tuple[str, ...] = ("rloo", "grpo")


@dataclass(frozen=True)
class BenchSettings:
    """Everything that must be identical on both sides of a comparison. Recorded in every result."""

    # Model: "auto" = textrl's embedded default model if built, else the tiny fallback below;
    # "tiny" = always the fallback; anything else = a local directory with config.json + tokenizer.
    model: str = "auto"
    n_layer: int = 2  # fallback GPT-2 dims (ignored when a directory model is used)
    n_head: int = 4
    n_embd: int = 128
    n_positions: int = 256
    tokenizer_vocab_size: int = 1024  # BPE target (an upper bound: the small corpus stops it near 640)
    # Data and reward. Step i uses prompts[i*B : (i+1)*B] (cyclic, no shuffling), see prompts_for_step.
    prompts: tuple[str, ...] = SENTIMENT_PROMPTS
    reward: str = "vader_compound"
    # Algorithm: "rloo" (KL in the reward) or "grpo" (TRL's GRPO: beta * k3 in the loss; kl_estimator unused).
    algo: str = "rloo"
    loss_type: str = "dapo"  # GRPO only: TRL's default aggregation ("grpo", "bnpo", "dr_grpo", "dapo")
    scale_rewards: str = "group"  # GRPO only: "group", "batch" or "none"
    # One step: B prompts x k samples of up to T new tokens, score, KL to reference, one update.
    prompts_per_step: int = 8  # B
    k: int = 4  # generations per prompt (GRPO's num_generations)
    max_new_tokens: int = 16  # T
    temperature: float = 1.0
    top_k: int = 0  # 0 = off: pure sampling from softmax(logits / temperature)
    top_p: float = 1.0
    learning_rate: float = 1e-3  # the tiny fallback is untrained: 1e-4 barely moves it in 30 steps
    kl_coef: float = 0.05  # beta; RLOO: k1 summed over the completion, a reward penalty; GRPO: k3 in the loss
    kl_estimator: str = "k1"
    adam_eps: float = 1e-5
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    lr_schedule: str = "constant"
    steps: int = 10
    reward_window: int = 5  # "final reward" = mean score of the last this-many steps (also the moving mean)
    # Time-to-reward mode: stop at the first step whose moving mean score (last reward_window steps)
    # reaches this; `steps` is then the cap. None = train exactly `steps` steps.
    target_reward: float | None = None
    seed: int = 0
    torch_threads: int = 1
    device: str = "cpu"
    # Charge each step's time to its phases (benchmarks/phase_clock.py); off for throughput runs.
    profile_phases: bool = False

    def __post_init__(self) -> None:
        if self.k < 2:
            raise ValueError(f"k={self.k}: RLOO and GRPO need at least 2 generations per prompt; use k>=2")
        if self.algo not in ALGOS:
            raise ValueError(f"unknown algo {self.algo!r}; choose one of {ALGOS}")
        for name in ("prompts_per_step", "max_new_tokens", "steps", "reward_window", "torch_threads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} must be >= 1")
        if not self.prompts or len(self.prompts) % self.prompts_per_step:
            raise ValueError(
                f"{len(self.prompts)} prompts is not a multiple of prompts_per_step={self.prompts_per_step}; "
                "pass a prompt list whose length is a multiple of B so every step sees B distinct prompts"
            )
        if self.reward not in REWARDS:
            raise ValueError(f"unknown reward {self.reward!r}; choose one of {sorted(REWARDS)}")

    @property
    def completions_per_step(self) -> int:
        return self.prompts_per_step * self.k

    @property
    def total_completions(self) -> int:
        return self.steps * self.completions_per_step

    def prompts_for_step(self, step: int) -> list[str]:
        """The B prompts of optimizer step ``step`` (0-based), in TRL's unshuffled sampler order."""
        start = (step * self.prompts_per_step) % len(self.prompts)
        return list(self.prompts[start : start + self.prompts_per_step])

    def replace(self, **changes: Any) -> BenchSettings:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["prompts"] = list(self.prompts)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BenchSettings:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown BenchSettings fields {sorted(unknown)}; known: {sorted(known)}")
        if "prompts" in data:
            data = {**data, "prompts": tuple(data["prompts"])}
        return cls(**data)


# --------------------------------------------------------------------------- reward

_VADER: Any = None


def vader_compound(prompts: Sequence[str], completions: Sequence[str], **kwargs: Any) -> list[float]:
    """VADER compound sentiment in [-1, 1] of each completion (the prompt is not scored).

    A plain callable over lists of strings: it meets textrl's ``RewardModel`` protocol and TRL's
    custom reward-function signature (TRL passes extra keyword arguments, which are ignored).
    """
    global _VADER
    if _VADER is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _VADER = SentimentIntensityAnalyzer()
    return [float(_VADER.polarity_scores(text)["compound"]) for text in completions]


REWARDS: dict[str, Callable[..., list[float]]] = {"vader_compound": vader_compound}


def get_reward(name: str) -> Callable[..., list[float]]:
    if name not in REWARDS:
        raise ValueError(f"unknown reward {name!r}; choose one of {sorted(REWARDS)}")
    return REWARDS[name]


# --------------------------------------------------------------------------- model and tokenizer


def default_model_dir() -> Path | None:
    """textrl's embedded default model directory, or None while it has not been built."""
    try:
        from textrl_env import default_model
    except ImportError:
        return None
    path = getattr(default_model, "DEFAULT_MODEL_PATH", None)
    if path is not None and (Path(path) / "config.json").is_file():
        return Path(path)
    return None


def review_corpus(seed: int, n: int = 4000) -> list[str]:
    """A small generated corpus of movie-review sentences for training the fallback tokenizer."""
    rng = random.Random(seed)
    subjects = ["movie", "film", "plot", "acting", "ending", "script", "cast", "story", "music", "director"]
    good = ["great", "wonderful", "amazing", "good", "beautiful", "fun", "brilliant", "happy", "love", "best"]
    bad = ["bad", "terrible", "boring", "awful", "sad", "worst", "dull", "hate", "poor", "ugly"]
    fillers = ["really", "very", "quite", "so", "truly", "not", "a bit", "rather"]
    templates = [
        "The {s} was {f} {a}.",
        "I thought the {s} was {a}, and the {s2} was {a2}.",
        "What a {a} {s}!",
        "This {s} is {f} {a} and {a2}.",
        "The {s} felt {a}; I {v} it.",
    ]
    out = []
    for _ in range(n):
        adjs = good if rng.random() < 0.5 else bad
        out.append(
            rng.choice(templates).format(
                s=rng.choice(subjects),
                s2=rng.choice(subjects),
                f=rng.choice(fillers),
                a=rng.choice(adjs),
                a2=rng.choice(good + bad),
                v=rng.choice(["loved", "liked", "hated", "enjoyed", "disliked"]),
            )
        )
    return out + list(SENTIMENT_PROMPTS)


def _tiny_model_dir(settings: BenchSettings) -> Path:
    """Build (once, cached on disk) the fallback tiny GPT-2 and its byte-level BPE tokenizer."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    spec = [TINY_ASSET_VERSION, settings.n_layer, settings.n_head, settings.n_embd, settings.n_positions]
    spec += [settings.tokenizer_vocab_size, settings.seed]
    key = hashlib.sha256(json.dumps(spec).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("TEXTRL_BENCH_CACHE", tempfile.gettempdir()))
    target = cache / f"textrl-bench-tiny-{key}"
    if (target / "config.json").is_file() and (target / "tokenizer.json").is_file():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=cache, prefix=f"{target.name}.tmp"))

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=settings.tokenizer_vocab_size,
        special_tokens=["<|endoftext|>", "<|pad|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    bpe.train_from_iterator(review_corpus(settings.seed), trainer)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|pad|>",  # distinct from EOS, so padding is never mistaken for an ended response
        padding_side="left",
    )
    tokenizer.save_pretrained(tmp)

    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=settings.n_positions,
        n_embd=settings.n_embd,
        n_layer=settings.n_layer,
        n_head=settings.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(settings.seed)
    GPT2LMHeadModel(config).save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process finished the same build first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def model_dir(settings: BenchSettings) -> tuple[Path, str]:
    """The directory both sides load the policy from, and where it came from."""
    if settings.model not in ("auto", "tiny"):
        path = Path(settings.model)
        if not (path / "config.json").is_file():
            raise ValueError(
                f"model={settings.model!r} has no config.json; pass 'auto', 'tiny' or a model dir"
            )
        return path, "path"
    if settings.model == "auto" and (path := default_model_dir()) is not None:
        return path, "textrl_default"
    return _tiny_model_dir(settings), "tiny_gpt2"


def build_policy_and_tokenizer(settings: BenchSettings) -> tuple[Any, Any]:
    """Load the identical policy (float32, dropout off, on ``settings.device``) and left-padding tokenizer.

    Always loaded from a directory with ``from_pretrained`` so ``model.config._name_or_path`` is a
    local path: TRL builds its reference model by re-loading that path.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, _ = model_dir(settings)
    tokenizer = AutoTokenizer.from_pretrained(path, padding_side="left")
    if tokenizer.pad_token_id is None or tokenizer.pad_token_id == tokenizer.eos_token_id:
        raise ValueError(f"tokenizer at {path} needs a PAD token distinct from EOS for a fair benchmark")
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32).to(settings.device)
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    return model, tokenizer


def model_info(settings: BenchSettings, model: Any, tokenizer: Any) -> dict[str, Any]:
    path, source = model_dir(settings)
    config = model.config.to_dict()
    dims = ("model_type", "vocab_size", "n_layer", "n_head", "n_embd", "n_positions", "num_hidden_layers")
    return {
        "source": source,
        "path": str(path),
        "n_params": sum(p.numel() for p in model.parameters()),
        "config": {k: config[k] for k in dims if k in config},
        "pad_token_id": tokenizer.pad_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


def configure_torch(settings: BenchSettings) -> None:
    """Threads and seed, identical on every side; call first thing in a side's process."""
    torch.set_num_threads(settings.torch_threads)
    with contextlib.suppress(RuntimeError):  # already set, or parallel work already started here
        torch.set_num_interop_threads(1)
    torch.manual_seed(settings.seed)
    random.seed(settings.seed)


# --------------------------------------------------------------------------- result record


def target_reached(settings: BenchSettings, reward_history: Sequence[float]) -> bool:
    """Time-to-reward mode: whether the mean score of the last ``reward_window`` steps (a full window)
    has reached ``settings.target_reward``; always False without a target."""
    window = list(reward_history[-settings.reward_window :])
    if settings.target_reward is None or len(window) < settings.reward_window:
        return False
    return sum(window) / len(window) >= settings.target_reward


def side_result(
    side: str,
    settings: BenchSettings,
    *,
    train_wall_s: float,
    step_times_s: Sequence[float],
    completions: int,
    completion_tokens: int,
    reward_history: Sequence[float],
    memory: dict[str, float],
    model: dict[str, Any],
    **extra: Any,
) -> dict[str, Any]:
    """The result record every training side returns, so sides compare field by field.

    ``reward_history[i]`` is the mean reward-model score (no KL term) of step i's completions.
    """
    window = list(reward_history[-settings.reward_window :])
    steady = list(step_times_s[1:]) or list(step_times_s)  # the first step pays one-off warm-up costs
    return {
        "side": side,
        "settings": settings.to_dict(),
        "model": model,
        "completions": completions,
        "completion_tokens": completion_tokens,
        "train_wall_s": train_wall_s,
        "completions_per_s": completions / train_wall_s,
        "completion_tokens_per_s": completion_tokens / train_wall_s,
        "step_times_s": list(step_times_s),
        "median_step_s": median(steady),
        "completions_per_s_median_step": settings.completions_per_step / median(steady),
        "peak_mb": memory["peak_rss_delta_mb"],
        "memory": memory,
        "reward_history": list(reward_history),
        "reward_final": sum(window) / len(window) if window else float("nan"),
        "steps_run": len(step_times_s),
        "target_reward": settings.target_reward,
        "reached_target": target_reached(settings, reward_history)
        if settings.target_reward is not None
        else None,
        "machine": machine_info(settings.device),
        **extra,
    }


def side_rows(result: dict[str, Any]) -> list[list[Any]]:
    """The rows of one side's summary table (``python -m benchmarks.<side>`` without ``--quiet``)."""
    window = min(result["settings"]["reward_window"], result["steps_run"])
    rows = [
        ["completions/s (total / train wall)", result["completions_per_s"]],
        ["completions/s (median step)", result["completions_per_s_median_step"]],
        ["completion tokens/s", result["completion_tokens_per_s"]],
        ["train wall s", result["train_wall_s"]],
        ["median step s", result["median_step_s"]],
        ["peak RSS delta MB", result["peak_mb"]],
        ["reward step 1", result["reward_history"][0]],
        [f"reward last {window} steps", result["reward_final"]],
        ["completions", result["completions"]],
    ]
    if result["target_reward"] is not None:
        rows.append([f"reached moving-mean reward {result['target_reward']}", str(result["reached_target"])])
        rows.append(["steps run", result["steps_run"]])
    return rows


# --------------------------------------------------------------------------- processes and CLI


def add_settings_arguments(parser: argparse.ArgumentParser) -> None:
    """``--settings FILE`` plus one ``--field`` override per scalar ``BenchSettings`` field."""
    parser.add_argument("--settings", type=Path, help="JSON file of BenchSettings fields")
    parser.add_argument("--json", type=Path, help="write the result record here")
    parser.add_argument("--quiet", action="store_true", help="no table on stdout")
    scalar = {"int": int, "float": float, "str": str, "float | None": float}
    for f in dataclasses.fields(BenchSettings):
        if f.type in scalar:
            parser.add_argument(f"--{f.name.replace('_', '-')}", type=scalar[f.type], default=None)


def settings_from_args(args: argparse.Namespace) -> BenchSettings:
    data: dict[str, Any] = json.loads(args.settings.read_text()) if args.settings else {}
    for f in dataclasses.fields(BenchSettings):
        value = getattr(args, f.name, None)
        if value is not None:
            data[f.name] = value
    return BenchSettings.from_dict(data)


def run_module_in_subprocess(module: str, settings: BenchSettings, timeout_s: float | None = None) -> dict:
    """Run ``python -m <module> --settings ... --json ...`` in a fresh process; return its record."""
    with tempfile.TemporaryDirectory(prefix="textrl-bench-") as tmp:
        settings_path, out_path = Path(tmp) / "settings.json", Path(tmp) / "result.json"
        settings_path.write_text(json.dumps(settings.to_dict()))
        cmd = [
            sys.executable,
            "-m",
            module,
            "--settings",
            str(settings_path),
            "--json",
            str(out_path),
            "--quiet",
        ]
        subprocess.run(cmd, cwd=REPO_ROOT, check=True, timeout=timeout_s)
        return json.loads(out_path.read_text())


def run_interleaved(modules: Sequence[str], settings: BenchSettings, repeats: int) -> dict[str, list[dict]]:
    """Run each side ``repeats`` times, alternating sides (A B, B A, A B, ...) so that load from other
    processes on a shared machine falls on both sides alike. Returns each module's records."""
    runs: dict[str, list[dict]] = {module: [] for module in modules}
    for i in range(repeats):
        for module in modules if i % 2 == 0 else list(reversed(modules)):
            runs[module].append(run_module_in_subprocess(module, settings))
    return runs
