"""Row-wise surgery on a transformers KV cache, for a batch whose rows restart at different times.

The vector env keeps one cache for all rows. Columns are shared time slots; each row's attention
mask says which slots belong to its current episode. When a row restarts, its new prompt is
prefilled on its own and its keys/values are written into that row's last slots.
"""

from __future__ import annotations

from typing import Any

import torch


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
