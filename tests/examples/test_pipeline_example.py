"""examples/pipeline.py runs the RLHF loop from Python on a tiny budget."""

from __future__ import annotations

import importlib.util
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_pipeline_example(tmp_path: Path, capsys) -> None:
    spec = importlib.util.spec_from_file_location("example_pipeline", EXAMPLES / "pipeline.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    summary = module.main(["--run-dir", str(tmp_path / "run"), "--rounds", "1", "--tiny"])
    assert summary["status"] == "complete" and len(summary["rounds"]) == 1
    assert "round 1: gold" in capsys.readouterr().out
    assert (tmp_path / "run" / "plots" / "gold_vs_proxy.png").is_file()
