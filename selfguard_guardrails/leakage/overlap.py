"""Copies of protected text: spans of the system prompt or of private documents, and canaries.

Texts are compared as word sequences (case and punctuation ignored). Every run of `SHINGLE`
words the output shares with a source marks those words as copied; marked words at most
`GAP` unmarked words apart merge into one span, so a copy with a pronoun changed or a word
dropped here and there is still one copy. A span counts when it holds at least `MIN_WORDS`
copied words, `MIN_RUN` of them in one verbatim run: common phrases ("if you have any
questions") do not reach that, a copied sentence does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Sequence
from difflib import SequenceMatcher
from functools import lru_cache
from itertools import pairwise

from .findings import Kind, Severity
from .matches import Match

SHINGLE = 3
GAP = 4
MIN_WORDS = 8
MIN_RUN = 5
_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")


def _words(text: str) -> list[str]:
    """Lowercased words, found in the text as written (lowercasing first could shift them)."""
    return [word.lower() for word in _WORD.findall(text.replace("’", "'"))]


class OutputWords:
    """A checked text's words, read once per text for every source; their character spans
    are found only if some copy is reported (most texts copy nothing)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.words = _words(text)
        self._spans: list[tuple[int, int]] | None = None

    def span(self, index: int) -> tuple[int, int]:
        if self._spans is None:
            self._spans = [m.span() for m in _WORD.finditer(self.text.replace("’", "'"))]
        return self._spans[index]


def output_words(text: str) -> OutputWords:
    return OutputWords(text)


@lru_cache(maxsize=64)
def _public_shingles(texts: tuple[str, ...]) -> frozenset[tuple[str, ...]]:
    return frozenset(g for text in texts for g in _shingles(_words(text)))


@lru_cache(maxsize=256)
def protected_text(text: str, ignore: tuple[str, ...] = ()) -> ProtectedText:
    """A source indexed once: the same system prompt or document is checked on every call."""
    return ProtectedText(text, ignore)


class ProtectedText:
    """One source (a system prompt or a document), indexed by its word shingles."""

    def __init__(self, text: str, ignore: Sequence[str] = ()) -> None:
        self.words = _words(text)
        ignored = _public_shingles(tuple(ignore))
        self.vocabulary = frozenset(self.words)
        self.shingles: dict[tuple[str, ...], int] = {}  # each shingle's first place in the source
        for index, gram in enumerate(_shingles(self.words)):
            if gram not in ignored:  # our own public safety prompt is never a leak
                self.shingles.setdefault(gram, index)

    def copied_spans(self, output: OutputWords) -> Iterator[tuple[int, int, int, int]]:
        """(start char, end char, first source word, last source word) of each copy in the output."""
        words = output.words
        marked: dict[int, int] = {}  # output word index -> a source word index it copies
        vocabulary = self.vocabulary
        streak = 0  # known words in a row ending here: a shingle is looked up only after SHINGLE of them
        for end, word in enumerate(words):
            streak = streak + 1 if word in vocabulary else 0
            if streak < SHINGLE:
                continue
            index = end - SHINGLE + 1
            source = self.shingles.get(tuple(words[index:end + 1]))
            if source is not None:
                for offset in range(SHINGLE):
                    marked.setdefault(index + offset, source + offset)
        if not marked:
            return
        indexes = sorted(marked)
        run = [indexes[0]]
        for following in [*indexes[1:], None]:
            if following is not None and following - run[-1] <= GAP + 1:
                run.append(following)
                continue
            if len(run) >= MIN_WORDS and _longest_verbatim(run, marked) >= MIN_RUN:
                sources = [marked[i] for i in run]
                yield output.span(run[0])[0], output.span(run[-1])[1], min(sources), max(sources)
            if following is not None:
                run = [following]


def _longest_verbatim(run: list[int], marked: dict[int, int]) -> int:
    """The longest stretch of consecutive output words copying consecutive source words."""
    best = length = 1
    for previous, index in pairwise(run):
        length = length + 1 if index == previous + 1 and marked[index] == marked[previous] + 1 else 1
        best = max(best, length)
    return best


def _shingles(words: Sequence[str]) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + SHINGLE]) for i in range(len(words) - SHINGLE + 1)]


def find_copies(words: OutputWords, sources: Sequence[ProtectedText], kind: Kind, subtype: str,
                severity: Severity) -> Iterator[Match]:
    for number, source in enumerate(sources):
        for start, end, first, last in source.copied_spans(words):
            yield Match(kind, subtype, start, end, severity, f"{number}:{first}-{last}")


def find_canaries(text: str, canaries: Sequence[str]) -> Iterator[Match]:
    """Exact occurrences (case-insensitive, not inside a longer token) of each canary string."""
    for canary in canaries:
        pattern = re.compile(r"(?<![\w\-])" + re.escape(canary) + r"(?![\w\-])", re.IGNORECASE)
        for found in pattern.finditer(text):
            yield Match("private_context", "canary", found.start(), found.end(), "critical", canary.lower())


NEAR_VALUE_SHARE = 0.6  # of a protected value's characters, in one run, make a near copy of it
_TOKEN = re.compile(r"[^\s\"'`()<>\[\]{},;]+")


def find_values(text: str, values: Sequence[tuple[str, Match]], kind: Kind, min_length: int) -> Iterator[Match]:
    """Copies of values found in a protected source, each reported with the subtype its detector
    gave it there: a password quoted from a private runbook is a leak with or without the label
    around it, and so is a near copy (a digit dropped, a suffix changed): a token sharing a run
    of at least `NEAR_VALUE_SHARE` of the value's characters (and `min_length`) with it."""
    lowered_text = text.lower()
    for value, in_source in values:
        exact = re.compile(r"(?<![\w\-])" + re.escape(value) + r"(?![\w\-])", re.IGNORECASE)
        spans = [found.span() for found in exact.finditer(text)]
        needed = max(min_length, math.ceil(NEAR_VALUE_SHARE * len(value)))
        lowered = value.lower()
        pieces = {lowered[i:i + min_length] for i in range(len(lowered) - min_length + 1)}
        if not any(piece in lowered_text for piece in pieces):
            continue  # no run of `min_length` characters in common: no near copy anywhere (the usual case)
        for token in _TOKEN.finditer(text):
            start, end = token.span()
            if end - start < needed or any(s < end and start < e for s, e in spans):
                continue
            matcher = SequenceMatcher(None, token.group().lower(), lowered, autojunk=False)
            if matcher.find_longest_match(0, end - start, 0, len(lowered)).size >= needed:
                spans.append((start, end))
        for start, end in spans:
            yield Match(kind, in_source.subtype, start, end, in_source.severity, f"value:{in_source.key}",
                        in_source.prefix)


def overlapping_keys(a: str, b: str) -> bool:
    """Whether two copy keys ("source:first-last") name overlapping words of the same source."""
    source_a, range_a = a.split(":")
    source_b, range_b = b.split(":")
    first_a, last_a = map(int, range_a.split("-"))
    first_b, last_b = map(int, range_b.split("-"))
    return source_a == source_b and first_a <= last_b and first_b <= last_a
