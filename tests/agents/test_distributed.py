"""agents.distributed: launch detection, sharding, reductions, agreement and DDP, on 2 CPU ranks with gloo."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agents import distributed
from tests.agents.distributed_launch import check_ok, run_ranks

WORKERS = "tests.agents.distributed_workers"


def test_not_launched_without_world_size() -> None:
    assert not distributed.launched({})
    assert not distributed.launched({"WORLD_SIZE": "1", "RANK": "0"})


def test_launched_with_the_launcher_variables() -> None:
    env = {
        "WORLD_SIZE": "2",
        "RANK": "1",
        "LOCAL_RANK": "1",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": "29500",
    }
    assert distributed.launched(env)


def test_a_partial_launch_names_the_missing_variables() -> None:
    with pytest.raises(ValueError, match="LOCAL_RANK, MASTER_ADDR, MASTER_PORT not set.*torchrun"):
        distributed.launched({"WORLD_SIZE": "2", "RANK": "0"})
    with pytest.raises(ValueError, match="WORLD_SIZE='two' is not an int"):
        distributed.launched({"WORLD_SIZE": "two"})


def test_single_process_helpers_are_identities() -> None:
    import torch

    from reward_models.shaping import whiten

    info = distributed.setup()
    assert (info.rank, info.world_size, info.is_main, info.enabled) == (0, 1, True, False)
    assert distributed.shard([1, 2, 3]) == [1, 2, 3]
    x = torch.tensor([1.0, 2.0, 4.0])
    assert distributed.all_gather(x) is x and distributed.all_reduce_mean(x) is x
    torch.testing.assert_close(distributed.whiten(x), whiten(x))
    shared = torch.Generator().manual_seed(3)
    assert distributed.rank_generator(shared) is shared
    assert distributed.rank_seed(7) == 7
    assert distributed.agree(stop=True) is True
    with pytest.raises(KeyError, match="boom"):
        distributed.agree(KeyError("boom"))


def test_two_ranks(tmp_path: Path) -> None:
    results = run_ranks(["-m", WORKERS, "helpers", str(tmp_path)], world_size=2, timeout=180)
    check_ok(results)
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in range(2)]
    for r, got in enumerate(ranks):
        assert (got["rank"], got["world"], got["is_main"]) == (r, 2, r == 0)
        assert got["shard"] == [[0, 1, 2, 3], [4, 5, 6, 7]][r]
        assert "6 rows does not split into 2 equal shares of whole groups of 2" in got["shard_error"]
        assert got["gather"] == [0, 0, 1, 1]
        assert got["mean"] == 2.0
        assert got["whiten_error"] < 1e-6 and got["whiten_kept_error"] < 1e-6
        assert got["draws"] == got["draws_again"]  # reproducible
        assert got["rank_seed"] == 100 + r
        assert got["max"] == 5 and got["broadcast"] == 7
        assert got["stop"] is True and got["no_stop"] is False
        assert got["ddp_start_is_rank0"] and got["ddp_grad_error"] < 1e-5 and got["ddp_unused_grad_none"]
    assert ranks[0]["draws"] != ranks[1]["draws"]  # a distinct stream per rank...
    # ...from a shared state that stays in lockstep
    assert ranks[0]["shared_state_after"] == ranks[1]["shared_state_after"]
    assert ranks[1]["failure"] == ["ValueError", "bad reward on rank 1"]
    kind, message = ranks[0]["failure"]
    assert kind == "RankFailure" and "rank 1: ValueError: bad reward on rank 1" in message


def test_fsdp_two_ranks(tmp_path: Path) -> None:
    """FSDP2 on CPU/gloo: rollouts of different lengths inside gathered(), a step equal to the averaged one."""
    check_ok(run_ranks(["-m", WORKERS, "fsdp", str(tmp_path)], world_size=2, timeout=180))
    for r in range(2):
        got = json.loads((tmp_path / f"rank{r}.json").read_text())
        assert got["sharded"] and got["keys_match"]
        assert got["param_error"] < 1e-5, got
        assert got["optimizer_error"] < 1e-6 and got["reload_error"] < 1e-7, got
