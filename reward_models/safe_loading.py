"""Loading transformers models without running what a file asks to run.

``from_pretrained`` reads safetensors, or a ``pytorch_model.bin`` through
``torch.load(weights_only=True)``, which refuses any pickle that would call code. Here that refusal
(torch's ``UnpicklingError``, whose own text suggests turning the protection off) becomes a
``ValueError`` naming the folder and the safe fix. ``trust_remote_code`` is never turned on here: a
model's own Python code runs only when the caller asks for it explicitly.
"""

from __future__ import annotations

import os
from pickle import UnpicklingError  # the exception type only; nothing here unpickles
from typing import Any


def from_pretrained_safely(loader: Any, source: str | os.PathLike[str], **kwargs: Any) -> Any:
    """``loader.from_pretrained(source, **kwargs)``, refusing weights that need pickle with a clear message.

    Args:
        loader: a transformers Auto class or model class.
        source: a model id or a local folder.
        **kwargs: passed on (``trust_remote_code`` only if the caller gave it).

    Raises:
        ValueError: the weights file would run code when unpickled (``torch.load(weights_only=True)``
            refused it); nothing from it was executed.
    """
    try:
        return loader.from_pretrained(os.fspath(source), **kwargs)
    except UnpicklingError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else type(err).__name__
        raise ValueError(
            f"refusing to load {os.fspath(source)!r}: its weights file (pytorch_model.bin / *.bin) needs pickle "
            f"to load, and pickle can run code ({first.strip()}). textrl loads weights only from safetensors or "
            "torch.load(weights_only=True); nothing from the file was run. If you trust the file, convert it once "
            "elsewhere: model.save_pretrained(folder, safe_serialization=True)"
        ) from err
