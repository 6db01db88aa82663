"""`SelfGuardAuditHandler`: LangChain callbacks that route each model run's audit record to a sink.

The handler writes nothing itself. When a `ChatSelfGuard` run has the handler among its
callbacks, the model hands the handler's sink to the engine for that call and puts the run's
ids, tags and metadata into the audit context, so the engine's one record per generation
carries them. Leak findings arrive as the custom event `selfguard_leak_findings`, which the
handler keeps (redacted) for inspection.
"""

from __future__ import annotations

import os
import threading
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler

from ...audit import AuditSink, open_audit_sink


class SelfGuardAuditHandler(BaseCallbackHandler):
    """`SelfGuardAuditHandler("audit.jsonl")` (or ".db" for SQLite, or a sink object)."""

    def __init__(self, target: str | os.PathLike | AuditSink) -> None:
        self.sink = open_audit_sink(target)
        self.findings: list[dict[str, Any]] = []  # the custom events seen, newest last
        self._lock = threading.Lock()

    def on_custom_event(self, name: str, data: Any, *, run_id: UUID, tags: list[str] | None = None,
                        metadata: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if name == "selfguard_leak_findings":
            with self._lock:
                self.findings.append({"run_id": str(run_id), **data})

    @staticmethod
    def sinks_of(run_manager: Any) -> list[AuditSink]:
        """The sinks of the audit handlers attached to this run (inherited ones included)."""
        if run_manager is None:
            return []
        handlers = [*getattr(run_manager, "handlers", []), *getattr(run_manager, "inheritable_handlers", [])]
        return list({id(h.sink): h.sink for h in handlers if isinstance(h, SelfGuardAuditHandler)}.values())


def run_context(run_manager: Any) -> dict[str, Any]:
    """LangChain's ids, tags and metadata of this run, for the audit record."""
    if run_manager is None:
        return {}
    parent = getattr(run_manager, "parent_run_id", None)
    return {"langchain_run_id": str(run_manager.run_id), "langchain_parent_run_id": None if parent is None
            else str(parent), "tags": list(getattr(run_manager, "tags", []) or []),
            "metadata": dict(getattr(run_manager, "metadata", {}) or {})}
