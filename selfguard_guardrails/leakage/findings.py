"""What a leakage check reports: typed findings that never carry the raw value they found."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Kind = Literal["secret", "pii", "system_prompt", "private_context"]
KINDS: tuple[str, ...] = ("secret", "pii", "system_prompt", "private_context")
Where = Literal["reasoning", "answer", "tool_arguments"]  # tool arguments: any model's calls (middleware)
Severity = Literal["low", "medium", "high", "critical"]


class Finding(BaseModel):
    """One leaked span. `excerpt` is redacted at construction time (see `redact_value`), so a
    finding can be logged, printed or sent anywhere without spreading what it found."""

    model_config = ConfigDict(frozen=True)

    kind: Kind
    subtype: str
    where: Where
    start: int = Field(ge=0, description="character offset in the reasoning or answer text (or in one tool argument)")
    end: int = Field(ge=0)
    severity: Severity
    excerpt: str = Field(description="the span with its value masked, e.g. 'ghp_…[36 chars]'")
    withheld: bool = Field(default=False, description="in the reasoning but not in the answer")
    redacted: bool = Field(default=False, description="replaced by a placeholder in the text returned")


def redact_value(value: str, *, keep: int = 4) -> str:
    """A masked stand-in for a found value: a short non-secret prefix (a provider's key prefix
    tells a reader which key leaked) and the length, never the rest."""
    shown = value[:keep] if len(value) > 3 * keep else ""
    return f"{shown}…[{len(value)} chars]"
