"""Callbacks: Stable-Baselines3's ``BaseCallback`` works unchanged on textrl agents.

An agent is a valid callback host when it has ``num_timesteps``, ``logger`` and ``get_env()`` (what
SB3's ``BaseCallback`` reads). The algorithms drive the callback through :class:`CallbackRunner`,
which follows SB3's order::

    runner = CallbackRunner(callback, agent, progress_bar=progress_bar)
    runner.on_training_start(total_timesteps)
    while agent.num_timesteps < total_timesteps:
        runner.on_rollout_start()
        ...                                   # each env step:
        if not runner.on_step(rewards=r):     # a callback returned False: stop training
            break
        runner.on_rollout_end()
        ...                                   # update
    runner.on_training_end()

SB3's ``CallbackList``, ``ConvertCallback``, ``EveryNTimesteps`` and ``StopTrainingOnRewardThreshold``
are re-exported; callbacks that evaluate on an SB3 ``VecEnv`` (``EvalCallback``) need one.
:class:`ProgressBarCallback` is textrl's own, drawn with rich alone (SB3's needs tqdm as well).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from stable_baselines3.common.callbacks import (
    BaseCallback,
    CallbackList,
    ConvertCallback,
    EveryNTimesteps,
    StopTrainingOnRewardThreshold,
)

MaybeCallback = None | BaseCallback | Callable[[dict[str, Any], dict[str, Any]], bool] | list[Any]

__all__ = [
    "BaseCallback",
    "CallbackHost",
    "CallbackList",
    "CallbackRunner",
    "ConvertCallback",
    "EveryNTimesteps",
    "MaybeCallback",
    "ProgressBarCallback",
    "StopTrainingOnRewardThreshold",
    "convert_callback",
]


@runtime_checkable
class CallbackHost(Protocol):
    """What SB3's ``BaseCallback`` reads from the model it is attached to."""

    num_timesteps: int
    logger: Any

    def get_env(self) -> Any: ...


class ProgressBarCallback(BaseCallback):
    """A rich progress bar over timesteps (remaining ones, when training continues a previous run).

    Args:
        console: a ``rich`` console to draw on (a fresh one when None).
        description: text left of the bar.
    """

    def __init__(self, console: Console | None = None, description: str = "training") -> None:
        super().__init__()
        self.console = console
        self.description = description
        self.progress: Progress | None = None
        self._task: TaskID | None = None
        self._last = 0

    def _on_training_start(self) -> None:
        total = int(self.locals["total_timesteps"]) - self.model.num_timesteps
        self._last = self.model.num_timesteps
        self.progress = Progress(
            TextColumn("[progress.description]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
        )
        self.progress.start()
        self._task = self.progress.add_task(self.description, total=max(total, 0))

    def _on_step(self) -> bool:
        if self.progress is not None and self._task is not None:
            self.progress.update(self._task, advance=self.model.num_timesteps - self._last)
            self._last = self.model.num_timesteps
        return True

    def _on_training_end(self) -> None:
        if self.progress is not None:
            self.progress.refresh()
            self.progress.stop()
            self.progress = None


def convert_callback(callback: MaybeCallback, progress_bar: bool = False) -> BaseCallback:
    """Turn None, a callback, a function ``f(locals, globals) -> bool`` or a list of these into one callback.

    Args:
        callback: what the user passed to ``learn``.
        progress_bar: add a :class:`ProgressBarCallback`.

    Raises:
        TypeError: anything else.
    """
    if isinstance(callback, list):
        callback = CallbackList([convert_callback(c) for c in callback])
    elif callback is None or (callable(callback) and not isinstance(callback, BaseCallback)):
        callback = ConvertCallback(callback)
    elif not isinstance(callback, BaseCallback):
        raise TypeError(
            f"callback must be None, a stable_baselines3 BaseCallback, a function f(locals, globals) -> bool, "
            f"or a list of these; got {type(callback).__name__}"
        )
    if progress_bar:
        callback = CallbackList([callback, ProgressBarCallback()])
    return callback


class CallbackRunner:
    """Drives a callback through SB3's lifecycle for an algorithm; the only callback API agents use.

    Args:
        callback: what the user passed to ``learn`` (see :func:`convert_callback`).
        model: the agent (``num_timesteps``, ``logger``, ``get_env()``).
        progress_bar: add a rich progress bar.
    """

    def __init__(self, callback: MaybeCallback, model: CallbackHost, progress_bar: bool = False) -> None:
        missing = [name for name in ("num_timesteps", "logger", "get_env") if not hasattr(model, name)]
        if missing:
            raise TypeError(
                f"{type(model).__name__} cannot host SB3 callbacks: missing {', '.join(missing)} "
                "(BaseCallback reads model.num_timesteps, model.logger and model.get_env())"
            )
        self.model = model
        self.callback = convert_callback(callback, progress_bar)
        self.callback.init_callback(model)  # type: ignore[arg-type]
        self.locals: dict[str, Any] = {}

    def on_training_start(self, total_timesteps: int, **extra: Any) -> None:
        """Start of ``learn``: callbacks see ``locals["total_timesteps"]`` (absolute) and ``locals["self"]``."""
        self.locals = {"self": self.model, "total_timesteps": total_timesteps, **extra}
        self.callback.on_training_start(self.locals, {})

    def on_rollout_start(self) -> None:
        self.callback.on_rollout_start()

    def on_step(self, **step_locals: Any) -> bool:
        """After each env step (``num_timesteps`` already advanced); False means stop training."""
        if step_locals:
            self.callback.update_locals(step_locals)
        return bool(self.callback.on_step())

    def on_rollout_end(self) -> None:
        self.callback.on_rollout_end()

    def on_training_end(self) -> None:
        self.callback.on_training_end()
