"""The deterministic training corpus of the embedded default model.

Two kinds of lines, both short enough for a tiny model to learn:

* movie-review-like sentences, from templates filled with words from the VADER lexicon shipped
  inside the ``vaderSentiment`` package, so the sentiment reward of ``textrl/Sentiment-v0`` and the
  words the model knows agree. Positive, negative, mixed and neutral sentences are balanced so
  that the corpus (and hence the untrained-by-RL policy) sits near a VADER compound of 0 while
  single sentences span strongly positive to strongly negative: the RL agents need room to move.
* arithmetic lines ``a+b=c`` for ``textrl/Arithmetic-v0``, drawn from a subset of all operand
  pairs so the model only partly learns addition and RL has something to improve.

Everything is pure Python and seeded: the same arguments give the same list on every platform.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from functools import lru_cache
from importlib import resources

__all__ = [
    "HELDOUT_SENTIMENT_PROMPTS",
    "SENTIMENT_PROMPTS",
    "arithmetic_answer",
    "arithmetic_prompts",
    "generate_corpus",
    "sentiment_vocabulary",
]

# Thresholds on the VADER mean valence (scale -4..4) for a word to count as clearly polar.
POSITIVE_THRESHOLD = 1.5
NEGATIVE_THRESHOLD = -1.5
DEFAULT_MAX_OPERAND = 49


def _words(text: str) -> tuple[str, ...]:
    """Whitespace-separated words, so the word lists below stay compact and readable."""
    return tuple(text.split())


def _phrases(text: str) -> tuple[str, ...]:
    """``|``-separated phrases with whitespace normalised, for compact multi-word lists."""
    return tuple(" ".join(p.split()) for p in text.split("|"))


# Review-friendly adjectives. Only those the lexicon rates beyond the thresholds are used (see
# `sentiment_vocabulary`), so the lexicon stays the single source of truth for polarity; the lists
# only keep out words that would read oddly in a review ("rejoice", "killer", ...).
_POSITIVE_ADJECTIVES = _words("""
    admirable adorable amazing awesome beautiful brilliant charming cheerful clever creative delightful
    elegant energetic enjoyable entertaining excellent exciting fabulous fantastic fascinating fun funny
    gorgeous graceful great good heartwarming hilarious hopeful impressive inspired inspiring intelligent
    interesting joyful lively lovable lovely magnificent marvelous nice outstanding passionate perfect
    playful pleasant pleasing powerful remarkable romantic satisfying sincere smart splendid stunning
    superb sweet talented terrific thoughtful thrilling triumphant vibrant wonderful worthy
""")
_NEGATIVE_ADJECTIVES = _words("""
    agonizing annoying awful bad bitter careless crappy cruel depressing disappointing disastrous
    disgusting dishonest dismal distressing dreadful dull dumb embarrassing fake frustrating grim gross
    harsh hateful hopeless horrible idiotic inferior insulting irritating lame lousy messy miserable
    nasty obnoxious offensive painful pathetic pitiful poor ridiculous rotten rude sad shameful
    sickening stupid terrible tragic ugly unhappy unpleasant upsetting useless vile weak worthless wrong
""")
_POSITIVE_NOUNS = _words("masterpiece treat delight joy pleasure triumph success")
_NEGATIVE_NOUNS = _words("disaster mess failure waste disappointment catastrophe")
_POSITIVE_VERBS = _words("loved enjoyed adored liked admired appreciated")
_NEGATIVE_VERBS = _words("hated despised disliked regretted")

# Neutral material: none of these words is in the VADER lexicon (a test checks it), so a neutral
# sentence scores exactly 0 and the openers themselves carry no sentiment.
_BOOSTERS = _words("very really extremely quite so incredibly totally absolutely utterly")
_WORKS = _words("movie film picture story sequel documentary")
_GENRES = ("drama", "western", "musical", "documentary", "mystery", "fantasy", "family film", "period piece")
# Second-clause subjects; the plural ones (ending in "s") take "were", so the grammar agrees.
_SUBJECTS = _phrases("""
    the acting | the plot | the ending | the script | the dialogue | the cast | the music | the soundtrack
    | the cinematography | the pacing | the sequel | the editing | the final scene | the opening scene
    | the costumes | the visual effects | the characters | the writers | the lead actor | the screenplay
    | the direction
