"""Row-wise surgery on a transformers KV cache, for a batch whose rows restart at different times.

The vector env keeps one cache for all rows. Columns are shared time slots; each row's attention
mask says which slots belong to its current episode. When a row restarts, its new prompt is
prefilled on its own and its keys/values are written into that row's last slots.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import torch
from torch import nn


def layer_tensors(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """``[(keys, values), ...]`` per layer, each ``(B, heads, S, head_dim)``."""
    if hasattr(cache, "layers"):  # transformers >= 4.56
        return [(layer.keys, layer.values) for layer in cache.layers]
    return list(zip(cache.key_cache, cache.value_cache, strict=True))  # older DynamicCache


def _set_layer(cache: Any, i: int, keys: torch.Tensor, values: torch.Tensor) -> None:
    if hasattr(cache, "layers"):
        cache.layers[i].keys, cache.layers[i].values = keys, values
    else:
        cache.key_cache[i], cache.value_cache[i] = keys, values


def splice_rows(cache: Any, rows: torch.Tensor, prefill: Any) -> None:
    """Write ``prefill``'s keys/values (``R`` rows, ``P`` slots) into the last ``P`` slots of ``rows``."""
    for (keys, values), (new_keys, new_values) in zip(
        layer_tensors(cache), layer_tensors(prefill), strict=True
    ):
        width = new_keys.shape[2]
        keys[rows, :, -width:] = new_keys.to(keys.dtype)  # (R, H, P, D)
        values[rows, :, -width:] = new_values.to(values.dtype)


def distinct_rows(ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor] | None:
    """``(first, inverse)`` when rows of ``(ids, mask)`` repeat: row ``first[j]`` is the ``j``-th distinct
    row and row ``i`` equals row ``first[inverse[i]]``; None when every row is distinct.

    RLOO's and GRPO's ``k`` samples of a prompt are ``k`` equal prompt rows: computing each distinct
    prompt once and copying its keys/values is the same result for a ``k``-th of the work.
    """
    rows = torch.cat([ids, mask.to(ids.dtype)], dim=1)  # equal ids with different masks stay apart
    unique, inverse = torch.unique(rows, dim=0, return_inverse=True)
    if unique.shape[0] == rows.shape[0]:
        return None
    # The first row of each distinct value (any row would do: they are equal).
    order = torch.arange(rows.shape[0], device=rows.device)
    first = torch.full((unique.shape[0],), rows.shape[0], device=rows.device).scatter_reduce(
        0, inverse, order, reduce="amin"
    )
    return first, inverse


def select_rows(cache: Any, index: torch.Tensor) -> None:
    """Replace every layer's keys/values by their rows ``index`` (repeats allowed: one copy each)."""
    for i, (keys, values) in enumerate(layer_tensors(cache)):
        _set_layer(cache, i, keys.index_select(0, index), values.index_select(0, index))


def scatter_rows(cache: Any, index: torch.Tensor, num_rows: int) -> None:
    """The inverse of :func:`select_rows`: a cache of ``num_rows`` rows holding row ``j`` at ``index[j]``
    (zeros elsewhere, for rows that are masked out until they are prefilled again)."""
    for i, (keys, values) in enumerate(layer_tensors(cache)):
        full_keys = keys.new_zeros((num_rows, *keys.shape[1:])).index_copy_(0, index, keys)
        full_values = values.new_zeros((num_rows, *values.shape[1:])).index_copy_(0, index, values)
        _set_layer(cache, i, full_keys, full_values)


def prepend_empty_slots(cache: Any, n: int) -> None:
    """Add ``n`` zero slots before every row's first slot (the caller masks them out)."""
    if n <= 0:
        return
    for i, (keys, values) in enumerate(layer_tensors(cache)):
        pad = keys.new_zeros(keys.shape[0], keys.shape[1], n, keys.shape[3])  # (B, H, n, D)
        _set_layer(cache, i, torch.cat([pad, keys], dim=2), torch.cat([pad.clone(), values], dim=2))


def drop_leading_slots(cache: Any, n: int) -> None:
    """Forget the first ``n`` time slots of every row (slots no row attends to any more).

    Views, not copies: a :class:`~textrl_env.slot_layer.SlotLayer` recognises them as a later start
    in its buffer, and a plain ``DynamicLayer``'s next append copies them anyway.
    """
    if n <= 0:
        return
    for i, (keys, values) in enumerate(layer_tensors(cache)):
        _set_layer(cache, i, keys[:, :, n:], values[:, :, n:])


def with_slot_layers(cache: Any, capacity: int) -> Any:
    """Swap each plain ``DynamicLayer`` of ``cache`` for a :class:`~textrl_env.slot_layer.SlotLayer`.

    ``capacity`` is the number of slots to allocate. Other layer kinds (sliding windows, quantised)
    are left as they are: their own ``update`` knows rules a plain append would break. So are
    caches without ``layers`` (transformers < 4.56), which have no ``DynamicLayer`` to subclass;
    that is why :mod:`textrl_env.slot_layer` is imported only here.
    """
    layers = getattr(cache, "layers", None)
    if layers is None:
        return cache
    from textrl_env.slot_layer import DynamicLayer, SlotLayer

    for i, layer in enumerate(layers):
        keys, values = layer.keys, layer.values
        if type(layer) is DynamicLayer and keys is not None and values is not None and keys.dim() == 4:
            layers[i] = SlotLayer(keys, values, capacity)
    return cache


def forward_parameters(model: nn.Module) -> frozenset[str] | None:
    """The parameter names of ``model``'s forward (of the base model under peft); None without a signature.

    Read once per forward function: the signature does not change, and inspecting it costs more
    than a small model's decode step.
    """
    base: Any = model.get_base_model() if hasattr(model, "get_base_model") else model  # type: ignore[operator]
    return _parameters(getattr(base.forward, "__func__", base.forward))


@functools.lru_cache(maxsize=64)
def _parameters(forward: Any) -> frozenset[str] | None:
    try:
        return frozenset(inspect.signature(forward).parameters)
    except (TypeError, ValueError):  # builtins or C-implemented forwards have no signature
        return None


def cache_keyword(model: nn.Module) -> str:
    """The name under which ``model.forward`` takes a KV cache.

    transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name warns, and goes in
    5.40); older versions know only ``past_key_values``. The signature says which one this is.
    """
    parameters = forward_parameters(model)
    if parameters is None:  # a C-implemented forward: assume today's transformers
        return "cache"
    return "cache" if "cache" in parameters else "past_key_values"


def output_cache(out: Any) -> Any:
    """The cache a forward returned (``out.cache`` since transformers 5.24, ``past_key_values`` before)."""
    return out["cache"] if "cache" in out else out["past_key_values"]
