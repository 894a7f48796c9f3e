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

from agents import distributed
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
    view = distributed.DataParallelPolicy(policy, find_unused_parameters=True)
    start = policy.weight.detach().clone()
    x = torch.arange(6.0).reshape(2, 3) + rank
    view.call("score", x).square().mean().backward()
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


SCENARIOS = {"helpers": helpers}


def main(argv: list[str]) -> None:
    scenario, out = argv[0], Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    result = SCENARIOS[scenario](out)
    rank = distributed.info().rank
    (out / f"rank{rank}.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main(sys.argv[1:])
