"""The soak benchmark's verdict (known answers) and a tiny smoke run of the script."""

from __future__ import annotations

import json
from pathlib import Path

from benchmarks.soak import SoakSettings, main, verdict


def samples(rss: list[float], fds: list[int]) -> list[dict[str, float]]:
    return [
        {"episodes": i, "rss_mib": r, "open_files": f} for i, (r, f) in enumerate(zip(rss, fds, strict=True))
    ]


def test_a_flat_curve_is_flat_and_a_leak_is_not() -> None:
    settings = SoakSettings(warmup_fraction=0.2, tolerance_mib=10.0, fd_tolerance=1)
    warm = [500.0]  # the first sample (warm-up) is ignored
    assert verdict(samples(warm + [400.0] * 8, [6] * 9), settings)["flat"]
    leak = verdict(samples(warm + [400.0 + 5 * i for i in range(8)], [6] * 9), settings)
    assert not leak["flat"] and leak["rss_growth_mib"] == 20.0
    fd_leak = verdict(samples(warm + [400.0] * 8, [6, 6, 6, 6, 6, 7, 8, 9, 10]), settings)
    assert not fd_leak["flat"] and fd_leak["open_files_growth"] == 4


def test_a_tiny_soak_run_writes_its_records(tmp_path: Path) -> None:
    code = main(["--episodes", "16", "--every", "8", "--num-envs", "4", "--max-new-tokens", "2",
                 "--save-every", "2", "--tolerance-mib", "1000", "--out", str(tmp_path)])  # fmt: skip
    record = json.loads((tmp_path / "soak.json").read_text())
    assert code == 0 and record["verdict"]["flat"]
    assert [s["episodes"] for s in record["samples"]] == [0, 8, 16]
    assert (tmp_path / "soak.csv").read_text().startswith("episodes,seconds,rss_mib,open_files")
