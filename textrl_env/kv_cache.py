"""Row-wise surgery on a transformers KV cache, for a batch whose rows restart at different times.

The vector env keeps one cache for all rows. Columns are shared time slots; each row's attention
mask says which slots belong to its current episode. When a row restarts, its new prompt is
prefilled on its own and its keys/values are written into that row's last slots.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicLayer


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
    """Forget the first ``n`` time slots of every row (slots no row attends to any more)."""
    if n <= 0:
        return
    for i, (keys, values) in enumerate(layer_tensors(cache)):
        _set_layer(cache, i, keys[:, :, n:].contiguous(), values[:, :, n:].contiguous())


class SlotLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys/values are views into a buffer with room to grow.

    ``DynamicLayer.update`` appends with ``torch.cat``, copying the whole cache every decode step
    (and, on CPU, touching freshly allocated pages), so a step's cost grows with the response.
    Here an append writes one slot in place; the buffer doubles when full, so copies are amortised.
    ``keys``/``values`` stay plain attributes, so code that assigns them (transformers' ``crop``,
    ``batch_select_indices``, or :func:`drop_leading_slots`) still works: the next update notices
    that they no longer view the buffer and moves them into a fresh one.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, capacity: int) -> None:
        super().__init__()
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True
        self._store(keys, values, capacity)

    def _store(
        self, keys: torch.Tensor, values: torch.Tensor, capacity: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        b, h, s, d = keys.shape
        self._key_buffer = keys.new_empty(b, h, max(capacity, s), d)  # (B, H, capacity, D)
        self._value_buffer = values.new_empty(b, h, max(capacity, s), values.shape[3])
        self._key_buffer[:, :, :s] = keys
        self._value_buffer[:, :, :s] = values
        return self._views(s)

    def _views(self, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        keys, values = self._key_buffer[:, :, :length], self._value_buffer[:, :, :length]
        self.keys, self.values = keys, values
        return keys, values

    def _views_current(self) -> bool:
        keys, values = self.keys, self.values
        return (
            keys is not None
            and values is not None
            and keys.data_ptr() == self._key_buffer.data_ptr()
            and values.data_ptr() == self._value_buffer.data_ptr()
            and keys.shape[:2] == self._key_buffer.shape[:2]
        )

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new slots after the current ones and return views of all of them."""
        if self.keys is None or self.values is None or self.keys.dim() != 4:  # reset() emptied it
            self.dtype, self.device, self.is_initialized = key_states.dtype, key_states.device, True
            return self._store(key_states, value_states, 2 * key_states.shape[2])
        length, new = self.keys.shape[2], key_states.shape[2]
        if not self._views_current() or length + new > self._key_buffer.shape[2]:
            self._store(self.keys, self.values, 2 * (length + new))
        self._key_buffer[:, :, length : length + new] = key_states
        self._value_buffer[:, :, length : length + new] = value_states
        return self._views(length + new)


def with_slot_layers(cache: Any, capacity: int) -> Any:
    """Swap each plain ``DynamicLayer`` of ``cache`` for a :class:`SlotLayer` with ``capacity`` slots.

    Other layer kinds (sliding windows, quantised, older caches without ``layers``) are left as
    they are: their own ``update`` knows rules a plain append would break.
    """
    layers = getattr(cache, "layers", None)
    if layers is None:
        return cache
    for i, layer in enumerate(layers):
        if type(layer) is DynamicLayer and layer.keys is not None and layer.values is not None:
            layers[i] = SlotLayer(layer.keys, layer.values, capacity)
    return cache
