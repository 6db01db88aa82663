"""Holding a stream back until its text is checked, when the policy redacts or blocks.

The reasoning is held whole: it is checked (and redacted) when the answer starts or the stream
ends, and nothing of it is shown if it holds a blocked leak. The answer is shown as it grows,
except for its last `window` characters, which are held so a span is complete (and caught)
before any of it is shown; a redacted span still growing holds the text back from its start.
"""

from __future__ import annotations

from ..reasoning import Channel
from .findings import Finding
from .policy import LeakPolicy
from .report import placeholder, redact_text
from .scanner import LeakContext, LeakScanner

DEFAULT_WINDOW = 256  # characters: longer than any key, token or connection string we detect
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
        return [("reasoning", shown)]

    def _release_answer(self, *, final: bool) -> list[tuple[Channel, str]]:
        if self.blocked:
            return []
        end = len(self.answer) if final else len(self.answer) - self.window
        if end <= self.shown or (not final and len(self.answer) - self._checked_length < RESCAN_EVERY):
            return []
        self._checked_length = len(self.answer)
        findings = self.scanner.scan_text(self.answer, "answer", self.context)
        if any(self._stops(f) for f in findings):
            self.blocked = True
            return []
        redacted = sorted((f for f in findings if self._redacts(f, "answer") and f.end > self.shown),
                          key=lambda f: f.start)
        for finding in redacted:
            if finding.start < end < finding.end:  # still growing, maybe: hold from its start
                end = finding.start
        if end <= self.shown:
            return []
        pieces, cursor = [], self.shown
        for finding in redacted:
            if finding.end > end:
                break
            start = max(finding.start, cursor)
            pieces += [self.answer[cursor:start], placeholder(finding)]
            cursor = finding.end
        pieces.append(self.answer[cursor:end])
        self.shown = end
        text = "".join(pieces)
        return [("answer", text)] if text else []
