"""Run every detector over a generation's reasoning and answer, and report typed findings.

A finding in the reasoning is `withheld` when the answer does not show the same item: the
leak a reader of the answer alone never sees. Raw values stay inside this module.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from ..method.prompting import DEFAULT_SAFETY_REMINDER, DEFAULT_SAFETY_SYSTEM, THINK_IN_TAGS_INSTRUCTION
from .findings import KINDS, Finding, Where, redact_value
from .matches import Match
from .overlap import find_canaries, find_copies, find_values, output_words, overlapping_keys, protected_text
from .pii import find_pii
from .secrets import find_secrets, find_source_passwords

OUR_PROMPTS = (DEFAULT_SAFETY_SYSTEM, DEFAULT_SAFETY_REMINDER, THINK_IN_TAGS_INSTRUCTION)
MIN_VALUE_LENGTH = 6  # shorter values found in a source (a short ID) match too much ordinary text


@lru_cache(maxsize=256)
def values_in(source: str) -> tuple[tuple[str, Match], ...]:
    """The secrets and PII a protected text holds, as (value as written, the detector's match)."""
    found = [*find_secrets(source), *find_source_passwords(source), *find_pii(source)]
    return tuple((source[m.start:m.end], m) for m in found if m.end - m.start >= MIN_VALUE_LENGTH)


@dataclass(frozen=True)
class LeakContext:
    """What the caller protects in one generation, beyond secrets and PII found by pattern."""

    system_prompt: str | None = None
    private_context: Sequence[str] = ()
    canaries: Sequence[str] = ()
    public: Sequence[str] = field(default=OUR_PROMPTS)  # texts whose copies are never a leak


class LeakScanner:
    """The detectors for the chosen kinds (all four by default)."""

    def __init__(self, kinds: Iterable[str] = KINDS) -> None:
        self.kinds = frozenset(kinds)
        unknown = self.kinds - set(KINDS)
        if unknown:
            from ..errors import InvalidSettingError

            raise InvalidSettingError(f"Unknown leak kind(s) {sorted(unknown)}: use {', '.join(KINDS)}.")

    def matches(self, text: str, context: LeakContext) -> list[Match]:
        """Raw hits in one text (internal: they carry the values)."""
        if not text:
            return []
        found: list[Match] = []
        if "secret" in self.kinds:
            found += find_secrets(text)
        if "pii" in self.kinds:
            secret_spans = [(m.start, m.end) for m in found]
            found += [m for m in find_pii(text)
                      if not any(m.start < end and start < m.end for start, end in secret_spans)]
        words = None
        if "system_prompt" in self.kinds and context.system_prompt:
            words = output_words(text)
            source = protected_text(context.system_prompt, tuple(context.public))
            found += find_copies(words, [source], "system_prompt", "system_prompt", "high")
            found += find_values(text, values_in(context.system_prompt), "system_prompt", MIN_VALUE_LENGTH)
        if "private_context" in self.kinds:
            found += find_canaries(text, context.canaries)
            if context.private_context:
                words = words if words is not None else output_words(text)
                sources = [protected_text(doc, tuple(context.public)) for doc in context.private_context]
                found += find_copies(words, sources, "private_context", "private_context", "high")
                found += find_values(text, [v for doc in context.private_context for v in values_in(doc)],
                                     "private_context", MIN_VALUE_LENGTH)
        return sorted(found, key=lambda m: (m.start, m.end))

    def scan(self, reasoning: str, answer: str, context: LeakContext | None = None) -> list[Finding]:
        """Findings in the reasoning and in the answer, the reasoning's marked `withheld` when the
        answer does not show the same item."""
        context = context or LeakContext()
        in_answer = self.matches(answer, context)
        in_reasoning = self.matches(reasoning, context)
        return [*(_finding(m, reasoning, "reasoning", not any(_same_item(m, o) for o in in_answer))
                  for m in in_reasoning),
                *(_finding(m, answer, "answer", withheld=False) for m in in_answer)]

    def scan_text(self, text: str, where: Where, context: LeakContext | None = None) -> list[Finding]:
        """Findings in one text, for a stream that checks its answer as it grows."""
        return [_finding(m, text, where, withheld=False) for m in self.matches(text, context or LeakContext())]


def _same_item(a: Match, b: Match) -> bool:
    if a.kind != b.kind or a.subtype != b.subtype:
        return False
    if a.subtype in ("system_prompt", "private_context"):
        return overlapping_keys(a.key, b.key)
    return a.key == b.key


def _finding(match: Match, text: str, where: Where, withheld: bool) -> Finding:
    return Finding(kind=match.kind, subtype=match.subtype, where=where, start=match.start, end=match.end,
                   severity=match.severity, excerpt=redact_value(text[match.start:match.end], keep=match.prefix),
                   withheld=withheld)
