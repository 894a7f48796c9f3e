"""The TRL side of ``train_vs_trl``: TRL's ``RLOOTrainer`` or ``GRPOTrainer`` on the shared ``BenchSettings``.

One TRL optimizer step is configured to be exactly one textrl step of the same algorithm
(``settings.algo``): B prompts x k samples of up to T new tokens with ``model.generate``, the
forwards TRL needs for the old log-probs and the reference, the reward function, the advantages
(RLOO: leave-one-out; GRPO: group mean and std), then one forward/backward over all B*k completions
and one AdamW update. No reuse of a generation batch across updates (``num_iterations=1``,
``steps_per_generation=1``), no gradient accumulation, no gradient checkpointing, float32 (TRL
defaults to bf16 and gradient checkpointing; both are turned off). RLOO's KL is TRL's k1 reward
penalty with ``beta = kl_coef``; GRPO's is TRL's ``beta * k3`` loss term with ``beta = kl_coef``.

With ``target_reward`` set (time-to-reward mode), training stops at the first step whose moving
mean score over ``reward_window`` steps reaches it (``steps`` is the cap).

    python -m benchmarks.trl_train --steps 10 --json benchmarks/out/trl_rloo.json
    python -m benchmarks.trl_train --algo grpo --steps 10 --json benchmarks/out/trl_grpo.json
"""

from __future__ import annotations

import argparse
import functools
import tempfile
import time
import warnings
from typing import Any

from benchmarks import common, measure, phase_clock


def trl_config_kwargs(settings: common.BenchSettings, output_dir: str) -> dict[str, Any]:
    """The exact ``RLOOConfig`` / ``GRPOConfig`` arguments that make one TRL step equal one textrl step."""
    if settings.algo == "rloo" and settings.kl_estimator != "k1":
        raise ValueError(
            f"kl_estimator={settings.kl_estimator!r}: TRL's RLOOTrainer only implements k1 "
            "(log pi - log pi_ref summed over the completion); benchmark against TRL with kl_estimator='k1'"
        )
    if settings.algo == "rloo":
        specific: dict[str, Any] = {"normalize_advantages": False}
    else:  # GRPO: the KL is beta * k3 in the loss on both sides; the same aggregation and scaling
        specific = {"loss_type": settings.loss_type, "scale_rewards": settings.scale_rewards, "epsilon": 0.2}
    return {
        "output_dir": output_dir,
        # One step = one generation batch of B prompts x k completions = one optimizer update.
        "per_device_train_batch_size": settings.completions_per_step,  # counts completions, not prompts
        "num_generations": settings.k,
        "steps_per_generation": 1,  # generation_batch_size = B*k, regenerated every step
        "gradient_accumulation_steps": 1,
        "num_iterations": 1,  # no reuse of a batch: the PPO-style ratio is exactly 1
        "max_steps": settings.steps,
        "shuffle_dataset": False,  # step i sees settings.prompts_for_step(i)
        # Sampling.
        "max_completion_length": settings.max_new_tokens,
        "temperature": settings.temperature,
        "top_k": settings.top_k,
        "top_p": settings.top_p,
        # Objective and optimizer.
        "beta": settings.kl_coef,  # RLOO: k1 summed over the completion, off the reward; GRPO: k3 in the loss
        "learning_rate": settings.learning_rate,
        "lr_scheduler_type": settings.lr_schedule,
        "warmup_steps": 0,
        "adam_epsilon": settings.adam_eps,
        "weight_decay": settings.weight_decay,
        "max_grad_norm": settings.max_grad_norm,
        **specific,
        "disable_dropout": True,
        "seed": settings.seed,
        # Precision and memory: same float32 arithmetic as textrl on CPU.
        "bf16": False,  # TRL's default is bf16=True unless fp16 is set
        "fp16": False,
        # TRL defaults gradient_checkpointing=True; transformers 5 renamed it activation_checkpointing
        # (the old name still works but warns).
        "activation_checkpointing": False,
        "use_cpu": settings.device == "cpu",
        # Offline and quiet.
        "report_to": "none",
        "save_strategy": "no",
        "push_to_hub": False,
        "logging_steps": 1,
        "disable_tqdm": True,
        "log_level": "warning",
        "dataloader_num_workers": 0,
        "dataloader_pin_memory": False,
    }


def _recorder_class() -> type:
    from transformers import TrainerCallback

    class StepRecorder(TrainerCallback):
        """Times each optimizer step (generate + score + KL + update), keeps TRL's per-step logs and, in
        time-to-reward mode, stops training once the moving mean score reaches the target."""

        def __init__(self, settings: common.BenchSettings) -> None:
            self.settings = settings
            self.step_times: list[float] = []
            self.logs: list[dict[str, float]] = []
            self._start = 0.0

        def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self._start = time.perf_counter()

        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            self.step_times.append(time.perf_counter() - self._start)

        def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kwargs: Any) -> Any:
            if logs and "reward" in logs:
                self.logs.append(dict(logs))
                if common.target_reached(self.settings, [log["reward"] for log in self.logs]):
                    control.should_training_stop = True  # the Trainer checks it right after logging
            return control

    return StepRecorder