""")
_WITH_WHOM = _phrases(
    "with my family | with my sister | at the cinema | on a sunday afternoon | last weekend"
)
_TOPICS = _phrases("""
    a family in a small town | two brothers and their father | a teacher and her students
    | a pilot in the desert | an old man and his dog | a detective in paris | a farmer in the mountains
    | a journalist in new york | a painter and his neighbors | three sisters in a big city
    | a girl who wants to sing
""")
_NEUTRAL_ADJP = _phrases("""
    about what i expected | mostly in french | mostly in spanish | in black and white
    | almost three hours long | about two hours long | shot in the desert | filmed in new york
    | set in a small village by the sea | set in the mountains | based on an old book | similar to the book
    | different from the trailer | about the same as the first one | typical for a western
    | typical for a musical | made by a first time director
""")

# Openers the corpus lines start with, grouped by what grammatically follows them. Held-out openers
# reuse the vocabulary (mostly as second-clause subjects) but never start a training line.
_ADJP_OPENERS = (
    "the movie was",
    "the film was",
    "the acting was",
    "this story is",
    "the plot was",
    "the ending was",
    "the script was",
    "the dialogue was",
    "the cast was",
    "the music was",
    "the direction was",
    "the first half was",
    "this film is",
    "this movie is",
    "the characters were",
    "the story felt",
    "the whole thing felt",
    "overall the movie was",
    "the lead actor was",
    "the screenplay was",
    "the main character was",
)
_SUBJECT_OPENERS = (
    "i thought the film",
    "i thought the movie",
    "overall the plot",
    "i thought the acting",
    "in the end the story",
    "my sister said the movie",
    "i felt the ending",
    "for me the cast",
)
_NP_OPENERS = (
    "the director made a",
    "this is a",
    "it was a",
    "what a",
    "the studio released a",
    "i just watched a",
)
_VERB_OPENERS = ("i really", "we all", "my wife and i", "as a kid i", "i")

SENTIMENT_PROMPTS: tuple[str, ...] = _ADJP_OPENERS + _SUBJECT_OPENERS + _NP_OPENERS + _VERB_OPENERS
"""Review openers the default model was trained on; the prompts of ``textrl/Sentiment-v0``."""

HELDOUT_SENTIMENT_PROMPTS: tuple[str, ...] = (
    "the soundtrack was",
    "the cinematography was",
    "the sequel was",
    "the pacing was",
    "the visual effects were",
    "the final scene was",
    "the costumes were",
    "the opening scene was",
    "the editing was",
    "this documentary is",
    "i thought the script",
    "for me the dialogue",
    "my sister said the film",
    "the writers made a",
    "last weekend i watched a",
    "my parents and i",
)
"""Openers that never start a training line, for evaluating generalisation of a tuned policy."""


@lru_cache(maxsize=1)
def _vader_lexicon() -> dict[str, float]:
    """Word -> mean valence, read from the lexicon file inside the ``vaderSentiment`` package."""
    text = resources.files("vaderSentiment").joinpath("vader_lexicon.txt").read_text(encoding="utf-8")
    lexicon: dict[str, float] = {}
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) >= 2:
            lexicon[fields[0]] = float(fields[1])
    return lexicon


@lru_cache(maxsize=1)
def sentiment_vocabulary() -> dict[str, tuple[str, ...]]:
    """The polar words the corpus uses, filtered through the VADER lexicon.

    Returns:
        A dict with keys ``positive_adjectives``, ``negative_adjectives``, ``positive_nouns``,
        ``negative_nouns``, ``positive_verbs`` and ``negative_verbs``; each value holds only the words
        whose lexicon valence is >= 1.5 (positive) or <= -1.5 (negative), in a fixed order.
    """
    lexicon = _vader_lexicon()

    def keep(words: Sequence[str], positive: bool) -> tuple[str, ...]:
        if positive:
            return tuple(w for w in words if lexicon.get(w, 0.0) >= POSITIVE_THRESHOLD)
        return tuple(w for w in words if lexicon.get(w, 0.0) <= NEGATIVE_THRESHOLD)

    return {
        "positive_adjectives": keep(_POSITIVE_ADJECTIVES, True),
        "negative_adjectives": keep(_NEGATIVE_ADJECTIVES, False),
        "positive_nouns": keep(_POSITIVE_NOUNS, True),
        "negative_nouns": keep(_NEGATIVE_NOUNS, False),
        "positive_verbs": keep(_POSITIVE_VERBS, True),
        "negative_verbs": keep(_NEGATIVE_VERBS, False),
    }


def _polar(rng: random.Random, kind: str, positive: bool) -> str:
    """A random polar word of a part of speech (``adjectives``, ``nouns`` or ``verbs``)."""
    return rng.choice(sentiment_vocabulary()[("positive_" if positive else "negative_") + kind])


def _subject_is(rng: random.Random) -> str:
    """A second-clause subject with its verb, e.g. ``the costumes were``."""
    subject = rng.choice(_SUBJECTS)
    return f"{subject} {'were' if subject.endswith('s') else 'was'}"


def _adjective_phrase(rng: random.Random, positive: bool) -> str:
    """An adjective phrase of one polarity, e.g. ``really clever and lively``."""
    first = _polar(rng, "adjectives", positive)
    if rng.random() < 0.35:
        first = f"{rng.choice(_BOOSTERS)} {first}"
    roll = rng.random()
    if roll < 0.3:
        return f"{first} and {_polar(rng, 'adjectives', positive)}"
    if roll < 0.45:
        return f"{first} from start to finish"
    if roll < 0.55:
        return f"{first} for a {rng.choice(_GENRES)}"
    if roll < 0.7:
        return f"{first} and {_subject_is(rng)} {_polar(rng, 'adjectives', positive)}"
    if roll < 0.78:
        # VADER dampens and flips a negated word: "not awful" is mildly positive.
        return f"not {_polar(rng, 'adjectives', not positive)} at all"
    return first


def _continuation(rng: random.Random, slot: str, sentiment: str) -> str:
    """The text after an opener whose grammatical slot is ``slot``, of the given sentiment.

    ``sentiment`` is ``positive``, ``negative``, ``neutral``, ``mixed+`` (a negative clause, then
    "but" a positive one; VADER weighs the clause after "but" more) or ``mixed-``.
    """
    positive = sentiment in ("positive", "mixed+")
    if slot == "np":
        if sentiment == "neutral":
            return f"{rng.choice(_WORKS)} about {rng.choice(_TOPICS)}"
        if rng.random() < 0.3:
            return _polar(rng, "nouns", positive)
        adjective = _polar(rng, "adjectives", positive)
        if rng.random() < 0.3:
            adjective = f"{rng.choice(_BOOSTERS)} {adjective}"
        return f"{adjective} {rng.choice(_WORKS)}"
    if slot == "verb":
        if sentiment == "neutral":
            return f"watched it {rng.choice(_WITH_WHOM)}"
        target = rng.choice(["this movie", "the film", "every minute of it", "the whole story"])
        return f"{_polar(rng, 'verbs', positive)} {target}"
    prefix = f"{rng.choice(['was', 'felt', 'seemed'])} " if slot == "subject" else ""
    if sentiment == "neutral":
        return prefix + rng.choice(_NEUTRAL_ADJP)
    if sentiment.startswith("mixed"):
        before = _polar(rng, "adjectives", not positive)
        return f"{prefix}{before} but {_subject_is(rng)} {_polar(rng, 'adjectives', positive)}"
    return prefix + _adjective_phrase(rng, positive)


_SLOTS = (
    [(o, "adjp") for o in _ADJP_OPENERS]
    + [(o, "subject") for o in _SUBJECT_OPENERS]
    + [(o, "np") for o in _NP_OPENERS]
    + [(o, "verb") for o in _VERB_OPENERS]
)
# Symmetric weights keep the corpus mean near 0; the neutral share gives the policy a mode that is
# neither good nor bad, like real reviews.
_SENTIMENTS = ("positive", "negative", "neutral", "mixed+", "mixed-")
_SENTIMENT_WEIGHTS = (0.3, 0.3, 0.2, 0.1, 0.1)


def review_sentence(rng: random.Random) -> str:
    """One review line: a training opener, its continuation and a final period.

    Args:
        rng: The random source; the caller seeds it.

    Returns:
        A lowercase sentence such as ``"the acting was really clever and lively."``.
    """
    opener, slot = rng.choice(_SLOTS)
    sentiment = rng.choices(_SENTIMENTS, weights=_SENTIMENT_WEIGHTS)[0]
    text = f"{opener} {_continuation(rng, slot, sentiment)}"
    return f"{text}{rng.choice(['.', '.', '.', '!'])}" if sentiment != "neutral" else f"{text}."


def _operands(rng: random.Random, max_operand: int) -> tuple[int, int]:
    return rng.randint(0, max_operand), rng.randint(0, max_operand)


def generate_corpus(n_reviews: int = 8000, n_arithmetic: int = 2000, seed: int = 0) -> list[str]:
    """The default model's training corpus, shuffled.

    Args:
        n_reviews: Number of review sentences.
        n_arithmetic: Number of ``a+b=c`` lines, operands in ``0..49``. They are drawn with
            replacement, so only part of the 2500 possible pairs is seen: the model learns the
            format fully and the sums partly.
        seed: Seed of the ``random.Random`` that drives every choice.

    Returns:
        ``n_reviews + n_arithmetic`` lines without trailing newlines, in a seeded random order.
    """
    if n_reviews < 0 or n_arithmetic < 0:
        raise ValueError(
            f"generate_corpus needs non-negative sizes, got n_reviews={n_reviews}, n_arithmetic={n_arithmetic}."
        )
    rng = random.Random(seed)
    lines = [review_sentence(rng) for _ in range(n_reviews)]
    for _ in range(n_arithmetic):
        a, b = _operands(rng, DEFAULT_MAX_OPERAND)
        lines.append(f"{a}+{b}={a + b}")
    rng.shuffle(lines)
    return lines


def arithmetic_prompts(n: int, seed: int = 0, max_operand: int = DEFAULT_MAX_OPERAND) -> list[str]:
    """Random addition prompts like ``"12+7="``.

    Args:
        n: Number of prompts.
        seed: Seed of the ``random.Random`` that draws the operands.
        max_operand: Largest operand (inclusive); the default matches the training corpus.

    Returns:
        ``n`` prompts, operands drawn uniformly with replacement from ``0..max_operand``.
    """
    if n < 0 or max_operand < 0:
        raise ValueError(
            f"arithmetic_prompts needs n >= 0 and max_operand >= 0, got n={n}, max_operand={max_operand}."
        )
    rng = random.Random(seed)
    return [f"{a}+{b}=" for a, b in (_operands(rng, max_operand) for _ in range(n))]


_ARITHMETIC_PROMPT = re.compile(r"\s*(\d+)\s*\+\s*(\d+)\s*=\s*")


def arithmetic_answer(prompt: str) -> str:
    """The exact answer to an addition prompt.

    Args:
        prompt: A prompt of the form ``"a+b="`` with non-negative integers, e.g. ``"12+7="``.

    Returns:
        The sum as a decimal string, e.g. ``"19"``.

    Raises:
        ValueError: If ``prompt`` is not of the form ``"a+b="``.
    """
    match = _ARITHMETIC_PROMPT.fullmatch(prompt)
    if match is None:
        raise ValueError(
            f"arithmetic_answer expects a prompt of the form 'a+b=' such as '12+7=', got {prompt!r}."
        )
    return str(int(match.group(1)) + int(match.group(2)))
