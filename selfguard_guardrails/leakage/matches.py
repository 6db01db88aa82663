"""A detector's raw hit. It holds the matched value (to tell whether the answer repeats what the
reasoning leaked), so it never leaves the scanner: the scanner turns it into a `Finding`."""

from __future__ import annotations

from dataclasses import dataclass

from .findings import Kind, Severity


@dataclass(frozen=True)
class Match:
    kind: Kind
    subtype: str
    start: int
    end: int
    severity: Severity
    key: str  # what identifies the leaked item: the normalised value, or the copied source span
    prefix: int = 0  # characters of the value that are safe to show (a provider's key prefix)


def entropy_classes(value: str) -> int:
    """How many of lower, upper, digit and symbol characters a value mixes."""
    return sum((any(c.islower() for c in value), any(c.isupper() for c in value), any(c.isdigit() for c in value),
                any(not c.isalnum() for c in value)))


def looks_like_placeholder(value: str) -> bool:
    """Template text, masks and repeated characters that only look like a value."""
    lowered = value.lower()
    if len(set(lowered.strip("-_."))) <= 2:  # xxxxxxxx, ********, 00000000
        return True
    markers = ("<", ">", "${", "{{", "}}", "your", "example", "xxxx", "****", "...", "…", "placeholder",
               "changeme", "redacted", "dummy", "sample")
    return any(marker in lowered for marker in markers)
