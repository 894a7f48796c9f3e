"""The vector env's KV-cached decoding: one forward per step of one new token per row.

:class:`CachedDecoder` owns the model's key/value cache for a batch whose rows restart at different
times, the mask of the cache slots each row attends to, each row's next position, and the
next-token logits of the last forward. The vector env decides what a step means (Gymnasium's
semantics, rewards, autoreset); this module only runs the model.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np
import torch
from torch import nn

from textrl_env.gpt2_plain import GPT2DecodeStep, plain_gpt2, unhooked
from textrl_env.kv_cache import (
    cache_keyword,
    distinct_rows,
    drop_leading_slots,
    layer_tensors,
    output_cache,
    prepend_empty_slots,
    scatter_rows,
    select_rows,
    splice_rows,
    with_slot_layers,
)
from textrl_env.logprobs import (
    accepts_logits_to_keep,
    leading_padding,
    position_ids_from_mask,
    real_vocab_logits,
)

# Switch for benchmarks (benchmarks/RESULTS.md): TEXTRL_READY_4D_MASK=0 always passes the 2D mask.
READY_4D_MASK = os.environ.get("TEXTRL_READY_4D_MASK", "1") != "0"
# Switch for benchmarks: TEXTRL_FAST_DECODE=0 always calls the model's own forward to decode.
FAST_DECODE = os.environ.get("TEXTRL_FAST_DECODE", "1") != "0"


class CachedDecoder:
    """KV-cached forwards of ``model`` for ``num_rows`` rows (see the module docstring).

    Args:
        model: the causal LM the env generates with.
        num_rows: rows of the batch.
        seq_length: the env's observation length (prompt window + response slots).
        vocab_size: the tokenizer's size; a model with a padded vocabulary emits more logits, and the
            extra ids' are dropped (:func:`~textrl_env.token_math.real_vocab_logits`).
    """

    def __init__(self, model: nn.Module, num_rows: int, seq_length: int, vocab_size: int) -> None:
        device = next(model.parameters()).device
        self.model = model
        self.num_rows = num_rows
        self.seq_length = seq_length
        self.vocab_size = vocab_size
        self.device = device
        self.cache: Any = None
        self.cache_mask = torch.zeros((num_rows, 0), dtype=torch.long, device=device)  # (N, S)
        self.next_pos = torch.zeros(num_rows, dtype=torch.long, device=device)  # (N,)
        self.next_token_logits = torch.zeros((num_rows, vocab_size), device=device)  # (N, V)
        self._cache_kw = cache_keyword(model)
        # A prefill needs only the last position's logits (as generate does): skip the (R, P, V) rest.
        self._last_logits_only = {"logits_to_keep": 1} if accepts_logits_to_keep(model) else {}
        self._mask_4d: bool | None = None  # decided on the first decode step, see _check_mask_4d
        # A GPT-2's decode step as plain tensor operations (textrl_env.gpt2_plain), when its logits
        # are the model's own (checked on the first decode step) and nothing is in the way: the
        # model is still a plain GPT-2 without hooks at each prefill (adapters such as LoRA may be
        # injected after the env is built), without active dropout at each step.
        self._fast: GPT2DecodeStep | None = None  # made on the first prefill that can use it
        self._fast_ok: bool | None = None  # the plain decode step, checked on its first step
        self._fast_now = False
        self._prefill_ok: bool | None = None  # the plain prefill, checked on the first one
        # The rows the cache holds, when ended rows were dropped from it (see advance); None: all.
        self._live: np.ndarray | None = None
        self._live_index: torch.Tensor | None = None

    @property
    def started(self) -> bool:
        """Whether a full prefill has built the cache (the first reset)."""
        return self.cache is not None

    def clear(self) -> None:
        """Forget the cache: the next prefill must cover every row."""
        self.cache = None
        self._live = self._live_index = None

    @torch.no_grad()
    def prefill(
        self, rows: torch.Tensor, prompt_ids: torch.Tensor, prompt_mask: torch.Tensor, room: int
    ) -> None:
        """Run the prompts ``(R, P)`` of ``rows`` and splice their keys/values into the cache.

        ``room``: response slots to allocate per row on a full prefill (one episode's worth).
        """
        # Only the columns some restarting row uses: padding in every row changes nothing.
        width = prompt_ids.shape[1] - leading_padding(prompt_mask)
        prompt_ids, prompt_mask = prompt_ids[:, -width:], prompt_mask[:, -width:]  # (R, width)
        # Rows with the same prompt (the k samples of RLOO and GRPO) share one forward of it.
        shared = distinct_rows(prompt_ids, prompt_mask)
        run_ids, run_mask = (
            (prompt_ids, prompt_mask) if shared is None else (prompt_ids[shared[0]], prompt_mask[shared[0]])
        )
        self._fast_now = self._plain_now()
        logits, new = self._run_prompts(run_ids, run_mask, position_ids_from_mask(run_mask))
        last_logits = self._real_logits(logits)  # (R or distinct rows, V)
        if shared is not None:
            select_rows(new, shared[1])
            last_logits = last_logits[shared[1]]
        if self.cache is None:  # a full reset: the prefill is the whole cache
            # Room for one episode per row (what agents collect); autoresets past it grow the buffer.
            self.cache = with_slot_layers(new, width + room)
            self.cache_mask = torch.zeros((self.num_rows, width), dtype=torch.long, device=self.device)
        else:
            if self._live is not None:  # rows were dropped: give every row its slot back first
                self._restore_rows()
            missing = width - self.cache_mask.shape[1]
            if missing > 0:  # the new prompt is longer than the cache: give every row empty slots first
                prepend_empty_slots(self.cache, missing)
                self.cache_mask = torch.nn.functional.pad(self.cache_mask, (missing, 0))
            splice_rows(self.cache, rows, new)
        self.cache_mask[rows] = 0
        self.cache_mask[rows, -width:] = prompt_mask
        self.next_pos[rows] = prompt_mask.sum(-1)
        self.next_token_logits[rows] = last_logits

    def _run_prompts(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor
    ) -> tuple[torch.Tensor, Any]:
        """The prompts' last-column logits ``(R, V')`` and their cache: the plain GPT-2 pass where it
        gives the model's numbers (checked on the first prefill), else the model's forward."""
        fast = self._fast_step()
        if fast is not None and self._prefill_ok is not False:
            try:
                logits, cache = fast.prefill(ids, mask, positions)
            except (RuntimeError, ValueError, TypeError):  # a variant it does not know: the model's forward
                self._prefill_ok = False
            else:
                if self._prefill_ok is None:
                    self._prefill_ok = self._check_prefill(ids, mask, positions, logits, cache)
                if self._prefill_ok:
                    return logits, cache
        out = self.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            use_cache=True,
            **self._last_logits_only,
        )
        return out.logits[:, -1], output_cache(out)

    def _check_prefill(
        self, ids: torch.Tensor, mask: torch.Tensor, positions: torch.Tensor, logits: torch.Tensor, cache: Any
    ) -> bool:
        """Whether the plain pass's logits and keys/values at real tokens are the model's (to rounding)."""
        out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
        real = mask.bool()  # (R, P): padding slots are masked in every decode step, so any value does there
        try:
            torch.testing.assert_close(logits, out.logits[:, -1])
            for (keys, values), (want_keys, want_values) in zip(
                layer_tensors(cache), layer_tensors(output_cache(out)), strict=True
            ):
                torch.testing.assert_close(keys.transpose(1, 2)[real], want_keys.transpose(1, 2)[real])
                torch.testing.assert_close(values.transpose(1, 2)[real], want_values.transpose(1, 2)[real])
        except (AssertionError, ValueError, RuntimeError):
            return False
        return True

    @torch.no_grad()
    def advance(
        self,
        actions: torch.Tensor,
        continuing: torch.Tensor,
        going_on: np.ndarray,
        pad_id: int,
        drop_ended: bool = False,
    ) -> None:
        """One cached forward of the new token of every continuing row; others add a masked slot.

        ``going_on`` is ``continuing`` known on the host. With ``drop_ended`` (rows that ended stay
        ended until a reset: the env's ``DISABLED`` autoreset), once at most half of the rows the
        cache holds go on, the others are dropped from it, so the forwards that follow run only on
        rows that still generate: a batch whose responses end early stops paying for the longest.
        """
        if drop_ended and self._should_drop(going_on):
            self._keep_rows(np.flatnonzero(going_on))
        live, index = self._live, self._live_index
        if index is not None:
            actions, continuing, positions = actions[index], continuing[index], self.next_pos[index]
        else:
            positions = self.next_pos
        all_continue = bool(going_on.all() if live is None else going_on[live].all())
        tokens = (actions if all_continue else torch.where(continuing, actions, pad_id)).unsqueeze(1)
        self.cache_mask = torch.cat([self.cache_mask, continuing.long().unsqueeze(1)], dim=1)  # (R, S + 1)
        positions = positions.unsqueeze(1)  # (R, 1)
        inputs = {"input_ids": tokens, "position_ids": positions, "use_cache": True}
        fast = self._fast_step()
        if fast is not None and self._fast_ok is None:
            self._fast_ok = self._check_fast(tokens, positions, continuing)
            fast = fast if self._fast_ok else None
        if fast is not None:
            logits = self._real_logits(fast(tokens, positions, self._decode_keep(), self.cache))
        else:
            if self._mask_4d is None:  # first such step: find out whether a ready 4D mask is exact
                self._mask_4d = READY_4D_MASK and self._check_mask_4d(inputs)
            # The ready 4D mask spares the model rebuilding it from the 2D one every step.
            mask = (
                self.cache_mask.bool()[:, None, None, :] if self._mask_4d else self.cache_mask
            )  # (R, 1, 1, S + 1)
            out = self.model(**inputs, attention_mask=mask, **{self._cache_kw: self.cache})
            self.cache = output_cache(out)
            logits = self._real_logits(out.logits[:, -1])  # (R, V)
        if index is None:
            self.next_token_logits = (
                logits
                if all_continue
                else torch.where(continuing.unsqueeze(1), logits, self.next_token_logits)
            )
            self.next_pos += continuing.long()
        else:
            kept = self.next_token_logits[index]
            self.next_token_logits[index] = (
                logits if all_continue else torch.where(continuing.unsqueeze(1), logits, kept)
            )
            self.next_pos[index] += continuing.long()
        self._compact()

    def _plain_now(self) -> bool:
        """Whether the plain GPT-2 passes may run until the next prefill: the model is one now, unhooked."""
        if (
            not FAST_DECODE
            or self._fast_ok is False
            or not plain_gpt2(self.model)
            or not unhooked(self.model)
        ):
            return False
        if self._fast is None:
            self._fast = GPT2DecodeStep(self.model)
        self._fast.refresh()  # dropout modules may have been changed since
        return True

    def _fast_step(self) -> GPT2DecodeStep | None:
        """The plain GPT-2 pass for this forward, or None for the model's own."""
        fast = self._fast
        return fast if self._fast_now and fast is not None and fast.deterministic() else None

    def _decode_keep(self) -> torch.Tensor:
        """The plain decode step's boolean keep-mask ``(R, 1, 1, S + 1)``: one query token attends to
        the cache slots its mask allows, and always to its own new slot, so a row that attends to
        nothing else (one whose slots were given back empty, see _restore_rows) stays finite; such
        rows' logits are not used."""
        keep = self.cache_mask.bool()
        keep[:, -1] = True
        return keep[:, None, None, :]

    def _should_drop(self, going_on: np.ndarray) -> bool:
        held = len(going_on) if self._live is None else len(self._live)
        on = int(going_on.sum()) if self._live is None else int(going_on[self._live].sum())
        return 0 < 2 * on <= held

    def _keep_rows(self, rows: np.ndarray) -> None:
        """Keep only ``rows`` (env row indices, ascending) in the cache."""
        where = rows if self._live is None else np.searchsorted(self._live, rows)
        position = torch.as_tensor(where, device=self.device)
        select_rows(self.cache, position)
        self.cache_mask = self.cache_mask[position]
        self._live, self._live_index = rows, torch.as_tensor(rows, device=self.device)

    def _restore_rows(self) -> None:
        """Give the cache every row again; the dropped ones get empty, masked slots until prefilled."""
        assert self._live_index is not None
        scatter_rows(self.cache, self._live_index, self.num_rows)
        full = self.cache_mask.new_zeros((self.num_rows, self.cache_mask.shape[1]))
        self.cache_mask = full.index_copy_(0, self._live_index, self.cache_mask)
        self._live = self._live_index = None

    def _real_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """The float32 logits ``(R, V)`` of the real vocabulary, from one position's ``(R, V')``.

        Without padding this is what it always was (no copy for float32 logits). With a padded
        vocabulary, the slice is made contiguous once here, which the softmax of the sampler and of
        the log-probs would otherwise each do on their own.
        """
        return real_vocab_logits(logits, self.vocab_size).float().contiguous()

    def _check_mask_4d(self, inputs: dict[str, Any]) -> bool:
        """Whether the model gives the same logits (to rounding) for a ready boolean 4D mask as for the 2D one.

        transformers passes a 4D mask through unchanged; attention kernels that read it as a
        boolean keep-mask (SDPA) then skip rebuilding it each step. Checked once on a copy of the
        cache, so a model that reads masks differently just keeps the 2D path.
        """
        if getattr(self.model.config, "_attn_implementation", None) != "sdpa":
            return False
        try:
            copy_2d, copy_4d = copy.deepcopy(self.cache), copy.deepcopy(self.cache)
            reference = self.model(
                **inputs, attention_mask=self.cache_mask, **{self._cache_kw: copy_2d}
            ).logits
            mask = self.cache_mask.bool()[:, None, None, :]
            candidate = self.model(**inputs, attention_mask=mask, **{self._cache_kw: copy_4d}).logits
        except (RuntimeError, ValueError, TypeError):
            return False
        try:  # equal up to rounding: on a GPU the two masks may pick attention kernels that round differently
            torch.testing.assert_close(candidate, reference)
        except AssertionError:
            return False
        return True

    def _check_fast(self, tokens: torch.Tensor, positions: torch.Tensor, continuing: torch.Tensor) -> bool:
        """Whether the plain-tensor GPT-2 step gives the model's own logits (to rounding) on the
        ``continuing`` rows (the only ones whose logits are used), on copies of the cache.

        Its operations are the model's, so this fails only for a variant of the model it does not
        know (another attention kernel, a patched module); the env then keeps the model's forward.
        """
        assert self._fast is not None
        copy_model, copy_fast = copy.deepcopy(self.cache), copy.deepcopy(self.cache)
        try:
            reference = self.model(
                input_ids=tokens,
                position_ids=positions,
                use_cache=True,
                attention_mask=self.cache_mask,
                **{self._cache_kw: copy_model},
            ).logits[:, -1]
            candidate = self._fast(tokens, positions, self._decode_keep(), copy_fast)
            torch.testing.assert_close(candidate[continuing], reference[continuing])
        except (RuntimeError, ValueError, TypeError, AssertionError):
            return False
        return True

    def _compact(self) -> None:
        """Drop cache slots no row attends to, so the cache stays about one episode long."""
        width = self.cache_mask.shape[1]
        if width < 2 * self.seq_length:
            return
        first = leading_padding(self.cache_mask)  # host sync, but only once per ~episode length of steps
        drop_leading_slots(self.cache, first)
        self.cache_mask = self.cache_mask[:, first:]
