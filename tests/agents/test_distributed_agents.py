"""Data-parallel RLOO, PPO and GRPO on 2 CPU ranks (gloo), against one process over the same global batch.

Each test starts real processes with the launcher's environment variables (as ``torchrun`` does)
and a deadline, so a hang fails the test instead of blocking the suite.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.agents.distributed_agents import CASES, ROWS, make_env
from tests.agents.distributed_launch import check_ok, run_ranks, run_single

WORKER = "tests.agents.distributed_agents"
# fp32 on CPU: the ranks' gradients are all-reduced and the token counts summed in another order
# than one process sums them, so the runs agree to rounding, amplified a little by 3 Adam steps.
ATOL, RTOL = 1e-5, 1e-4


def _json(path: Path) -> dict:
    return json.loads(path.read_text())


@pytest.mark.parametrize(
    ("algo", "strategy"),
    [("RLOO", "ddp"), ("PPO", "ddp"), ("GRPO-dapo", "ddp"), ("GRPO-grpo", "ddp"), ("RLOO", "fsdp")],
)
def test_two_ranks_match_one_process_over_the_same_global_batch(
    tmp_path: Path, algo: str, strategy: str
) -> None:
    check_ok(run_ranks(["-m", WORKER, "train", algo, str(tmp_path), strategy], world_size=2, timeout=240))
    check_ok([run_single(["-m", WORKER, "replay", algo, str(tmp_path)], timeout=240)])
    ranks = [load_file(tmp_path / f"params_rank{r}.safetensors") for r in range(2)]
    single = load_file(tmp_path / "params_single.safetensors")
    start = load_file(tmp_path / "params_init.safetensors")
    assert sorted(ranks[0]) == sorted(ranks[1]) == sorted(start)
    for name in single:
        assert torch.equal(ranks[0][name], ranks[1][name]), f"{name} differs between the ranks"
        torch.testing.assert_close(ranks[0][name], single[name], atol=ATOL, rtol=RTOL, msg=name)
    # the ranks' episodes differ (own samplers, own prompt rows), so the match above is not trivial
    first = [torch.load(tmp_path / f"episodes_it0_rank{r}.pt", weights_only=True) for r in range(2)]
    assert not torch.equal(first[0]["response_ids"], first[1]["response_ids"])
    # the statistics are global: the KL coefficient and the reward normaliser agree with one process
    stats = [_json(tmp_path / f"train_rank{r}.json") for r in range(2)] + [
        _json(tmp_path / "replay_rank0.json")
    ]
    assert stats[0] == stats[1]
    normalized = CASES[algo][2].get("normalize_rewards", False)
    assert stats[0]["reward_count"] == stats[2]["reward_count"] == (3 * 8 if normalized else 0)
    assert stats[0]["kl_coef"] == pytest.approx(stats[2]["kl_coef"], rel=1e-6)
    # and training moved the parameters well beyond the tolerance
    assert max(float((single[n] - start[n]).abs().max()) for n in single) > 100 * ATOL
    # the checkpoint the ranks wrote together holds rank 0's (full, for FSDP) weights, in the plain format
    resumed = CASES[algo][0].load(tmp_path / "checkpoint", env=make_env(ROWS), verbose=0)
    saved = {k: v for k, v in resumed.policy.state_dict().items()}
    assert all(torch.equal(saved[k], ranks[0][k]) for k in ranks[0])
    assert resumed.iteration == 3


def test_only_rank0_writes_and_checkpoints_resume_across_world_sizes(tmp_path: Path) -> None:
    results = run_ranks(["-m", WORKER, "checkpoint", str(tmp_path), "two"], world_size=2, timeout=240)
    check_ok(results)
    assert (tmp_path / "logs_rank0" / "progress.csv").is_file() and (tmp_path / "own_rank0").is_dir()
    assert not (tmp_path / "logs_rank1").exists() and not (tmp_path / "own_rank1").exists()
    assert "score_mean" in results[0].output and "score_mean" not in results[1].output  # the console table
    two = [_json(tmp_path / f"checkpoint_two_rank{r}.json") for r in range(2)]
    assert two[0] == two[1]  # counters and the prompt sampler's state agree on both ranks

    check_ok([run_single(["-m", WORKER, "checkpoint", str(tmp_path), "one"], timeout=240)])
    one = _json(tmp_path / "checkpoint_one_rank0.json")
    assert one["loaded_equal"] and one["num_timesteps"] == two[0]["num_timesteps_end"]
    assert one["iteration"] == two[0]["iteration"] + 1

    check_ok(run_ranks(["-m", WORKER, "checkpoint", str(tmp_path), "two_again"], world_size=2, timeout=240))
    again = [_json(tmp_path / f"checkpoint_two_again_rank{r}.json") for r in range(2)]
    assert again[0]["loaded_equal"] and again[1]["loaded_equal"]
    assert again[0]["iteration"] == again[1]["iteration"] == one["iteration"] + 1
    resumed = [load_file(tmp_path / f"params_two_again_rank{r}.safetensors") for r in range(2)]
    before = load_file(tmp_path / "params_one.safetensors")
    assert all(torch.equal(resumed[0][k], resumed[1][k]) for k in resumed[0])
    assert any(not torch.equal(resumed[0][k], before[k]) for k in before)  # it trained after resuming


def test_an_exception_in_the_reward_function_stops_every_rank(tmp_path: Path) -> None:
    check_ok(run_ranks(["-m", WORKER, "crash", str(tmp_path), "reward"], world_size=2, timeout=180))
    failed = _json(tmp_path / "crash_reward_rank1.json")
    other = _json(tmp_path / "crash_reward_rank0.json")
    # the reward's error, wrapped by the env in a RewardError naming the reward
    assert failed["error"] == "RewardError" and "ValueError: reward exploded on rank 1" in failed["message"]
    assert other["error"] == "RankFailure"
    assert "rank 1: reward_models.errors.RewardError:" in other["message"]
    assert "reward exploded on rank 1" in other["message"]


def test_a_crash_inside_the_update_ends_the_other_rank_too(tmp_path: Path) -> None:
    """Rank 1 fails while rank 0 waits inside a collective: rank 1's exit ends rank 0's wait with an error."""
    check_ok(run_ranks(["-m", WORKER, "crash", str(tmp_path), "update"], world_size=2, timeout=180))
    failed = _json(tmp_path / "crash_update_rank1.json")
    other = _json(tmp_path / "crash_update_rank0.json")
    assert failed["error"] == "RuntimeError" and "update exploded" in failed["message"]
    assert other["error"] == "RuntimeError" and "Connection" in other["message"]  # closed or reset by rank 1
    assert other["ended_at"] - failed["ended_at"] < 30  # not the group's 10-minute timeout
