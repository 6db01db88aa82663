"""Holding a stream back until its text is checked, when the policy redacts or blocks.

The reasoning is held whole: it is checked (and redacted) when the answer starts or the stream
ends, and nothing of it is shown if it holds a blocked leak. The answer is shown as it grows,
except for a tail held so a span is complete (and caught) before any of it is shown; a
redacted span still growing holds the text back from its start.

How long the tail is depends on what can leak. A copy of a system prompt or private document
grows word by word, so with either in the context the last `window` characters are held.
Without them only patterns and canaries can match: a key or token has no whitespace in it, and
the spans that do (a phone number, an IBAN, a labelled passphrase, a connection string, a canary)
do not cross the end of a sentence or a line, so the tail runs from the last such end, and at
least `PATTERN_WINDOW` characters (or the longest canary) back; an open private-key block is
held from its first line. Streams without protected documents therefore still stream.
"""

from __future__ import annotations

import re

from ..runtime.reasoning import Channel
from .findings import Finding
from .policy import LeakPolicy
from .report import redact_range, redact_text
from .scanner import LeakContext, LeakScanner

DEFAULT_WINDOW = 256  # characters: longer than any key, token or connection string we detect
PATTERN_WINDOW = 64  # characters: longer than any pattern span with whitespace in it (phone, IBAN, passphrase)
_CLAUSE_END = re.compile(r"[.!?:]\s|\n")
RESCAN_EVERY = 48  # characters of new answer text between checks (each check reads the whole answer)


class StreamGuard:
    def __init__(self, scanner: LeakScanner, context: LeakContext, policy: LeakPolicy,
                 window: int = DEFAULT_WINDOW) -> None:
        self.scanner, self.context, self.policy, self.window = scanner, context, policy, window
        self.reasoning = ""
        self.answer = ""
        self.shown = 0  # characters of the answer already released
        self.reasoning_released = False
        self.blocked = False
        self._checked_length = 0

    def _stops(self, finding: Finding) -> bool:
        return self.policy.actions[finding.kind] in ("block", "regenerate")

    def _redacts(self, finding: Finding, where: str) -> bool:
        return self.policy.actions[finding.kind] == "redact" and self.policy.redact_in in ("both", where)

    def feed(self, channel: Channel, text: str) -> list[tuple[Channel, str]]:
        """Pieces that are safe to show now."""
        if self.blocked:
            return []
        if channel == "reasoning":
            self.reasoning += text
            return []
        pieces = self._release_reasoning()
        self.answer += text
        return pieces + self._release_answer(final=False)

    def finish(self) -> list[tuple[Channel, str]]:
        """The rest, once generation has ended."""
        if self.blocked:
            return []
        return self._release_reasoning() + self._release_answer(final=True)

    def _release_reasoning(self) -> list[tuple[Channel, str]]:
        if self.reasoning_released:
            return []
        self.reasoning_released = True
        if not self.reasoning:
            return []
        findings = self.scanner.scan_text(self.reasoning, "reasoning", self.context)
        if any(self._stops(f) for f in findings):
            self.blocked = True
            return []
        shown = redact_text(self.reasoning, [f for f in findings if self._redacts(f, "reasoning")], "reasoning")
        return [(Channel.REASONING, shown)]

    def _held_from(self) -> int:
        """Where the held tail of the answer starts (see the module's docstring)."""
        text = self.answer
        if self.context.system_prompt or self.context.private_context:
            return len(text) - self.window
        longest_canary = max((len(c) for c in self.context.canaries), default=0)
        held = len(text) - max(PATTERN_WINDOW, longest_canary)
        looked_from = max(0, held - 4 * DEFAULT_WINDOW)  # a "clause" with no end in sight is held this far
        clause = max((m.end() for m in _CLAUSE_END.finditer(text, looked_from)), default=looked_from)
        open_block = text.rfind("-----BEGIN")
        if open_block >= 0 and "-----END" not in text[open_block:]:
            held = min(held, open_block)
        return min(held, clause)

    def _release_answer(self, *, final: bool) -> list[tuple[Channel, str]]:
        if self.blocked:
            return []
        if not final and len(self.answer) - self._checked_length < RESCAN_EVERY:
            return []
        end = len(self.answer) if final else self._held_from()
        if end <= self.shown:
            return []
        self._checked_length = len(self.answer)
        findings = self.scanner.scan_text(self.answer, "answer", self.context)
        if any(self._stops(f) for f in findings):
            self.blocked = True
            return []
        redacted = [f for f in findings if self._redacts(f, "answer") and f.end > self.shown]
        growing = [f.start for f in redacted if f.start < end < f.end]
        while growing:  # a span still growing, maybe: hold from its start (and from any it overlaps)
            end = min(growing)
            growing = [f.start for f in redacted if f.start < end < f.end]
        if end <= self.shown:
            return []
        text = redact_range(self.answer, redacted, self.shown, end)
        self.shown = end
        return [(Channel.ANSWER, text)] if text else []
