"""A generation's leakage report, and typed placeholders for redacted spans."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from .findings import Finding, Where

# What the policy did with a generation ("none": nothing found, or nothing to do).
ReportAction = Literal["none", "log", "redact", "block", "regenerate"]


class LeakAttempt(BaseModel):
    """One try of a generation under the `regenerate` policy (the first try is attempt 1).

    The audit log stores these as they are, so the field names are part of its record format.
    """

    attempt: int
    strength: float | None = Field(description="λ the try was steered with (None: unsteered)")
    findings: int
    action: ReportAction


class LeakageReport(BaseModel):
    """What the checks found in one generation and what the policy did about it."""

    findings: list[Finding] = Field(default_factory=list)
    action: ReportAction = "none"
    attempts: list[LeakAttempt] = Field(default_factory=list, description="one per try under `regenerate`")

    @property
    def leaked(self) -> bool:
        return bool(self.findings)

    def summary(self) -> dict[str, Any]:
        """Counts only (no spans, no excerpts): what adapters put into response metadata."""
        return {"findings": len(self.findings), "by_kind": dict(Counter(f.kind for f in self.findings)),
                "withheld": sum(1 for f in self.findings if f.withheld),
                "redacted": sum(1 for f in self.findings if f.redacted), "action": self.action,
                "attempts": max(1, len(self.attempts))}


def placeholder(finding: Finding) -> str:
    return f"[REDACTED:{finding.kind}/{finding.subtype}]"


def redact_text(text: str, findings: Sequence[Finding], where: Where) -> str:
    """`text` with every finding located in it replaced by its typed placeholder (overlaps merged)."""
    return redact_range(text, [f for f in findings if f.where == where])


def redact_range(text: str, findings: Sequence[Finding], start: int = 0, end: int | None = None) -> str:
    """`text[start:end]` with each span replaced by a placeholder; overlapping spans (a copied
    sentence and the e-mail it ends with) make one placeholder, the first's. A span that began
    before `start` was shown as its placeholder already: only its rest is dropped."""
    end = len(text) if end is None else end
    pieces, cursor = [], start
    for finding in sorted((f for f in findings if f.end > f.start), key=lambda f: (f.start, f.end)):
        if finding.end <= cursor:
            continue
        if finding.start >= end:
            break
        if finding.start < cursor:  # overlaps the placeholder just written (or one shown before)
            cursor = min(finding.end, end)
            continue
        pieces += [text[cursor:finding.start], placeholder(finding)]
        cursor = min(finding.end, end)
    pieces.append(text[cursor:end])
    return "".join(pieces)
