"""Measuring and reporting, shared by every benchmark: peak memory, medians, the machine, output.

Nothing here knows about ``BenchSettings``: ``rollout`` and ``scaling`` use it directly, and the
training sides reach it through ``common``. Every benchmark imports this module before it loads a
model, so it also sets the Hugging Face offline switches.
"""

from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

# Benchmarks never touch the network: nothing here may reach a model hub.
for _name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


# --------------------------------------------------------------------------- memory


def _maxrss_bytes() -> int:
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss if sys.platform == "darwin" else rss * 1024  # Linux reports KiB


class PeakMemory:
    """Peak resident memory of this process inside the ``with`` block, relative to its start.

    A sampler thread polls the RSS every ``interval_s``; ``getrusage``'s exact high-water mark is
    used as well whenever it rose inside the block. Run each side in its own process (see
    ``run_module_in_subprocess``) so one side's allocations never count against the other.
    """

    def __init__(self, interval_s: float = 0.005) -> None:
        import psutil

        self._proc = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.baseline = self.peak = 0
        self._cuda, self._cuda_start = False, 0  # whether CUDA was in use at entry, and its allocation then

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __enter__(self) -> PeakMemory:
        # Only a CUDA context that already exists is touched: starting one here would add its
        # hundreds of MB to the RSS delta measured from the baseline below.
        self._cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
        if self._cuda:
            torch.cuda.reset_peak_memory_stats()
            self._cuda_start = torch.cuda.memory_allocated()
        self.baseline = self.peak = self._proc.memory_info().rss
        self._maxrss_start = _maxrss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)
        if (maxrss := _maxrss_bytes()) > self._maxrss_start:
            self.peak = max(self.peak, maxrss)

    def report(self) -> dict[str, float]:
        mb = 1024 * 1024
        out = {
            "baseline_rss_mb": self.baseline / mb,
            "peak_rss_mb": self.peak / mb,
            "peak_rss_delta_mb": (self.peak - self.baseline) / mb,
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            out["cuda_peak_allocated_mb"] = torch.cuda.max_memory_allocated() / mb
            out["cuda_peak_allocated_delta_mb"] = (torch.cuda.max_memory_allocated() - self._cuda_start) / mb
        return out


# --------------------------------------------------------------------------- medians


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values))


def median_summary(runs: Sequence[dict], keys: Sequence[str]) -> dict[str, float]:
    return {key: median([run[key] for run in runs]) for key in keys}


# --------------------------------------------------------------------------- machine and output


def machine_info(device: str = "cpu") -> dict[str, Any]:
    import tokenizers
    import transformers

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "logical_cores": os.cpu_count(),
        "usable_cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "loadavg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,  # contention check
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "device": device,
    }
    try:
        import trl

        info["trl"] = trl.__version__
    except ImportError:
        info["trl"] = None
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


def write_json(path: Path | str, payload: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for i, column in enumerate(columns):
        table.add_column(column, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row))
    Console().print(table)
