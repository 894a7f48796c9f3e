"""What each rank runs in the distributed tests: ``python -m tests.agents.distributed_workers SCENARIO OUT``.

Every scenario writes ``OUT/rank{r}.json`` (and whatever tensors it needs to compare) so the test in
the parent process can check what each rank saw.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agents import distributed, parallel
from reward_models.shaping import whiten as local_whiten


class TinyPolicy(nn.Module):
    """Two parameters and a protocol-style method that is not ``forward``."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(3))
        self.unused = nn.Parameter(torch.randn(2))

    def score(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight


def helpers(out: Path) -> dict[str, Any]:
    info = distributed.setup()
    rank = info.rank
    result: dict[str, Any] = {"rank": rank, "world": info.world_size, "is_main": info.is_main}
    result["shard"] = distributed.shard(list(range(8)), group_size=2)
    try:
        distributed.shard(list(range(6)), group_size=2)
    except ValueError as exc:
        result["shard_error"] = str(exc)
    result["gather"] = distributed.all_gather(torch.tensor([rank, rank])).tolist()
    result["mean"] = float(distributed.all_reduce_mean(torch.tensor(float(rank * 4))))
    # whiten over the global batch == shaping.whiten over the concatenation of both ranks' rows
    values = torch.randn(4, 5, generator=torch.Generator().manual_seed(rank))
    mask = (torch.rand(4, 5, generator=torch.Generator().manual_seed(10 + rank)) > 0.3).float()
    every_values = torch.cat(
        [torch.randn(4, 5, generator=torch.Generator().manual_seed(r)) for r in range(2)]
    )
    every_mask = torch.cat(
        [(torch.rand(4, 5, generator=torch.Generator().manual_seed(10 + r)) > 0.3).float() for r in range(2)]
    )
    expected = local_whiten(every_values, every_mask)[rank * 4 : rank * 4 + 4]
    result["whiten_error"] = float((distributed.whiten(values, mask) - expected).abs().max())
    expected_kept = local_whiten(every_values, every_mask, shift_mean=False)[rank * 4 : rank * 4 + 4]
    result["whiten_kept_error"] = float((distributed.whiten(values, mask, False) - expected_kept).abs().max())
    # per-rank streams derived from one shared generator: distinct per rank, the same on a rerun
    shared = torch.Generator().manual_seed(0)
    result["draws"] = torch.rand(3, generator=distributed.rank_generator(shared)).tolist()
    result["draws_again"] = torch.rand(
        3, generator=distributed.rank_generator(torch.Generator().manual_seed(0))
    ).tolist()
    result["shared_state_after"] = shared.get_state().sum().item()
    result["rank_seed"] = distributed.rank_seed(100)
    result["max"] = distributed.max_int(rank * 5)
    result["broadcast"] = distributed.broadcast_int(rank + 7)
    result["stop"] = distributed.agree(stop=rank == 1)
    result["no_stop"] = distributed.agree()
    result.update(ddp_step(rank))
    try:
        distributed.agree(ValueError("bad reward on rank 1") if rank == 1 else None)
    except distributed.RankFailure as exc:
        result["failure"] = ["RankFailure", str(exc)]
    except ValueError as exc:
        result["failure"] = ["ValueError", str(exc)]
    return result


def ddp_step(rank: int) -> dict[str, Any]:
    torch.manual_seed(rank)  # different weights per rank: DDP must broadcast rank 0's
    policy = TinyPolicy()
    view = parallel.DataParallelPolicy(policy, find_unused_parameters=True)
    start = policy.weight.detach().clone()
    x = torch.arange(6.0).reshape(2, 3) + rank
    view.call(TinyPolicy.score, x).square().mean().backward()
    # the expected gradient: the mean over both ranks of d/dw mean((x_r w)^2) = 2 x_r^T (x_r w) / 2
    grads = [2 * (xr.T @ (xr @ start)) / 2 for xr in (torch.arange(6.0).reshape(2, 3) + r for r in range(2))]
    expected = (grads[0] + grads[1]) / 2
    torch.manual_seed(0)
    rank0_start = TinyPolicy().weight.detach()
    return {
        "ddp_start_is_rank0": bool(torch.equal(start, rank0_start)),
        "ddp_grad_error": float((policy.weight.grad - expected).abs().max()),
        "ddp_unused_grad_none": policy.unused.grad is None,
    }


def fsdp(out: Path) -> dict[str, Any]:
    """A sharded policy and reference: rollouts inside gathered(), one Adam step, full states out and back."""
    from agents import fsdp as fs
    from agents.collect import collect_episodes
    from agents.losses import masked_mean
    from agents.policies import LMPolicy
    from tests.conftest import build_char_tokenizer, build_tiny_lm
    from textrl_env import TextGenerationVectorEnv

    rank = distributed.setup().rank
    env = TextGenerationVectorEnv(
        build_tiny_lm(), build_char_tokenizer(), ["the movie", "i liked"], lambda p, c: [0.0] * len(c),
        num_envs=4, max_new_tokens=5,
    )  # fmt: skip
    plain = build_tiny_lm()  # the same initial weights, unsharded, to compute the expected step
    policy = LMPolicy(env.model, tokenizer=env.tokenizer)
    fs.shard_policy(policy, env.model, env.ref_model)
    result: dict[str, Any] = {"sharded": fs.is_sharded(policy) and fs.is_sharded(env.ref_model)}
    generator = torch.Generator().manual_seed(rank)
    with fs.gathered(policy, env.ref_model):
        episodes = collect_episodes(env, [["the movie"] * 4, ["i liked"] * 4][rank], None, generator)
        for _ in range(3 * rank):  # a different number of forwards per rank: no collective inside
            env.model(input_ids=torch.ones(1, 3, dtype=torch.long))
    assert episodes is not None
    ids, mask, start = episodes.input_ids, episodes.attention_mask, episodes.response_start
    optimizer = torch.optim.Adam(policy.parameters(), lr=1e-2)
    logprobs = policy.evaluate_sequence(ids, mask, start)[1]
    (-masked_mean(logprobs, episodes.response_mask)).backward()
    norm = torch.nn.utils.clip_grad_norm_(policy.parameters(), 1e9)
    result["norm_is_dtensor"] = type(norm).__name__
    optimizer.step()
    # expected: the mean over ranks of each rank's gradient, one Adam step on the unsharded copy
    every = [distributed.all_gather(t) for t in (ids, mask, episodes.response_mask)]
    plain_policy = LMPolicy(plain)
    plain_optimizer = torch.optim.Adam(plain_policy.parameters(), lr=1e-2)
    for r in range(2):
        rows = slice(4 * r, 4 * r + 4)
        lp = plain_policy.evaluate_sequence(every[0][rows], every[1][rows], start)[1]
        (-masked_mean(lp, every[2][rows]) / 2).backward()
    plain_optimizer.step()
    got = fs.full_state_dict(policy)
    want = plain_policy.state_dict()
    result["keys_match"] = sorted(got) == sorted(want)
    result["param_error"] = max(float((got[k] - want[k]).abs().max()) for k in want)
    state = fs.full_optimizer_state(policy, optimizer)
    plain_state = plain_optimizer.state_dict()
    result["optimizer_error"] = max(
        float((state["state"][i][key] - plain_state["state"][i][key]).abs().max())
        for i in plain_state["state"]
        for key in ("exp_avg", "exp_avg_sq")
    )
    fresh = LMPolicy(build_tiny_lm())
    fs.shard_policy(fresh, fresh.model, None)
    fresh_optimizer = torch.optim.Adam(fresh.parameters(), lr=1e-2)
    fs.load_full_optimizer_state(fresh, fresh_optimizer, plain_state)
    again = fs.full_optimizer_state(fresh, fresh_optimizer)
    result["reload_error"] = max(
        float((again["state"][i][key] - plain_state["state"][i][key]).abs().max())
        for i in plain_state["state"]
        for key in ("exp_avg", "exp_avg_sq")
    )
    return result


SCENARIOS = {"helpers": helpers, "fsdp": fsdp}


def main(argv: list[str]) -> None:
    scenario, out = argv[0], Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    result = SCENARIOS[scenario](out)
    rank = distributed.info().rank
    (out / f"rank{rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
