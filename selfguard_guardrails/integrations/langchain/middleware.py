"""`SelfGuardMiddleware`: the library's leak checks, policies and audit log as LangChain v1 agent
middleware, for an agent on any chat model.

    from langchain.agents import create_agent
    from selfguard_guardrails.integrations.langchain import SelfGuardMiddleware

    agent = create_agent(model=ANY_CHAT_MODEL, tools=[...], middleware=[SelfGuardMiddleware()])

Every model call of the agent goes through `wrap_model_call`: the reply's reasoning (wherever
the provider puts it, see `message_parts`), text and tool-call arguments are checked against
secrets, PII, the request's system message, canaries and private context (results of tools
named private, documents in the agent state, documents given), the policy is applied, and one
audit record is written per call. With `route="guarded"` the engine's awareness probe reads
the user's requests first, and a request it flags is answered by the local steered model, or
refused.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langgraph.config import get_config
from langgraph.constants import TAG_NOSTREAM

from langchain.agents.middleware import AgentMiddleware, ModelRequest, ModelResponse

from ...audit import AuditLog, AuditSink, FailureMode, audit_log, record_for_message
from ...engine.selfguard import SelfGuard
from ...errors import InvalidSettingError
from ...leakage.findings import KINDS
from ...leakage.message_check import CheckedOutput, OutputGuard, StripReasoning
from ...leakage.policy import LeakPolicy
from ...leakage.report import LeakageReport, LeakAttempt
from ...leakage.scanner import LeakContext, LeakScanner
from ..engine_slot import EngineSlot
from .audit import SelfGuardAuditHandler
from .message_parts import read_message, rewrite_message

Route = Literal["guarded"]
OnFlagged = Literal["steer", "block"]
FLAGGED_REFUSAL = "I'm sorry, but I can't help with that."
DEFAULT_STATE_KEY = "private_context"


def refusal_message(text: str, **metadata: Any) -> AIMessage:
    """A reply that says no: the text for readers of `.text`, and a standard `refusal` block for
    `ModelRefusalMiddleware`, `ModelFallbackMiddleware` and anything reading `content_blocks`."""
    return AIMessage(content=[{"type": "text", "text": text}, {"type": "refusal", "refusal": text}],
                     response_metadata={"model_provider": "selfguard", **metadata})


def state_schema_for(key: str) -> type:
    """The agent state this middleware adds: the list of private documents under `key`."""
    return TypedDict("SelfGuardState", {key: NotRequired[list[Any]]})  # type: ignore[operator]


def _document_text(document: Any) -> str:
    """A private document's text: a string, or a LangChain/LlamaIndex document object."""
    for attribute in ("page_content", "text"):
        if isinstance(getattr(document, attribute, None), str):
            return getattr(document, attribute)
    if isinstance(document, str):
        return document
    raise InvalidSettingError(f"A private document in the agent state is a {type(document).__name__}: put strings or "
                              "Document objects (with page_content or text) there.")


def _model_name(model: Any) -> str:
    for attribute in ("model_name", "model", "model_id"):
        value = getattr(model, attribute, None)
        if isinstance(value, str) and value:
            return value
    return type(model).__name__


def _usage(message: AIMessage) -> dict[str, int]:
    usage: Mapping[str, Any] = message.usage_metadata or {}
    details: Mapping[str, Any] = usage.get("output_token_details") or {}
    return {"input_tokens": int(usage.get("input_tokens", 0)), "output_tokens": int(usage.get("output_tokens", 0)),
            "reasoning_tokens": int(details.get("reasoning", 0) or 0)}


def _run_fields() -> dict[str, Any]:
    """The graph's thread, run and task ids for the audit record (empty outside a graph)."""
    try:
        config = get_config()
    except RuntimeError:
        return {}
    configurable = config.get("configurable") or {}
    callbacks = config.get("callbacks")
    node_run = getattr(callbacks, "parent_run_id", None)
    fields = {"thread_id": configurable.get("thread_id"), "langchain_run_id": config.get("run_id") or node_run,
              "langgraph_checkpoint_ns": configurable.get("checkpoint_ns"),
              "tags": list(config.get("tags") or [])}
    return {name: str(value) if name != "tags" else value for name, value in fields.items() if value}


def _audit_handler_sinks() -> list[AuditSink]:
    """Sinks of `SelfGuardAuditHandler`s the caller attached to the agent's run."""
    try:
        return SelfGuardAuditHandler.sinks_of(get_config().get("callbacks"))
    except RuntimeError:
        return []


@dataclass
class _Call:
    """One model call as the middleware sees it: what it protects, and how it was routed."""

    request: ModelRequest
    context: LeakContext
    started: float
    mode: str = "external"
    awareness: float | None = None
    gate_fired: bool | None = None
    attempts: list[LeakAttempt] = field(default_factory=list)


