"""FSDP2 (``torch.distributed.fsdp.fully_shard``) for a policy and its frozen reference.

With DDP every rank holds the whole model, its gradients and the optimizer's two Adam moments;
FSDP2 shards all of them over the ranks (each rank keeps ``1 / world_size`` of every parameter as
a ``DTensor``), gathering a layer's full weights only while it runs. Use it when a model does not
fit one device with DDP.

Generation is the catch. Each sharded forward all-gathers from every rank, so every rank must run
the same number of forwards, but rollouts end after a different number of tokens on each rank (and
the env scores the reference whenever rows finish). So rollouts run inside :func:`gathered`: the
full weights are gathered once, and forwards inside need no collective. That holds one full copy of
the weights per rank during generation (what TRL and verl do when they hand weights to an
inference engine); training steps run sharded.

Checkpoints stay the ordinary, single-process format: :func:`full_state_dict` and
:func:`full_optimizer_state` collect full tensors (on every rank, moved to the CPU), and
:func:`load_full_optimizer_state` shards a saved one again, so a checkpoint moves between FSDP,
DDP and single-process runs and between any numbers of ranks.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, fully_shard
from torch.distributed.tensor import DTensor

_FULL = StateDictOptions(full_state_dict=True, cpu_offload=False)


def _blocks(model: nn.Module) -> list[nn.Module]:
    """The repeated layers to shard one by one: transformers' ``_no_split_modules`` classes, else ModuleLists'."""
    peft: Any = model
    inner = peft.get_base_model() if hasattr(peft, "get_base_model") else model
    names = set(getattr(inner, "_no_split_modules", None) or ())
    blocks = [m for m in model.modules() if type(m).__name__ in names]
    if not blocks:
        blocks = [child for m in model.modules() if isinstance(m, nn.ModuleList) for child in m]
    return blocks


def shard_module(module: nn.Module) -> None:
    """``fully_shard`` the repeated layers of ``module``, then ``module`` itself (bottom-up).

    Layer by layer so that only one layer's full weights are gathered at a time. ``module`` becomes
    an FSDP root: its forward (called as ``module(...)``) gathers and frees what its layers do not.
    """
    if not (dist.is_available() and dist.is_initialized()):
        raise ValueError(
            "FSDP needs a process group: launch with torchrun (or accelerate launch), or use data_parallel='ddp'"
        )
    mesh = init_device_mesh(next(module.parameters()).device.type, (dist.get_world_size(),))
    for block in _blocks(module):
        if not isinstance(block, FSDPModule):
            fully_shard(block, mesh=mesh)
    if not isinstance(module, FSDPModule):
        fully_shard(module, mesh=mesh)


def shard_policy(policy: nn.Module, model: nn.Module, reference: nn.Module | None) -> None:
    """Shard the policy's language model ``model``, each other child of the policy, and the reference.

    Each is its own FSDP root, entered through its own forward: the env generates with ``model``
    directly, and the policy's protocol methods (``evaluate_sequence``, ...) call ``model(...)``
    and their heads' forwards. Parameters held directly by the policy (outside any child module)
    could not be sharded and are refused.

    Raises:
        ValueError: the policy holds parameters of its own, outside its child modules.
    """
    direct = [name for name, _ in policy.named_parameters(recurse=False)]
    if direct:
        raise ValueError(
            f"{type(policy).__name__} holds parameters {direct} directly; FSDP shards whole modules, so move "
            "them into a child module (e.g. an nn.Linear head), or use data_parallel='ddp'"
        )
    shard_module(model)
    for child in policy.children():
        if child is not model and any(True for _ in child.parameters()):
            shard_module(child)
    if reference is not None and reference is not model:
        shard_module(reference)


def _fsdp_modules(modules: Iterable[nn.Module]) -> list[FSDPModule]:
    found: dict[int, FSDPModule] = {}
    for module in modules:
        for m in module.modules():
            if isinstance(m, FSDPModule):
                found[id(m)] = m
    return list(found.values())


def is_sharded(module: nn.Module) -> bool:
    """Whether ``module`` (or a submodule) was sharded with ``fully_shard``."""
    return bool(_fsdp_modules([module]))


@contextmanager
def gathered(*modules: nn.Module) -> Iterator[None]:
    """Hold the full weights of ``modules`` on every rank, so forwards inside need no collective.

    Every rank must enter and leave together (gathering is a collective); in between each rank
    may run any number of forwards, as a rollout does.
    """
    fsdp = _fsdp_modules(modules)
    for m in fsdp:
        m.unshard()
        m.set_reshard_after_forward(False)
    try:
        yield
    finally:
        for m in fsdp:
            m.set_reshard_after_forward(True)
            m.reshard()


def local_tensor(value: torch.Tensor) -> torch.Tensor:
    """A DTensor's full value as a plain tensor (a collective); any other tensor as it is."""
    return value.full_tensor() if isinstance(value, DTensor) else value


def full_state_dict(module: nn.Module) -> dict[str, torch.Tensor]:
    """``module.state_dict()`` with full, plain tensors on every rank (a collective)."""
    return {
        k: v for k, v in get_model_state_dict(module, options=_FULL).items() if isinstance(v, torch.Tensor)
    }


def _param_names(module: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    names = {id(p): name for name, p in module.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def full_optimizer_state(module: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The optimizer's state in ``optimizer.state_dict()``'s own layout, with full tensors (a collective).

    The distributed API keys parameters by name; they are renumbered in the optimizer's order, so
    the result loads into the optimizer of an unsharded run as it is.
    """
    full: Any = get_optimizer_state_dict(module, optimizer, options=_FULL)
    names = _param_names(module, optimizer)
    index = {name: i for i, name in enumerate(names)}
    groups, start = [], 0
    for group in full["param_groups"]:
        groups.append({**group, "params": list(range(start, start + len(group["params"])))})
        start += len(group["params"])
    state = {index[name]: dict(value) for name, value in full["state"].items()}
    return {"state": state, "param_groups": groups}


def load_full_optimizer_state(
    module: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Load an ``optimizer.state_dict()``-layout state (full tensors) into a sharded optimizer."""
    names = _param_names(module, optimizer)
    groups = [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]
    by_name = {names[int(i)]: value for i, value in state["state"].items()}
    set_optimizer_state_dict(
        module,
        optimizer,
        {"state": by_name, "param_groups": groups},
        options=StateDictOptions(full_state_dict=True),
    )
