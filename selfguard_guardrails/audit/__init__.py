"""The audit log: exactly one record per generation, written by the engine to every sink.

Adapters (LangChain, LlamaIndex) do not write records of their own: they put their run or span
ids into `audit_context(...)`, and the engine copies the context into the record it writes.
Records hold findings (kind, span, redacted excerpt), never the raw values found.
"""

from __future__ import annotations

import hashlib
import json
import logging
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from .. import __version__
from ..errors import AuditLogError, InvalidSettingError
from ..leakage.findings import Finding

logger = logging.getLogger(__name__)

Action = Literal["none", "log", "redact", "block", "regenerate"]
FailureMode = Literal["closed", "open"]


class AuditAttempt(BaseModel):
    """One try of a generation under the `regenerate` policy (the first try is attempt 1)."""

    attempt: int
    strength: float | None = Field(description="λ the try was steered with (None: unsteered)")
    findings: int
    action: Action


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
    findings: list[Finding] = Field(default_factory=list)
    action: Action = "none"
    attempts: list[AuditAttempt] = Field(default_factory=list)
    latency_seconds: float = 0.0
    context: dict[str, Any] = Field(default_factory=dict, description="run/span ids and tags from adapters")
    library_version: str = __version__


def prompt_hash(messages: Any) -> str:
    """A stable digest of the conversation, so records of one prompt can be grouped."""
    text = json.dumps(messages, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


_context: ContextVar[dict[str, Any] | None] = ContextVar("selfguard_audit_context", default=None)


@contextmanager
def audit_context(**fields: Any) -> Iterator[dict[str, Any]]:
    """Add fields (run ids, tags, metadata) to every audit record written inside the block.

    Nested blocks merge, the inner value winning; the context follows threads started with
    `contextvars.copy_context()` and asyncio tasks, as any ContextVar does.
    """
    merged = {**(_context.get() or {}), **fields}
    token = _context.set(merged)
    try:
        yield merged
    finally:
        _context.reset(token)


def current_audit_context() -> dict[str, Any]:
    return dict(_context.get() or {})


@runtime_checkable
class AuditSink(Protocol):
    """Where records go. `write` must be safe to call from several threads at once."""

    def write(self, record: AuditRecord) -> None: ...

    def close(self) -> None: ...


class AuditLog:
    """Fan one record out to every sink. With `on_failure="closed"` (the default) a sink that
    fails makes the generation fail with `AuditLogError`, after the other sinks were written;
    with `"open"` it is logged as a warning and the generation goes on."""

    def __init__(self, sinks: Sequence[AuditSink], *, on_failure: FailureMode = "closed") -> None:
        if on_failure not in ("closed", "open"):
            raise InvalidSettingError(f"on_failure must be 'closed' or 'open', got {on_failure!r}.")
        for sink in sinks:
            if not isinstance(sink, AuditSink):
                raise InvalidSettingError(f"{sink!r} is not an audit sink: give objects with write(record) and "
                                          "close(), e.g. JsonlAuditSink('audit.jsonl').")
        self.sinks = list(sinks)
        self.on_failure = on_failure

    def write(self, record: AuditRecord) -> None:
        failures = []
        for sink in self.sinks:
            try:
                sink.write(record)
            except Exception as error:  # a sink may fail in any way; the policy decides what it means
                failures.append(f"{type(sink).__name__}: {error}")
        if not failures:
            return
        message = f"Audit record {record.id} was not written to every sink ({'; '.join(failures)})."
        if self.on_failure == "closed":
            raise AuditLogError(message + " The generation is withheld because the audit log fails closed; "
                                "fix the sink or build the engine with audit_failure='open'.")
        logger.warning("%s Continuing: the audit log fails open.", message)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


def open_audit_sink(target: str | Any) -> AuditSink:
    """A sink from a path (".db", ".sqlite", ".sqlite3": SQLite; anything else: JSONL) or a sink."""
    from pathlib import Path

    if isinstance(target, AuditSink):
        return target
    if not isinstance(target, (str, Path)):
        raise InvalidSettingError(f"An audit target is a file path or a sink, got {type(target).__name__}.")
    path = Path(target)
    if path.suffix.lower() in (".db", ".sqlite", ".sqlite3"):
        from .sqlite import SqliteAuditSink

        return SqliteAuditSink(path)
    from .jsonl import JsonlAuditSink

    return JsonlAuditSink(path)


def audit_log(target: Any, *, on_failure: FailureMode | str = "closed") -> AuditLog | None:
    """The engine's audit log from its `audit=` option: None (no log), an `AuditLog`, a sink, a
    path, or a list of sinks and paths."""
    if target is None:
        return None
    if isinstance(target, AuditLog):
        return target
    targets = list(target) if isinstance(target, (list, tuple)) else [target]
    return AuditLog([open_audit_sink(t) for t in targets], on_failure=on_failure)  # type: ignore[arg-type]


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
        findings=[] if report is None else list(report.findings), action="none" if report is None else report.action,
        attempts=[] if report is None else list(report.attempts), latency_seconds=round(latency_seconds, 6),
        context={**current_audit_context(), **(fields or {})})


def read_audit_log(path: Any, **filters: Any) -> list[AuditRecord]:
    """Records of a JSONL or SQLite log (told apart by the file's first bytes), filtered by
    kind=, since=, until= (datetimes) and model=."""
    from pathlib import Path

    path = Path(path)
    if not path.is_file():
        raise AuditLogError(f"No audit log at {path}: check the path.")
    with path.open("rb") as handle:
        head = handle.read(16)
    if head == b"SQLite format 3\x00":
        from .sqlite import read_sqlite_records

        return read_sqlite_records(path, **filters)
    from .jsonl import read_jsonl_records

    return filter_records(read_jsonl_records(path), **filters)


def filter_records(records: Sequence[AuditRecord], *, kind: str | None = None, since: datetime | None = None,
                   until: datetime | None = None, model: str | None = None) -> list[AuditRecord]:
    """The records with a finding of `kind`, from `since` (inclusive) to `until` (exclusive), of `model`."""
    return [r for r in records
            if (kind is None or any(f.kind == kind for f in r.findings))
            and (since is None or r.time >= since) and (until is None or r.time < until)
            and (model is None or r.model == model)]
