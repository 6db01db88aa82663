"""LlamaIndex instrumentation: Self-Guard's events, and the handler that routes audit records.

`SelfGuardLLM` dispatches two custom events inside its own span for every generation:
`SelfGuardSteeringEvent` (mode, steering layers and λ, probe score, whether the gate fired)
and, when something was found, `SelfGuardLeakEvent` (the leak summary and redacted findings).

`SelfGuardAuditEventHandler("audit.jsonl").attach()` puts the handler on the root dispatcher
(with a small span handler that remembers each span's parent). The handler writes nothing
itself: a `SelfGuardLLM` generation finds it there and hands its sink to the engine, with the
LLM's span id, the parent span id and the root span id (the query, or the agent run) in the
record's context. That way a failing sink fails as the engine's `audit_failure` says, rather
than being swallowed the way the dispatcher swallows event-handler errors.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from pydantic import Field, PrivateAttr

from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.event_handlers import BaseEventHandler
from llama_index.core.instrumentation.events import BaseEvent
from llama_index.core.instrumentation.span import active_span_id
from llama_index.core.instrumentation.span_handlers import BaseSpanHandler

from ...audit import AuditSink, open_audit_sink
from ...results import GenerationResult


class SelfGuardSteeringEvent(BaseEvent):
    """How one generation was steered (also when it was not: plain mode, or the gate held)."""

    model_name: str
    mode: str
    steering_layers: list[int] | None = None
    steering_strength: float | None = None
    awareness: float | None = None
    gate_fired: bool | None = None

    @classmethod
    def class_name(cls) -> str:
        return "SelfGuardSteeringEvent"


class SelfGuardLeakEvent(BaseEvent):
    """Leak findings of one generation (redacted: never the raw value)."""

    summary: dict[str, Any]
    findings: list[dict[str, Any]]

    @classmethod
    def class_name(cls) -> str:
        return "SelfGuardLeakEvent"


def generation_events(result: GenerationResult, span_id: str | None) -> list[BaseEvent]:
    """The events of one generation, for the span it ran in."""
    steering = result.steering
    events: list[BaseEvent] = [SelfGuardSteeringEvent(
        span_id=span_id, model_name=result.model, mode=result.mode,
        steering_layers=None if steering is None else list(steering.layers),
        steering_strength=None if steering is None else steering.strength, awareness=result.awareness,
        gate_fired=result.gate_fired)]
    report = result.leakage
    if report is not None and report.findings:
        events.append(SelfGuardLeakEvent(span_id=span_id, summary=report.summary(),
                                         findings=[f.model_dump() for f in report.findings]))
    return events


class _SpanParents(BaseSpanHandler[Any]):
    """Remembers each open span's parent, so a record can name the span its LLM call ran under."""

    parents: dict[str, str | None] = Field(default_factory=dict)

    def new_span(self, id_: str, bound_args: Any, instance: Any | None = None, parent_span_id: str | None = None,
                 tags: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.parents[id_] = parent_span_id

    def prepare_to_exit_span(self, id_: str, bound_args: Any, instance: Any | None = None, result: Any = None,
                             **kwargs: Any) -> None:
        self.parents.pop(id_, None)

    def prepare_to_drop_span(self, id_: str, bound_args: Any, instance: Any | None = None,
                             err: BaseException | None = None, **kwargs: Any) -> None:
        self.parents.pop(id_, None)

    def root_of(self, span_id: str) -> str:
        seen = {span_id}
        while (parent := self.parents.get(span_id)) and parent not in seen:
            seen.add(parent)
            span_id = parent
        return span_id


class SelfGuardAuditEventHandler(BaseEventHandler):
    """`SelfGuardAuditEventHandler("audit.jsonl").attach()` (or ".db" for SQLite, or a sink)."""

    _sink: AuditSink = PrivateAttr()
    _spans: _SpanParents = PrivateAttr(default_factory=_SpanParents)
    _events: list[BaseEvent] = PrivateAttr(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    def __init__(self, target: str | os.PathLike | AuditSink, **data: Any) -> None:
        super().__init__(**data)
        self._sink = open_audit_sink(target)

    @classmethod
    def class_name(cls) -> str:
        return "SelfGuardAuditEventHandler"

    @property
    def sink(self) -> AuditSink:
        return self._sink

    @property
    def events(self) -> list[BaseEvent]:
        """The Self-Guard events seen, oldest first."""
        with self._lock:
            return list(self._events)

    def attach(self, dispatcher: Any = None) -> SelfGuardAuditEventHandler:
        """Add the handler (and its span-parent tracker) to `dispatcher` (default: the root one)."""
        dispatcher = dispatcher or get_dispatcher()
        dispatcher.add_event_handler(self)
        dispatcher.add_span_handler(self._spans)
        return self

    def handle(self, event: BaseEvent, **kwargs: Any) -> None:
        if isinstance(event, (SelfGuardSteeringEvent, SelfGuardLeakEvent)):
            with self._lock:
                self._events.append(event)

    def span_context(self, span_id: str | None) -> dict[str, Any]:
        """The audit context of a generation in span `span_id`."""
        if span_id is None:
            return {}
        return {"llama_index_span_id": span_id, "llama_index_parent_span_id": self._spans.parents.get(span_id),
                "llama_index_root_span_id": self._spans.root_of(span_id)}


def audit_handlers(dispatcher: Any) -> list[SelfGuardAuditEventHandler]:
    """The audit handlers reachable from `dispatcher` (its own, then its parents' while it propagates)."""
    found: list[SelfGuardAuditEventHandler] = []
    current = dispatcher
    while current is not None:
        found += [h for h in current.event_handlers if isinstance(h, SelfGuardAuditEventHandler)]
        current = current.parent if current.propagate and current.parent_name else None
    return list({id(h): h for h in found}.values())


def current_span_id() -> str | None:
    return active_span_id.get()
