"""Training metrics to CSV, TensorBoard and a compact rich table, on Stable-Baselines3's logger.

:class:`Logger` *is* an SB3 ``Logger`` (so SB3 callbacks calling ``self.logger.record`` work unchanged)
with three changes:

- values may be torch tensors: they are kept as recorded (no host sync in the training loop) and
  turned into numbers in one transfer at :meth:`Logger.dump`;
- the CSV file's header grows safely: when new keys appear the file is rewritten to a temporary file
  and swapped in with ``os.replace`` (SB3's own CSV writer rewrites in place, which a crash can corrupt);
  each row is one write of a whole line, and a resumed run (:meth:`Logger.continue_files`) appends,
  dropping a row that a killed process left half-written;
- a ``"rich"`` console format prints one compact table per dump, grouped by namespace.

Keys are namespaced like SB3's: ``rollout/score_mean``, ``rollout/kl_mean``, ``train/policy_loss``,
``train/approx_kl``, ``train/clip_fraction``, ``train/kl_coef``, ``time/tokens_per_s``.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from rich.table import Table
from stable_baselines3.common.logger import (
    Figure,
    FormatUnsupportedError,
    HParam,
    HumanOutputFormat,
    Image,
    JSONOutputFormat,
    KVWriter,
    TensorBoardOutputFormat,
    Video,
    filter_excluded_keys,
)
from stable_baselines3.common.logger import Logger as SB3Logger

FORMATS = ("csv", "tensorboard", "rich", "stdout", "json")
CONSOLE_FORMATS = ("rich", "stdout")


def _check_plain(value: Any, fmt: str) -> None:
    for kind, name in ((Video, "video"), (Figure, "figure"), (Image, "image"), (HParam, "hparam")):
        if isinstance(value, kind):
            raise FormatUnsupportedError([fmt], name)


class PartialRowWarning(UserWarning):
    """Warned when a resumed run finds ``progress.csv`` ending in a half-written row, and drops it."""


class CSVOutputFormat(KVWriter):
    """``progress.csv`` with a ``step`` column first; new keys rewrite the file atomically.

    A killed process never leaves a row that breaks reading or resuming: each row goes to the file
    in one unbuffered ``os.write`` of the whole line (so only a kill inside that call can cut it, and
    then the line has no newline yet), and a header change is a temp file swapped in with
    ``os.replace``. The file is opened at the first write: afresh (truncated, like SB3's), or, after
    :meth:`continue_file`, appended to, with a half-written last row dropped with a warning.

    Args:
        filename: the CSV file.
    """

    def __init__(self, filename: str | os.PathLike) -> None:
        self.path = Path(filename)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.keys: list[str] = []
        self.append = False
        self._opened = False

    def continue_file(self) -> None:
        """Append to the existing file instead of starting it afresh (no effect once a row is written)."""
        self.append = True

    def write(
        self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0
    ) -> None:
        row = {"step": step, **filter_excluded_keys(key_values, key_excluded, "csv")}
        for value in row.values():
            _check_plain(value, "csv")
        if not self._opened:
            self._open()
        new_keys = [k for k in row if k not in self.keys]
        if new_keys:
            keys = (
                self.keys
                + (["step"] if "step" in new_keys else [])
                + sorted(k for k in new_keys if k != "step")
            )
            self._rewrite_with(keys, row)
            self.keys = keys  # only once the new file is in place
            return
        line = _csv_text(self.keys, [row]).encode("utf-8")
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            view = memoryview(line)
            while view:  # a regular file takes it in one call; loop in case it does not
                view = view[os.write(fd, view) :]
        finally:
            os.close(fd)

    def _open(self) -> None:
        self._opened = True
        if not self.append or not self.path.is_file():
            _replace(self.path, "")
            return
        text = self.path.read_bytes().decode("utf-8")
        if text and not text.endswith("\n"):
            kept, _, partial = text.rpartition("\n")
            warnings.warn(
                f"{self.path} ends in a half-written row (the run that wrote it stopped mid-write); "
                f"dropping it before appending: {partial[:80]!r}",
                PartialRowWarning,
                stacklevel=4,
            )
            text = kept + "\n" if kept else ""
            _replace(self.path, text)
        header = next(csv.reader(io.StringIO(text)), [])
        self.keys = list(header)

    def _rewrite_with(self, keys: list[str], row: dict[str, Any]) -> None:
        with self.path.open(newline="", encoding="utf-8") as f:
            old_rows = list(csv.DictReader(f))
        _replace(self.path, _csv_text(keys, [*old_rows, row], header=True))

    def close(self) -> None:
        pass


def _csv_text(keys: list[str], rows: list[dict[str, Any]], header: bool = False) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
    if header:
        writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _replace(path: Path, text: str) -> None:
    """Write ``text`` to a temp file beside ``path``, fsync it, and swap it in (readers see old or new)."""
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("w", encoding="utf-8", newline="") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


class RichTableOutputFormat(KVWriter):
    """One compact table per dump: keys grouped by namespace, numbers to 4 significant digits.

    Args:
        console: where to print (a fresh ``rich.console.Console`` when None).
    """

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()

    def write(
        self, key_values: dict[str, Any], key_excluded: dict[str, tuple[str, ...]], step: int = 0
    ) -> None:
        values = filter_excluded_keys(key_values, key_excluded, "stdout")
        if not values:
            return
        table = Table(
            title=f"step {step:,}", show_header=False, box=None, pad_edge=False, title_justify="left"
        )
        table.add_column("key", style="cyan")
        table.add_column("value", justify="right")
        namespace = None
        for key in sorted(values):
            _check_plain(values[key], "rich")
            ns, _, name = key.rpartition("/")
            if ns != namespace:
                table.add_row(f"[bold]{ns or '-'}/[/bold]", "")
                namespace = ns
            table.add_row(f"  {name}", _format_value(values[key]))
        self.console.print(table)

    def close(self) -> None:
        pass


def make_output_formats(
    folder: str | os.PathLike | None,
    formats: Sequence[str] = ("csv", "tensorboard", "rich"),
    quiet: bool = False,
    console: Console | None = None,
) -> list[KVWriter]:
    """Build the writers for ``formats`` (any of ``csv``, ``tensorboard``, ``rich``, ``stdout``, ``json``)."""
    writers: list[KVWriter] = []
    for fmt in formats:
        if fmt not in FORMATS:
            raise ValueError(f"unknown log format {fmt!r}; expected some of {FORMATS}")
        if quiet and fmt in CONSOLE_FORMATS:
            continue
        if fmt not in CONSOLE_FORMATS and folder is None:
            raise ValueError(
                f"log format {fmt!r} writes files but no folder was given; pass folder=... or drop {fmt!r}"
            )
        if fmt == "rich":
            writers.append(RichTableOutputFormat(console))
        elif fmt == "stdout":
            stream: Any = console.file if console is not None else sys.stdout
            writers.append(HumanOutputFormat(stream))
        else:
            root = Path(folder)  # type: ignore[arg-type]
            root.mkdir(parents=True, exist_ok=True)
            if fmt == "csv":
                writers.append(CSVOutputFormat(root / "progress.csv"))
            elif fmt == "json":
                writers.append(JSONOutputFormat(str(root / "progress.json")))
            else:
                writers.append(TensorBoardOutputFormat(str(root)))
    return writers


class Logger(SB3Logger):
    """SB3's logger with tensor-friendly recording, an atomic CSV and a rich console table.

    Args:
        folder: directory for ``progress.csv`` and the TensorBoard event files; None for console only.
        formats: writers to use, any of ``csv``, ``tensorboard``, ``rich``, ``stdout``, ``json``.
        quiet: drop the console formats (files are still written).
        console: a ``rich`` console to print to (tests pass one that records).
    """

    def __init__(
        self,
        folder: str | os.PathLike | None = None,
        formats: Sequence[str] = ("csv", "tensorboard", "rich"),
        quiet: bool = False,
        console: Console | None = None,
    ) -> None:
        if folder is None:
            formats = [f for f in formats if f in CONSOLE_FORMATS]
        writers = make_output_formats(folder, formats, quiet, console)
        super().__init__(None if folder is None else os.fspath(folder), writers)

    def continue_files(self) -> None:
        """Append to an existing ``progress.csv`` instead of starting it afresh.

        ``learn(reset_num_timesteps=False)`` calls this, so a resumed run's rows follow the old ones.
        It has no effect on a file this logger has already written to.
        """
        for writer in self.output_formats:
            if isinstance(writer, CSVOutputFormat):
                writer.continue_file()

    def dump(self, step: int = 0) -> None:
        """Write every recorded value at ``step`` to each format, then clear them."""
        self._materialize()
        super().dump(step)

    def _materialize(self) -> None:
        """Scalar tensors and numpy scalars -> Python floats, with one device transfer for all tensors.

        Tensors with more than one element stay tensors: TensorBoard draws them as histograms, and
        they are excluded from the CSV and console formats.
        """
        recorded: dict[str, Any] = self.name_to_value
        by_device: dict[torch.device, list[str]] = {}
        for key, value in recorded.items():
            if isinstance(value, torch.Tensor) and value.numel() == 1:
                by_device.setdefault(value.device, []).append(key)
        for keys in by_device.values():
            numbers = torch.stack([recorded[k].detach().float().reshape(()) for k in keys]).tolist()
            for key, number in zip(keys, numbers, strict=True):
                recorded[key] = number
        for key, value in list(self.name_to_value.items()):
            if isinstance(value, np.generic):
                self.name_to_value[key] = value.item()
            elif isinstance(value, torch.Tensor | np.ndarray):
                excluded = self.name_to_excluded.get(key, ("",))
                self.name_to_excluded[key] = tuple({*excluded, "csv", "stdout", "json"})
