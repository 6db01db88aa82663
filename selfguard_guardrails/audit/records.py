"""The audit record: what one generation did, kept without the prompt or any value a check found."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from pydantic import BaseModel, Field

from .. import __version__
from ..leakage.findings import Finding
from ..leakage.report import LeakageReport, LeakAttempt, ReportAction
from .context import current_audit_context

# The audit log's name for a regenerate try; the leak checks own the type.
AuditAttempt = LeakAttempt


class AuditRecord(BaseModel):
    """What happened in one generation, without the prompt or any value a check found."""

    id: str = Field(default_factory=lambda: uuid.uuid4().hex)
    time: datetime = Field(default_factory=lambda: datetime.now(timezone.utc))
    model: str
    model_fingerprint: str = ""
    mode: str
    steering_layers: list[int] | None = None
    steering_strength: float | None = None
    awareness: float | None = Field(default=None, description="probe score minus threshold (None: no gate)")
    gate_fired: bool | None = None
    prompt_hash: str = Field(description="SHA-256 of the conversation as JSON: links calls, reveals nothing")
    input_tokens: int = 0
    output_tokens: int = 0
    reasoning_tokens: int = 0
    finish_reason: str | None = Field(default=None, description="how the generation ended: eos, length, stop, or "
                                                                "abandoned (a stream its reader left)")
    findings: list[Finding] = Field(default_factory=list)
    action: ReportAction = "none"
    attempts: list[AuditAttempt] = Field(default_factory=list)
    latency_seconds: float = 0.0
    context: dict[str, Any] = Field(default_factory=dict, description="run/span ids and tags from adapters")
    library_version: str = __version__


def prompt_hash(messages: Any) -> str:
    """A stable digest of the conversation, so records of one prompt can be grouped."""
    text = json.dumps(messages, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def record_for(result: Any, messages: Any, *, latency_seconds: float, model_fingerprint: str = "",
               fields: Mapping[str, Any] | None = None) -> AuditRecord:
    """The audit record of one engine result (a `GenerationResult`), with the current context and
    the call's own `fields` (an adapter's run ids) on top."""
    steering, report, awareness = result.steering, result.leakage, result.awareness
    return AuditRecord(
        model=result.model, model_fingerprint=model_fingerprint, mode=result.mode,
        steering_layers=None if steering is None else list(steering.layers),
        steering_strength=None if steering is None else steering.strength,
        awareness=awareness, gate_fired=result.gate_fired,
        prompt_hash=prompt_hash(messages), input_tokens=result.usage.input_tokens,
        output_tokens=result.usage.output_tokens, reasoning_tokens=result.usage.reasoning_tokens,
        finish_reason=result.finish_reason,
        findings=[] if report is None else list(report.findings), action="none" if report is None else report.action,
        attempts=[] if report is None else list(report.attempts), latency_seconds=round(latency_seconds, 6),
        context={**current_audit_context(), **(fields or {})})


def record_for_message(*, model: str, mode: str, messages: Any, report: LeakageReport, latency_seconds: float,
                       input_tokens: int = 0, output_tokens: int = 0, reasoning_tokens: int = 0,
                       awareness: float | None = None, gate_fired: bool | None = None,
                       fields: Mapping[str, Any] | None = None) -> AuditRecord:
    """The audit record of one call to a model the library does not host (a framework guard's
    call): the same record as the engine's, with what the framework reports in place of the
    engine's result."""
    return AuditRecord(model=model, mode=mode, awareness=awareness, gate_fired=gate_fired,
                       prompt_hash=prompt_hash(messages), input_tokens=input_tokens, output_tokens=output_tokens,
                       reasoning_tokens=reasoning_tokens, findings=list(report.findings), action=report.action,
                       attempts=list(report.attempts), latency_seconds=round(latency_seconds, 6),
                       context={**current_audit_context(), **(fields or {})})


def filter_records(records: Sequence[AuditRecord], *, kind: str | None = None, since: datetime | None = None,
                   until: datetime | None = None, model: str | None = None) -> list[AuditRecord]:
    """The records with a finding of `kind`, from `since` (inclusive) to `until` (exclusive), of `model`.

    The SQLite reader filters in SQL; this is the same filter for logs read whole (JSONL).
    """
    return [r for r in records
            if (kind is None or any(f.kind == kind for f in r.findings))
            and (since is None or r.time >= since) and (until is None or r.time < until)
            and (model is None or r.model == model)]