def _check_schedule(settings: common.BenchSettings, seen: list[list[str]], steps: int) -> None:
    """TRL must have scored step i's B prompts, each k times, exactly as ``prompts_for_step`` says."""
    for step, prompts in enumerate(seen):
        expected = [p for p in settings.prompts_for_step(step) for _ in range(settings.k)]
        if prompts != expected:
            raise RuntimeError(f"step {step}: TRL sampled {prompts}, expected {expected}")
    if len(seen) != steps:
        raise RuntimeError(f"TRL scored {len(seen)} batches for {steps} steps")


def _trainer_classes(algo: str) -> tuple[type, type, str]:
    """TRL's config and trainer classes for ``algo``, and its loss in words (for the record)."""
    if algo == "rloo":
        from trl import RLOOConfig, RLOOTrainer

        return (
            RLOOConfig,
            RLOOTrainer,
            "sequence-level: -min(r*A, clip(r)*A), mean over completions (r == 1 here)",
        )
    from trl import GRPOConfig, GRPOTrainer

    return (
        GRPOConfig,
        GRPOTrainer,
        "token-level: -min(r*A, clip(r)*A) + beta*k3, aggregated by loss_type (r == 1)",
    )


def run_trl(settings: common.BenchSettings) -> dict[str, Any]:
    """Train with TRL's trainer for ``settings.algo`` (``settings.steps`` steps, or until the target
    reward); return the shared result record.

    Throughput is completions generated / wall time of ``trainer.train()``: building the policy,
    TRL's reference copy and the trainer is excluded. Peak memory is measured from before the
    policy is built, so it covers policy, reference, optimizer state and activations.
    """
    common.configure_torch(settings)
    import trl
    from datasets import Dataset
    from transformers import PrinterCallback
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars; the table is the output
    warnings.filterwarnings("ignore", message=".*is deprecated and will be removed in v6.*")
    config_class, trainer_class, loss = _trainer_classes(settings.algo)

    reward_fn = common.get_reward(settings.reward)
    seen: list[list[str]] = []  # the prompts of each scored batch, to check TRL followed the schedule

    @functools.wraps(reward_fn)  # keeps the name TRL logs under: rewards/<name>/mean
    def counting_reward(prompts: list[str], completions: list[str], **kwargs: Any) -> list[float]:
        seen.append(list(prompts))
        return reward_fn(prompts, completions, **kwargs)

    recorder = _recorder_class()(settings)
    prefix = f"trl-{settings.algo}-"
    with measure.PeakMemory() as memory, tempfile.TemporaryDirectory(prefix=prefix) as output_dir:
        model, tokenizer = common.build_policy_and_tokenizer(settings)
        info = common.model_info(settings, model, tokenizer)
        kwargs = trl_config_kwargs(settings, output_dir)
        args = config_class(**kwargs)
        trainer = trainer_class(
            model=model,
            reward_funcs=counting_reward,
            args=args,
            train_dataset=Dataset.from_dict({"prompt": list(settings.prompts)}),
            processing_class=tokenizer,
            callbacks=[recorder],
        )
        if args.gradient_checkpointing or args.bf16:
            raise RuntimeError("TRL config did not take: gradient checkpointing or bf16 is still on")
        trainer.remove_callback(PrinterCallback)  # it prints every log dict when tqdm is off
        clock = phase_clock.trl_clock(trainer_class) if settings.profile_phases else None
        start = time.perf_counter()
        trainer.train()
        wall = time.perf_counter() - start
        if clock is not None:
            clock.restore()

    logs = recorder.logs
    steps = len(recorder.step_times)
    expected = steps if settings.target_reward is not None else settings.steps
    if len(logs) != expected or steps != expected:
        raise RuntimeError(f"expected {expected} logged steps, got {len(logs)} logs and {steps} timed steps")
    _check_schedule(settings, seen, steps)
    lengths = [log["completions/mean_length"] for log in logs]
    return common.side_result(
        "trl",
        settings,
        train_wall_s=wall,
        step_times_s=recorder.step_times,
        completions=sum(len(batch) for batch in seen),
        completion_tokens=round(sum(lengths) * settings.completions_per_step),
        reward_history=[log["reward"] for log in logs],
        memory=memory.report(),
        model=info,
        kl_history=[log.get("kl") for log in logs],
        mean_length_history=lengths,
        phases=None if clock is None else clock.report(recorder.step_times),
        trl_version=trl.__version__,
        trl_trainer=trainer_class.__name__,
        trl_config={k: v for k, v in kwargs.items() if k != "output_dir"},
        trl_config_derived={
            "generation_batch_size": args.generation_batch_size,
            "steps_per_generation": args.steps_per_generation,
            "optim": getattr(args.optim, "value", args.optim),
            "adam_beta1": args.adam_beta1,
            "adam_beta2": args.adam_beta2,
            "epsilon_clip": args.epsilon,
            "loss": loss,
        },
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    common.add_settings_arguments(parser)
    args = parser.parse_args(argv)
    settings = common.settings_from_args(args)
    result = run_trl(settings)
    if args.json:
        measure.write_json(args.json, result)
    if not args.quiet:
        s = settings
        measure.print_table(
            f"TRL {result['trl_trainer']}: {s.prompts_per_step} prompts x k={s.k}, {s.max_new_tokens} new tokens, "
            f"{result['steps_run']} steps ({result['model']['source']}, {result['model']['n_params']:,} params)",
            ["metric", "value"],
            common.side_rows(result),
        )
    return result


if __name__ == "__main__":
    main()
