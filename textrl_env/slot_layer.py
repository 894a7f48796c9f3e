"""A KV-cache layer that appends in place: transformers' ``DynamicLayer`` over a preallocated buffer.

Imported only where a cache has ``layers`` (transformers >= 4.56), the versions that have
``DynamicLayer``; :func:`textrl_env.kv_cache.with_slot_layers` is the entry point.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicLayer

__all__ = ["DynamicLayer", "SlotLayer"]


class SlotLayer(DynamicLayer):
    """A ``DynamicLayer`` whose keys/values are views into a buffer with room to grow.

    ``DynamicLayer.update`` appends with ``torch.cat``, copying the whole cache every decode step
    (and, on CPU, touching freshly allocated pages), so a step's cost grows with the response.
    Here an append writes its slots in place; when the buffer is full it is replaced by one twice
    the size, so copies are amortised.

    ``keys``/``values`` stay plain attributes that view ``[start, start + length)`` of the buffers,
    so code that assigns them keeps working: a view into the buffers (transformers' ``crop``,
    :func:`~textrl_env.kv_cache.drop_leading_slots`) is taken as the new start and length, and any
    other tensor (``batch_select_indices``, ``reorder_cache``, a prepend) is copied into fresh
    buffers at the next update. For a no-grad cache only: appends write into memory that views
    returned earlier may still see, which autograd would not allow.
    """

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, capacity: int) -> None:
        super().__init__()
        self.dtype, self.device = keys.dtype, keys.device
        self.is_initialized = True
        self._store(keys, values, capacity)

    def _store(
        self, keys: torch.Tensor, values: torch.Tensor, capacity: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Copy ``keys``/``values`` to the start of new buffers of ``capacity`` slots (at least theirs)."""
        b, h, s, d = keys.shape
        self._key_buffer = keys.new_empty(b, h, max(capacity, s), d)  # (B, H, capacity, D)
        self._value_buffer = values.new_empty(b, h, max(capacity, s), values.shape[3])
        self._key_buffer[:, :, :s] = keys
        self._value_buffer[:, :, :s] = values
        return self._views(0, s)

    def _views(self, start: int, length: int) -> tuple[torch.Tensor, torch.Tensor]:
        end = start + length
        self.keys = self._key_buffer[:, :, start:end]
        self.values = self._value_buffer[:, :, start:end]
        self._viewed = (self.keys, self.values, start)  # what the next update finds, unless reassigned
        return self.keys, self.values

    def _start_of(self, keys: torch.Tensor, values: torch.Tensor) -> int | None:
        """The slot where ``keys``/``values`` begin if they view the buffers, else None."""
        starts = set()
        for t, buf in ((keys, self._key_buffer), (values, self._value_buffer)):
            # Each by its own slot size: values may have another head size than keys.
            slot_bytes = buf.stride(2) * buf.element_size()
            offset = t.data_ptr() - buf.data_ptr()
            if (
                t.shape[:2] != buf.shape[:2]
                or t.stride() != buf.stride()
                or offset < 0
                or offset % slot_bytes
            ):
                return None
            starts.add(offset // slot_bytes)
        start = starts.pop()
        fits = start + keys.shape[2] <= self._key_buffer.shape[2]
        return start if fits and not starts and values.shape[2] == keys.shape[2] else None

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new slots after the current ones and return views of all of them."""
        keys, values = self.keys, self.values
        if keys is None or values is None or keys.dim() != 4:  # Cache.reset() emptied the layer
            self.dtype, self.device, self.is_initialized = key_states.dtype, key_states.device, True
            return self._store(key_states, value_states, 2 * key_states.shape[2])
        length, new = keys.shape[2], key_states.shape[2]
        viewed_keys, viewed_values, viewed_start = self._viewed
        # The views this layer handed out last (every decode step) need no pointer arithmetic.
        start = (
            viewed_start if keys is viewed_keys and values is viewed_values else self._start_of(keys, values)
        )
        if start is None or start + length + new > self._key_buffer.shape[2]:
            start = 0  # tensors from outside, or no room left after them
            self._store(keys, values, 2 * (length + new))
        end = start + length
        self._key_buffer[:, :, end : end + new] = key_states
        self._value_buffer[:, :, end : end + new] = value_states
        return self._views(start, length + new)
