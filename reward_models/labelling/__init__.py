"""Human feedback: a web page where people rank pairs of responses, stored in SQLite, exported as preferences.

- :class:`LabelServer` serves the page (``textrl label``); :func:`collect_preferences` and
  :func:`export_preferences` turn the answers into the ``{"prompt", "chosen", "rejected"}`` pairs a
  reward model trains on (``textrl label export``).
- :class:`LabelStore` is the database; :func:`import_pairs` adds pairs to it idempotently.

Knows nothing of envs or agents: it reads pairs of texts and writes preference pairs.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from reward_models.labelling.agreement import Agreement, cohen_kappa, fleiss_kappa
from reward_models.labelling.export import (
    AnnotatorCounts,
    LabelSummary,
    collect_preferences,
    export_preferences,
    print_summary,
    tally,
)
from reward_models.labelling.pairs import LabelPair, read_label_pairs
from reward_models.labelling.records import (
    CHOICES,
    Answer,
    AnswerConflictError,
    Assignment,
    LabelStoreError,
    Progress,
    UnknownPairError,
)
from reward_models.labelling.serve import LabelServer
from reward_models.labelling.store import LabelStore


def import_pairs(db_path: str | os.PathLike[str], pairs: Iterable[LabelPair] | str | os.PathLike[str]) -> int:
    """Add pairs (objects, or a ``PAIRS.jsonl`` path) to the database; return how many were new.

    Importing the same pairs again does nothing; a pair whose id is stored with other texts is an
    error and nothing is imported.

    Raises:
        ValueError: a changed pair under a stored id, or malformed lines in the file (as file:line).
    """
    if isinstance(pairs, (str, os.PathLike)):
        pairs = read_label_pairs(pairs)
    return LabelStore(db_path).import_pairs(pairs)


__all__ = [
    "CHOICES",
    "Agreement",
    "AnnotatorCounts",
    "Answer",
    "AnswerConflictError",
    "Assignment",
    "LabelPair",
    "LabelServer",
    "LabelStore",
    "LabelStoreError",
    "LabelSummary",
    "Progress",
    "UnknownPairError",
    "cohen_kappa",
    "collect_preferences",
    "export_preferences",
    "fleiss_kappa",
    "import_pairs",
    "print_summary",
    "read_label_pairs",
    "tally",
]
