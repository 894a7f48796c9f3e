"""``textrl train``: RL on a registered env id, or on a model + reward model + prompts file.

A thin shell over :func:`agents.train.train_agent`. With no flags, a registered env starts from
the tuned table of :mod:`agents.hyperparams` (RL Zoo's convention); flags and ``--config`` win.
"""

from __future__ import annotations

import argparse

from agents.cli.args import add_dataclass_arguments, add_positional, parse_dataclasses, peek_setting
from agents.train import ALGORITHMS, TrainArguments, check_agent, check_env_id, train_agent, tuned_for

HELP = (
    "RL on a registered env id (textrl train textrl/Sentiment-v0 --agent ppo), or on --model, --reward_model "
    "and --prompts. With no other flag, a registered env uses the tuned hyperparameters of agents/hyperparams; "
    "flags override them. Only the chosen agent's settings apply (PPO's n_epochs defaults to 4)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_positional(parser, TrainArguments, "env", metavar="ENV_ID")
    add_dataclass_arguments(parser, TrainArguments, *(algo.config_class for algo in ALGORITHMS.values()))


def run(args: argparse.Namespace) -> int:
    from rich.console import Console

    algo = check_agent(peek_setting(args, "agent", TrainArguments.agent))
    env = peek_setting(args, "env", None)
    if env is not None:
        check_env_id(env)
    tuned = tuned_for(env, algo.algo_name) if peek_setting(args, "tuned", True) else {}
    train_args, config = parse_dataclasses(args, TrainArguments, algo.config_class, defaults=tuned)
    console = Console()
    result = train_agent(train_args, config)
    if not result.agent.parallel.is_main:  # under torchrun, rank 0 reports for the whole run
        return 0
    for report in (result.after.summary_table(), result.after.table()):
        console.print(report)
    console.print(
        f"[bold]{algo.algo_name}[/] on {result.settings['arguments']['env'] or 'your model'}: held-out reward "
        f"{result.before.reward_mean:+.3f} -> {result.after.reward_mean:+.3f} in {result.seconds:.0f} s; "
        f"checkpoint {result.out / 'agent'}, policy {result.policy_path}, summary {result.out / 'train.json'}"
    )
    return 0
