"""A generation's leakage report, and typed placeholders for redacted spans."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..audit import AuditAttempt
from .findings import Finding, Where


class LeakageReport(BaseModel):
    """What the checks found in one generation and what the policy did about it."""

    findings: list[Finding] = Field(default_factory=list)
    action: Literal["none", "log", "redact", "block", "regenerate"] = "none"
    attempts: list[AuditAttempt] = Field(default_factory=list, description="one per try under `regenerate`")

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
    spans = sorted((f for f in findings if f.where == where and f.end > f.start), key=lambda f: (f.start, f.end))
    pieces, cursor = [], 0
    for finding in spans:
        start, end = finding.start, finding.end
        if end <= cursor:
            continue
        start = max(start, cursor)
        pieces += [text[cursor:start], placeholder(finding)]
        cursor = end
    pieces.append(text[cursor:])
    return "".join(pieces)
