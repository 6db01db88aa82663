"""Where records go: the sink protocol, and the fan-out that writes one record to every sink."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Literal, Protocol, runtime_checkable

from ..errors import AuditLogError, InvalidSettingError
from .records import AuditRecord

logger = logging.getLogger(__name__)

FailureMode = Literal["closed", "open"]


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
