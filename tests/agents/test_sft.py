from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from agents.sft import (
    Demonstration,
    DemonstrationFileWarning,
    SFTConfig,
    collate,
    main,
    read_demonstrations,
    sft_loss,
    tokenize_demonstrations,
    train_sft,
)
from textrl_env.logprobs import sequence_logprobs

DEMOS = [("2+2=", "4"), ("1+2=", "3"), ("hi ", "there")]


def _greedy(model, tokenizer, prompt: str, max_new_tokens: int = 8) -> str:  # noqa: ANN001
    ids = torch.tensor([tokenizer(prompt)["input_ids"]])
    out = model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    return tokenizer.decode(out[0, ids.shape[1] :], skip_special_tokens=True)


def test_read_demonstrations_reports_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "demos.jsonl"
    lines = [
        json.dumps({"prompt": "a", "response": "b", "source": "kept-extra-key"}),
        "",
        "{not json",
        json.dumps({"prompt": "a"}),
        json.dumps({"prompt": "a", "response": 3}),
        json.dumps({"prompt": "c", "response": "d"}),
    ]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="3 malformed line") as err:
        read_demonstrations(path)
    message = str(err.value)
    assert f"{path}:3: invalid JSON" in message
    assert f"{path}:4: missing key(s) ['response']" in message
    assert f"{path}:5: 'response' is int" in message
    with pytest.warns(DemonstrationFileWarning, match="skipped 3 malformed"):
        demos = read_demonstrations(path, on_error="skip_with_warning")
    assert demos == [Demonstration("a", "b"), Demonstration("c", "d")]


def test_batch_layout_left_pads_prompts_and_appends_eos(char_tokenizer) -> None:  # noqa: ANN001
    examples = tokenize_demonstrations(char_tokenizer, [Demonstration("ab", "x"), Demonstration("c", "yz")])
    ids, mask, start = collate(examples, pad_token_id=char_tokenizer.pad_token_id)
    tok = char_tokenizer.convert_tokens_to_ids
    eos, pad = char_tokenizer.eos_token_id, char_tokenizer.pad_token_id
    assert start == 2
    assert ids.tolist() == [
        [tok("a"), tok("b"), tok("x"), eos, pad],
        [pad, tok("c"), tok("y"), tok("z"), eos],
    ]
    assert mask.tolist() == [[1, 1, 1, 1, 0], [0, 1, 1, 1, 1]]
    cut = tokenize_demonstrations(char_tokenizer, [Demonstration("abc", "xyz")], 2, 2)
    assert cut == [([tok("b"), tok("c")], [tok("x"), tok("y")])]


def test_loss_is_on_response_tokens_only(char_lm, char_tokenizer) -> None:  # noqa: ANN001
    ids, mask, start = collate(tokenize_demonstrations(char_tokenizer, [Demonstration("ab", "x")]), 0)
    loss = sft_loss(char_lm, ids, mask, start)
    logprobs = sequence_logprobs(char_lm, ids, mask, start)
    assert loss.item() == pytest.approx(-logprobs[0].sum().item() / 2)  # "x" and EOS, nothing from the prompt


def test_sft_teaches_the_demonstrated_responses(tmp_path: Path, char_lm, char_tokenizer) -> None:  # noqa: ANN001
    before = [_greedy(char_lm, char_tokenizer, p) for p, _ in DEMOS]
    assert before != [r for _, r in DEMOS]
    config = SFTConfig(learning_rate=1e-2, num_epochs=60, batch_size=3, seed=0)
    result = train_sft(char_lm, char_tokenizer, DEMOS, config, output_dir=tmp_path / "sft", progress=False)
    assert result.num_steps == 60 and len(result.epoch_losses) == 60
    assert result.epoch_losses[-1] < 0.1 * result.epoch_losses[0]
    assert [_greedy(char_lm, char_tokenizer, p) for p, _ in DEMOS] == [r for _, r in DEMOS]
    assert not char_lm.training  # back in eval mode for the RL stage
    saved = AutoModelForCausalLM.from_pretrained(tmp_path / "sft")
    assert torch.equal(saved.lm_head.weight, char_lm.lm_head.weight)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sft"]  # atomic: no temp directories left


def test_sft_is_seeded(make_tiny_lm, char_tokenizer) -> None:  # noqa: ANN001
    config = SFTConfig(learning_rate=1e-2, num_epochs=2, batch_size=1, seed=3)
    runs = [
        train_sft(make_tiny_lm(len(char_tokenizer)), char_tokenizer, DEMOS, config, progress=False).losses
        for _ in range(2)
    ]
    assert runs[0] == runs[1]


def test_cli_trains_and_saves(tmp_path: Path, char_lm, char_tokenizer) -> None:  # noqa: ANN001
    char_lm.save_pretrained(tmp_path / "base")
    char_tokenizer.save_pretrained(tmp_path / "base")
    data = tmp_path / "demos.jsonl"
    data.write_text("".join(json.dumps({"prompt": p, "response": r}) + "\n" for p, r in DEMOS))
    out = tmp_path / "out"
    result = main(
        ["--data", str(data), "--model", str(tmp_path / "base"), "--out", str(out), "--epochs", "40",
         "--lr", "1e-2", "--batch-size", "3", "--device", "cpu", "--quiet"]
    )  # fmt: skip
    assert result.epoch_losses[-1] < result.epoch_losses[0]
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert _greedy(model, tokenizer, "2+2=") == "4"


def test_bad_config_and_data(char_lm, char_tokenizer) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match="SFTConfig.batch_size must be > 0"):
        SFTConfig(batch_size=0)
    with pytest.raises(ValueError, match="'response' is empty"):
        train_sft(char_lm, char_tokenizer, [("a", "")], progress=False)
    with pytest.raises(TypeError, match="expected a \\(prompt, response\\) pair"):
        train_sft(char_lm, char_tokenizer, ["just a string"], progress=False)
    with pytest.raises(ValueError, match="no demonstrations"):
        train_sft(char_lm, char_tokenizer, [], progress=False)
