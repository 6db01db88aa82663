"""The engine's side of the audit log: one record per generation, to the engine's log and to the
sinks a call adds for itself (an adapter's handler, which receives the record with its run ids)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..audit import AuditLog, AuditSink, FailureMode, record_for
from ..errors import InvalidSettingError
from ..results import GenerationResult
from ..runtime.chat import Messages, normalize_messages


def per_row_audit(sinks: Sequence[Any], fields: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None,
                  rows: int) -> tuple[list[list[AuditSink]], list[Mapping[str, Any]]]:
    """Audit sinks and fields for each prompt: given once for all, or as one entry per prompt."""
    per_row_sinks = bool(sinks) and all(isinstance(s, (list, tuple)) for s in sinks)
    per_row_fields = fields is not None and not isinstance(fields, Mapping)
    for given, name in ((per_row_sinks and sinks, "audit_sinks"), (per_row_fields and fields, "audit_fields")):
        if given and len(given) != rows:
            raise InvalidSettingError(f"{name} has {len(given)} entries for {rows} prompts: give one per prompt, "
                                      "or a single value for all.")
    row_sinks = [list(s) for s in sinks] if per_row_sinks else [list(sinks)] * rows
    if fields is None or isinstance(fields, Mapping):  # not per_row_fields
        row_fields: list[Mapping[str, Any]] = [dict(fields or {})] * rows
    else:
        row_fields = list(fields)
    return row_sinks, row_fields


class AuditFanOut:
    """Writes each generation's record to the engine's log (if any) and to the call's own sinks."""

    def __init__(self, log: AuditLog | None, on_failure: FailureMode, model_fingerprint: str) -> None:
        self.log = log
        self.on_failure = on_failure
        self.model_fingerprint = model_fingerprint

    def write(self, conversations: Sequence[Messages], results: Sequence[GenerationResult], started: float,
              row_sinks: Sequence[Sequence[AuditSink]], row_fields: Sequence[Mapping[str, Any]]) -> None:
        """One record per generation and sink; the latency is the whole call's (a batch shares it)."""
        if self.log is None and not any(row_sinks):
            return
        latency = time.perf_counter() - started
        for messages, result, sinks, fields in zip(conversations, results, row_sinks, row_fields, strict=True):
            record = record_for(result, normalize_messages(messages), latency_seconds=latency,
                                model_fingerprint=self.model_fingerprint, fields=fields)
            call_log = AuditLog(list(sinks), on_failure=self.on_failure) if sinks else None
            for log in (self.log, call_log):
                if log is not None:
                    log.write(record)
