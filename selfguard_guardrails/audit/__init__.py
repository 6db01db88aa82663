"""The audit log: exactly one record per generation, written by the engine to every sink.

Adapters (LangChain, LlamaIndex) do not write records of their own: they put their run or span
ids into `audit_context(...)`, and the engine copies the context into the record it writes.
Records hold findings (kind, span, redacted excerpt), never the raw values found.

This module is the one place that knows both file formats (JSONL and SQLite): it picks the sink
for a path and the reader for a file; the rest of the package is re-exported from here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..errors import AuditLogError, InvalidSettingError
from .context import audit_context, current_audit_context
from .jsonl import JsonlAuditSink, read_jsonl_records
from .log import AuditLog, AuditSink, FailureMode
from .records import AuditAttempt, AuditRecord, filter_records, prompt_hash, record_for, record_for_message
from .sqlite import SqliteAuditSink, read_sqlite_records

__all__ = [
    "AuditAttempt",
    "AuditLog",
    "AuditRecord",
    "AuditSink",
    "FailureMode",
    "audit_context",
    "audit_log",
    "current_audit_context",
    "filter_records",
    "open_audit_sink",
    "prompt_hash",
    "read_audit_log",
    "record_for",
    "record_for_message",
]


def open_audit_sink(target: str | Any) -> AuditSink:
    """A sink from a path (".db", ".sqlite", ".sqlite3": SQLite; anything else: JSONL) or a sink."""
    if isinstance(target, AuditSink):
        return target
    if not isinstance(target, (str, Path)):
        raise InvalidSettingError(f"An audit target is a file path or a sink, got {type(target).__name__}.")
    path = Path(target)
    if path.suffix.lower() in (".db", ".sqlite", ".sqlite3"):
        return SqliteAuditSink(path)
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


def read_audit_log(path: Any, **filters: Any) -> list[AuditRecord]:
    """Records of a JSONL or SQLite log (told apart by the file's first bytes), filtered by
    kind=, since=, until= (datetimes) and model=."""
    path = Path(path)
    if not path.is_file():
        raise AuditLogError(f"No audit log at {path}: check the path.")
    with path.open("rb") as handle:
        head = handle.read(16)
    if head == b"SQLite format 3\x00":
        return read_sqlite_records(path, **filters)
    return filter_records(read_jsonl_records(path), **filters)