class SelfGuardMiddleware(AgentMiddleware):
    """Leak checks, policies and audit for every model call of a LangChain v1 agent, on any model.

    Every argument is optional; `SelfGuardMiddleware()` redacts secrets, PII, copies of the
    system message and copies of private context in the reasoning, the text and the tool-call
    arguments of every reply, as the engine does.

    - `leak_policy`: as the engine's (`LeakPolicy`, an action name, or a mapping of kinds to
      `log` / `redact` / `block` / `regenerate` plus options); `regenerate` asks the model again.
    - `strip_reasoning`: "never", "on_leak" (a trace with a finding is dropped whole) or
      "always" (no trace reaches the agent state or the caller).
    - `canaries`, `private_context` (documents given directly), `private_tools` (names of tools
      whose results are private), `private_state_key` (the agent-state key holding private
      documents, "private_context" by default).
    - `audit`: a path (JSONL, or SQLite for .db), a sink, a list of them, or an `AuditLog`;
      `audit_failure` "closed" (a failing sink fails the call) or "open".
    - `leak_checks`: the kinds to check (all four by default).
    - `route="guarded"`: the awareness probe of `engine` (or of the embedded model, loaded on
      first use; `engine_options` go to `SelfGuard.from_pretrained`) reads the user's requests;
      a flagged one is answered by that engine in mode self-guard (`on_flagged="steer"`) or
      refused (`on_flagged="block"`). `guarded_max_tokens` bounds the steered answer.
    """

    def __init__(self, *, leak_policy: LeakPolicy | Mapping[str, Any] | str | None = None,
                 strip_reasoning: StripReasoning = "never", canaries: Sequence[str] = (),
                 private_context: Sequence[str] = (), private_tools: Sequence[str] = (),
                 private_state_key: str = DEFAULT_STATE_KEY, audit: Any = None,
                 audit_failure: FailureMode = "closed", leak_checks: Sequence[str] = KINDS,
                 route: Route | None = None, on_flagged: OnFlagged = "steer", engine: SelfGuard | None = None,
                 engine_options: Mapping[str, Any] | None = None, guarded_max_tokens: int = 256) -> None:
        super().__init__()
        for name, values in (("canaries", canaries), ("private_context", private_context),
                             ("private_tools", private_tools)):
            if isinstance(values, str) or not all(isinstance(v, str) for v in values):
                raise InvalidSettingError(f"{name} must be a list of strings, got {values!r:.80}.")
        if route not in (None, "guarded"):
            raise InvalidSettingError(f"route must be None or 'guarded', got {route!r}.")
        if on_flagged not in ("steer", "block"):
            raise InvalidSettingError(f"on_flagged must be 'steer' or 'block', got {on_flagged!r}.")
        if route is None and (engine is not None or engine_options or on_flagged != "steer"):
            raise InvalidSettingError("engine, engine_options and on_flagged are used only with route='guarded': "
                                      "add route='guarded', or leave them out.")
        if not isinstance(guarded_max_tokens, int) or guarded_max_tokens < 1:
            raise InvalidSettingError(f"guarded_max_tokens must be a whole number >= 1, got {guarded_max_tokens!r}.")
        self.guard = OutputGuard(LeakPolicy.parse(leak_policy), LeakScanner(leak_checks), strip_reasoning)
        self.canaries, self.private_context = tuple(canaries), tuple(private_context)
        self.private_tools = frozenset(private_tools)
        self.private_state_key = private_state_key
        self.state_schema = state_schema_for(private_state_key)
        self.audit: AuditLog | None = audit_log(audit, on_failure=audit_failure)
        self.audit_failure = audit_failure
        self.route, self.on_flagged, self.guarded_max_tokens = route, on_flagged, guarded_max_tokens
        self._engine = EngineSlot.for_adapter("SelfGuardMiddleware", engine, model=None,
                                              engine_options=engine_options or {})
        self._engine_options = dict(engine_options or {})

    @property
    def engine(self) -> SelfGuard:
        """The engine whose probe routes requests (loaded on first use unless given)."""
        return self._engine.get(lambda: SelfGuard.from_pretrained(progress=False, **self._engine_options))

    # -- what a call protects ----------------------------------------------------------------
    def leak_context(self, request: ModelRequest) -> LeakContext:
        """The request's system message, the canaries, and the private documents of this call."""
        systems = [request.system_message] if request.system_message is not None else []
        systems += [m for m in request.messages if isinstance(m, SystemMessage)]
        system = "\n\n".join(m.text for m in systems if m.text)
        tool_results = [m.text for m in request.messages
                        if isinstance(m, ToolMessage) and m.name in self.private_tools and m.text]
        stored: Any = request.state.get(self.private_state_key) or []
        documents = [_document_text(d) for d in ([stored] if isinstance(stored, str) else stored)]
        return LeakContext(system_prompt=system or None,
                           private_context=(*self.private_context, *tool_results, *documents),
                           canaries=self.canaries)

    def _holds_back(self) -> bool:
        return self.guard.policy.holds_back_streams or self.guard.strip_reasoning != "never"

    def _start(self, request: ModelRequest) -> tuple[_Call, AIMessage | None]:
        """The call, routed; a reply when the call is refused without asking any model."""
        call = _Call(request, self.leak_context(request), time.perf_counter())
        if self.route == "guarded":
            requests = [{"role": "user", "content": m.text} for m in request.messages if isinstance(m, HumanMessage)]
            call.awareness = self.engine.awareness([requests])[0] if requests else None
            call.gate_fired = call.awareness is not None and call.awareness > 0
            if call.gate_fired and self.on_flagged == "block":
                call.mode = "blocked"
                return call, refusal_message(FLAGGED_REFUSAL, gate_fired=True, awareness=call.awareness)
            if call.gate_fired:
                from .chat_model import ChatSelfGuard

                call.mode = "self-guard"
                # `engine` is an AdapterFields.__init__ keyword, hidden by the pydantic plugin's signature
                steered = ChatSelfGuard(engine=self.engine, mode="self-guard",  # type: ignore[call-arg]
                                        max_tokens=self.guarded_max_tokens)
                request = request.override(model=steered)
        if self._holds_back():  # a streamed agent shows the reply once it is checked, not token by token
            model = request.model
            request = request.override(model=model.model_copy(update={"tags": [*(model.tags or []), TAG_NOSTREAM]}))
        call.request = request
        return call, None

    # -- what comes back ---------------------------------------------------------------------
    def _checked(self, call: _Call, response: ModelResponse) -> tuple[ModelResponse | None, CheckedOutput | None]:
        """The response with its reply checked and rewritten; None when the policy wants another try."""
        index = next((i for i in range(len(response.result) - 1, -1, -1)
                      if isinstance(response.result[i], AIMessage)), None)
        if index is None:
            return response, None
        message = response.result[index]
        assert isinstance(message, AIMessage)  # found above
        checked = self.guard.check(read_message(message), call.context, call.attempts)
        if checked.try_again:
            call.attempts = list(checked.report.attempts)
            return None, checked
        if checked.blocked:
            reply: BaseMessage = refusal_message(self.guard.policy.refusal_text, leak_blocked=True)
        else:
            def rewrite(where: Any) -> Callable[[str], str]:
                return lambda text: self.guard.rewrite(text, where, call.context, checked)

            reply = rewrite_message(message, rewrite("reasoning"), rewrite("answer"),
                                    lambda args: self.guard.rewrite_arguments(args, call.context, checked),
                                    drop_reasoning=checked.reasoning_stripped)
            summary = checked.report.summary()
            reply.response_metadata = {**reply.response_metadata, "selfguard": {
                "leakage": summary, "mode": call.mode, "gate_fired": call.gate_fired,
                "reasoning_stripped": checked.reasoning_stripped}}
        result = [*response.result[:index], reply, *response.result[index + 1:]]
        self._write_audit(call, message, checked.report)
        return ModelResponse(result=result, structured_response=response.structured_response), checked

    def _write_audit(self, call: _Call, message: AIMessage | None, report: LeakageReport) -> None:
        sinks = _audit_handler_sinks()
        if self.audit is None and not sinks:
            return
        model = call.request.model if call.mode != "blocked" else None
        record = record_for_message(
            model="none" if model is None else _model_name(model), mode=call.mode,
            messages=[m.model_dump(include={"type", "content"}) for m in call.request.messages], report=report,
            latency_seconds=time.perf_counter() - call.started, awareness=call.awareness,
            gate_fired=call.gate_fired, fields=_run_fields(), **(_usage(message) if message is not None else {}))
        for log in (self.audit, AuditLog(sinks, on_failure=self.audit_failure) if sinks else None):
            if log is not None:
                log.write(record)

    def _refused(self, call: _Call, reply: AIMessage) -> ModelResponse:
        self._write_audit(call, None, LeakageReport())
        return ModelResponse(result=[reply])

    # -- the hooks -------------------------------------------------------------------------
    def wrap_model_call(self, request: ModelRequest,
                        handler: Callable[[ModelRequest], ModelResponse]) -> ModelResponse:
        call, refused = self._start(request)
        if refused is not None:
            return self._refused(call, refused)
        while True:
            response, checked = self._checked(call, handler(call.request))
            if response is not None:
                if checked is not None:
                    self.guard.raise_if_blocked(checked)
                return response

    async def awrap_model_call(self, request: ModelRequest,
                               handler: Callable[[ModelRequest], Awaitable[ModelResponse]]) -> ModelResponse:
        call, refused = await asyncio.to_thread(self._start, request)  # the probe is a forward pass
        if refused is not None:
            return self._refused(call, refused)
        while True:
            response, checked = self._checked(call, await handler(call.request))
            if response is not None:
                if checked is not None:
                    self.guard.raise_if_blocked(checked)
                return response

