"""The preallocated cache layer (textrl_env.slot_layer) and the cache surgery around it (textrl_env.kv_cache)."""

from __future__ import annotations

import copy

import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicLayer

from tests.conftest import build_tiny_lm
from textrl_env.decoder import cache_keyword, output_cache
from textrl_env.kv_cache import drop_leading_slots, layer_tensors, with_slot_layers
from textrl_env.slot_layer import SlotLayer


def _kv(batch: int = 2, slots: int = 3, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    keys = torch.randn(batch, 2, slots, 4, generator=generator)
    return keys, torch.randn(batch, 2, slots, 4, generator=generator)


def test_appends_write_in_place_and_match_concatenation() -> None:
    keys, values = _kv()
    layer = SlotLayer(keys, values, capacity=8)
    buffer = layer._key_buffer
    expected_k, expected_v = keys, values
    for seed in range(1, 5):  # 3 + 4 slots: still inside the 8-slot buffer
        new_k, new_v = _kv(slots=1, seed=seed)
        got_k, got_v = layer.update(new_k, new_v)
        expected_k, expected_v = torch.cat([expected_k, new_k], 2), torch.cat([expected_v, new_v], 2)
        assert torch.equal(got_k, expected_k) and torch.equal(got_v, expected_v)
        assert layer.get_seq_length() == expected_k.shape[2]
    assert layer._key_buffer is buffer  # no reallocation while there was room


def test_grows_when_full_and_keeps_every_slot() -> None:
    keys, values = _kv(slots=2)
    layer = SlotLayer(keys, values, capacity=2)
    new_k, new_v = _kv(slots=3, seed=1)
    got_k, got_v = layer.update(new_k, new_v)
    assert layer._key_buffer.shape[2] >= 5
    assert torch.equal(got_k, torch.cat([keys, new_k], 2))
    assert torch.equal(got_v, torch.cat([values, new_v], 2))


def test_dropping_leading_slots_moves_the_start_without_copying() -> None:
    keys, values = _kv(slots=4)
    cache = DynamicCache()
    cache.update(keys, values, 0)
    with_slot_layers(cache, capacity=8)
    buffer = cache.layers[0]._key_buffer
    drop_leading_slots(cache, 3)
    new_k, new_v = _kv(slots=2, seed=4)
    got_k, got_v = cache.layers[0].update(new_k, new_v)
    assert cache.layers[0]._key_buffer is buffer  # 3 + 1 + 2 slots still fit: nothing was copied
    assert torch.equal(got_k, torch.cat([keys[:, :, 3:], new_k], 2))
    assert torch.equal(got_v, torch.cat([values[:, :, 3:], new_v], 2))
    more_k, more_v = _kv(slots=3, seed=6)  # past the end of the buffer: moved to a new one
    got_k, _ = cache.layers[0].update(more_k, more_v)
    assert cache.layers[0]._key_buffer is not buffer
    assert torch.equal(got_k, torch.cat([keys[:, :, 3:], new_k, more_k], 2))


def test_keys_assigned_from_outside_are_adopted() -> None:
    """transformers' crop / batch_select_indices and drop_leading_slots assign keys directly."""
    keys, values = _kv(slots=4)
    cache = DynamicCache()
    cache.update(keys, values, 0)
    with_slot_layers(cache, capacity=16)
    drop_leading_slots(cache, 1)  # assigns new (contiguous) tensors to the layer
    cache.layers[0].batch_select_indices(torch.tensor([1]))
    new_k, new_v = _kv(batch=1, slots=1, seed=3)
    got_k, got_v = cache.layers[0].update(new_k, new_v)
    assert torch.equal(got_k, torch.cat([keys[1:, :, 1:], new_k], 2))
    assert torch.equal(got_v, torch.cat([values[1:, :, 1:], new_v], 2))


def test_a_reset_layer_starts_again_from_the_next_update() -> None:
    keys, values = _kv()
    layer = SlotLayer(keys, values, capacity=8)
    layer.reset()  # transformers' Cache.reset: drops the tensors
    new_k, new_v = _kv(slots=2, seed=5)
    got_k, got_v = layer.update(new_k, new_v)
    assert torch.equal(got_k, new_k) and torch.equal(got_v, new_v) and layer.get_seq_length() == 2


def test_with_slot_layers_swaps_only_plain_dynamic_layers() -> None:
    class Other(DynamicLayer):
        pass

    keys, values = _kv()
    cache = DynamicCache()
    cache.update(keys, values, 0)
    cache.layers.append(Other())
    cache.layers[1].update(keys, values)
    with_slot_layers(cache, capacity=8)
    assert type(cache.layers[0]) is SlotLayer and type(cache.layers[1]) is Other
    assert [torch.equal(k, keys) for k, _ in layer_tensors(cache)] == [True, True]


@torch.no_grad()
def test_decoding_with_slot_layers_gives_dynamic_cache_logits() -> None:
    model = build_tiny_lm().eval()
    ids = torch.randint(3, model.config.vocab_size, (3, 5), generator=torch.Generator().manual_seed(0))
    prefill = model(input_ids=ids, use_cache=True)
    plain, slots = output_cache(prefill), with_slot_layers(copy.deepcopy(output_cache(prefill)), 6)
    kw = cache_keyword(model)
    token = prefill.logits[:, -1].argmax(-1, keepdim=True)
    for position in range(5, 15):  # past the 6 + 5 slots of the first buffer
        pos = torch.full((3, 1), position)
        a = model(input_ids=token, position_ids=pos, use_cache=True, **{kw: plain})
        b = model(input_ids=token, position_ids=pos, use_cache=True, **{kw: slots})
        torch.testing.assert_close(a.logits, b.logits, rtol=0, atol=1e-6)
        plain, slots, token = output_cache(a), output_cache(b), a.logits[:, -1].argmax(-1, keepdim=True)
    assert all(type(layer) is SlotLayer for layer in slots.layers)


def test_the_vector_env_decodes_an_episode_without_reallocating_its_cache() -> None:
    from tests.conftest import build_char_tokenizer
    from tests.textrl_env.test_text_env import PROMPTS, length_reward
    from textrl_env import TextGenerationVectorEnv

    envs = TextGenerationVectorEnv(
        build_tiny_lm(), build_char_tokenizer(), PROMPTS, length_reward, num_envs=3, max_new_tokens=6,
        autoreset_mode="Disabled",
    )  # fmt: skip
    envs.reset(seed=0)
    layers = list(envs._decoder.cache.layers)
    buffers = [layer._key_buffer for layer in layers]
    for _ in range(6):
        envs.step(torch.tensor([5, 6, 7]))  # no EOS: every row runs all 6 tokens
    assert all(type(layer) is SlotLayer for layer in envs._decoder.cache.layers)
    # The same buffer objects: every append was written in place.
    assert all(
        layer._key_buffer is buffer for layer, buffer in zip(envs._decoder.cache.layers, buffers, strict=True)
    )


def test_values_with_another_head_size_append_in_place() -> None:
    """Some attention variants cache values with a different head size than keys."""
    keys, _ = _kv(slots=3)
    values = torch.randn(2, 2, 3, 6)
    layer = SlotLayer(keys, values, capacity=8)
    buffer = layer._value_buffer
    layer.keys, layer.values = layer.keys[:, :, 1:], layer.values[:, :, 1:]  # a later start
    new_k, new_v = torch.randn(2, 2, 1, 4), torch.randn(2, 2, 1, 6)
    got_k, got_v = layer.update(new_k, new_v)
    assert layer._value_buffer is buffer  # recognised as a view: no copy
    assert torch.equal(got_k, torch.cat([keys[:, :, 1:], new_k], 2))
    assert torch.equal(got_v, torch.cat([values[:, :, 1:], new_v], 2))
