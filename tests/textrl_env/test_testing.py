"""The public Hypothesis strategies in textrl_env.testing, and the example in their docs."""

import ast
import inspect

import pytest
import torch
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import textrl_env.testing as testing
from reward_models import kl_penalty
from textrl_env.testing import (
    kl_coefs,
    logprob_tensors,
    prompts_and_completions,
    reward_batches,
    token_sequences,
)

FEW = settings(max_examples=40, deadline=None)


def _docstring_example() -> str:
    """The indented code block after 'Example:' in the module docstring."""
    doc = testing.__doc__ or ""
    block = doc.split("::\n", 1)[1].split("\nThis module imports", 1)[0]
    lines = block.splitlines()
    return "\n".join(line[4:] for line in lines)


def test_the_documented_example_runs():
    namespace: dict = {}
    exec(compile(_docstring_example(), "textrl_env.testing docstring", "exec"), namespace)
    namespace["test_my_shaping_keeps_the_return"]()


def test_the_documented_example_catches_a_wrong_shaping_function():
    # The same property must fail for a function that forgets the mask: the strategies draw
    # nonzero log-probs under the mask, so Hypothesis finds it.
    # Skip shrinking: we only need to know that a counterexample is found, and fast.
    decorator = "@settings(max_examples=50, deadline=None)"
    source = _docstring_example()
    assert decorator in source
    source = source.replace(decorator, decorator[:-1] + ", phases=[Phase.generate])")
    namespace: dict = {"Phase": Phase}
    exec(compile(source, "textrl_env.testing docstring", "exec"), namespace)

    def forgets_the_mask(scores, kl, mask, kl_coef):
        rewards = -kl_coef * kl
        rewards[:, -1] += scores
        return rewards

    namespace["my_shaping"] = forgets_the_mask
    with pytest.raises(AssertionError):
        namespace["test_my_shaping_keeps_the_return"]()


# The example, as a user would paste it into their own test file (kept identical to the docs).


def my_shaping(scores, kl, mask, kl_coef):
    rewards = -kl_coef * kl * mask
    last = mask.cumsum(dim=1).argmax(dim=1)  # index of each row's last response token
    rewards[torch.arange(len(scores)), last] += scores
    return rewards


@settings(max_examples=50, deadline=None)
@given(st.data(), kl_coefs())
def test_my_shaping_keeps_the_return(data, kl_coef):
    logprobs, ref_logprobs, mask = data.draw(logprob_tensors())
    scores = data.draw(reward_batches(batch_size=logprobs.shape[0]))
    kl = kl_penalty(logprobs, ref_logprobs, mask, estimator="k3")
    rewards = my_shaping(scores, kl, mask, kl_coef)
    expected = scores - kl_coef * kl.sum(dim=1)
    torch.testing.assert_close(rewards.sum(dim=1), expected, rtol=1e-4, atol=1e-3)
    assert bool((rewards[mask == 0] == 0).all())


def test_pasted_example_matches_the_docstring():
    example = _docstring_example()
    pasted = inspect.getsource(my_shaping) + "\n\n" + inspect.getsource(test_my_shaping_keeps_the_return)
    assert pasted.strip() in example
    # the example's imports bind the same objects here
    imports = "\n".join(line for line in example.splitlines() if line.startswith(("import ", "from ")))
    bound: dict = {}
    exec(imports, bound)
    for name, obj in bound.items():
        if name != "__builtins__":
            assert globals()[name] is obj, name


# ---------------------------------------------------------------- the strategies' contracts


def _is_prefix_mask(mask: torch.Tensor) -> bool:
    ones = mask.sum(dim=1)  # (B,)
    expected = (torch.arange(mask.shape[1]).unsqueeze(0) < ones.unsqueeze(1)).to(mask.dtype)
    return bool((ones >= 1).all()) and torch.equal(mask, expected)


@FEW
@given(token_sequences(vocab_size=7, max_len=9, pad_token_id=0))
def test_token_sequences(pair):
    ids, mask = pair
    assert ids.dtype == mask.dtype == torch.long and ids.shape == mask.shape
    assert 1 <= ids.shape[0] <= 4 and 1 <= ids.shape[1] <= 9
    assert bool(((ids >= 0) & (ids < 7)).all())
    assert _is_prefix_mask(mask)
    assert bool((ids[mask == 0] == 0).all())


@FEW
@given(token_sequences(vocab_size=5, max_len=6, batch_size=3, eos_token_id=2, pad_token_id=4))
def test_token_sequences_with_eos_mask_everything_after_it(pair):
    ids, mask = pair
    assert ids.shape[0] == 3 and _is_prefix_mask(mask)
    for row, row_mask in zip(ids, mask, strict=True):
        n = int(row_mask.sum())
        eos = (row[:n] == 2).nonzero().flatten().tolist()
        assert eos in ([], [n - 1])  # an EOS can only be the last unmasked token
        assert bool((row[n:] == 4).all())


@FEW
@given(logprob_tensors(max_batch_size=3, max_length=5))
def test_logprob_tensors(triple):
    logprobs, ref, mask = triple
    for t in triple:
        assert t.dtype == torch.float32 and t.shape == logprobs.shape
    assert logprobs.shape[0] <= 3 and logprobs.shape[1] <= 5
    for t in (logprobs, ref):
        assert bool(torch.isfinite(t).all()) and bool((t <= 0).all())
    assert _is_prefix_mask(mask)


@FEW
@given(logprob_tensors(batch_size=2, length=7, dtype=torch.float64))
def test_logprob_tensors_fixed_shape(triple):
    assert all(t.shape == (2, 7) and t.dtype == torch.float64 for t in triple)


@FEW
@given(reward_batches(batch_size=5, min_value=-1.0, max_value=2.0), kl_coefs(max_value=0.5))
def test_reward_batches_and_kl_coefs(scores, kl_coef):
    assert scores.shape == (5,) and bool(torch.isfinite(scores).all())
    assert bool(((scores >= -1.0) & (scores <= 2.0)).all())
    assert 0.0 <= kl_coef <= 0.5


@FEW
@given(prompts_and_completions(max_size=4))
def test_prompts_and_completions(pair):
    prompts, completions = pair
    assert len(prompts) == len(completions) and 1 <= len(prompts) <= 4
    assert all(isinstance(s, str) for s in prompts + completions)


def test_prompts_and_completions_include_empty_completions():
    seen_empty = []

    @settings(max_examples=50, deadline=None)
    @given(prompts_and_completions())
    def record(pair):
        seen_empty.append("" in pair[1])

    record()
    assert any(seen_empty)


def test_bad_strategy_arguments_fail_early():
    # raised when the strategy is built, not deep inside a later draw
    with pytest.raises(ValueError, match="vocab_size=0"):
        token_sequences(0, 4)
    with pytest.raises(ValueError, match="eos_token_id=9"):
        token_sequences(5, 4, eos_token_id=9)
    with pytest.raises(ValueError, match="min_logprob=1.0"):
        logprob_tensors(min_logprob=1.0)
    with pytest.raises(ValueError, match="length=0"):
        logprob_tensors(2, 0)
    with pytest.raises(ValueError, match="min_value=2.0 must be <= max_value=1.0"):
        reward_batches(min_value=2.0, max_value=1.0)
    with pytest.raises(ValueError, match="min_value=-1"):
        kl_coefs(min_value=-1)


def test_module_imports_only_hypothesis_and_torch():
    tree = ast.parse(inspect.getsource(testing))
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported <= {"__future__", "hypothesis", "torch"}, imported
