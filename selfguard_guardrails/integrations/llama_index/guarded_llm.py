"""`GuardedLLM`: the library's leak checks, policies and audit log around any LlamaIndex LLM.

    from llama_index.core import Settings
    from selfguard_guardrails.integrations.llama_index import GuardedLLM
    Settings.llm = GuardedLLM(llm=ANY_LLAMA_INDEX_LLM)

Every call is delegated to the wrapped LLM; its reply's reasoning (`ThinkingBlock`s and the
`reasoning_content` / `thinking` / `reasoning` fields some LLMs put in `additional_kwargs`),
text (`TextBlock`s, cited text, a completion's text) and tool-call arguments (`ToolCallBlock`s
and OpenAI-style `additional_kwargs["tool_calls"]`, as dicts or JSON strings) are checked
against secrets, PII, the conversation's system prompt, canaries and private context, the
policy is applied where each part sits, and one audit record is written per call. Function
calling is delegated too, so a guarded function-calling LLM works in `FunctionAgent`.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CitationBlock,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.bridge.pydantic import BaseModel, PrivateAttr, SerializeAsAny
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import LLM, ToolSelection

from ...audit import AuditLog, AuditSink, FailureMode, audit_log, record_for_message
from ...errors import InvalidSettingError
from ...leakage.findings import KINDS
from ...leakage.message_check import CheckedOutput, ModelOutput, OutputGuard, StripReasoning
from ...leakage.policy import LeakPolicy
from ...leakage.report import LeakageReport, LeakAttempt
from ...leakage.scanner import LeakContext, LeakScanner
from .audit import SelfGuardLeakEvent, audit_handlers, current_span_id
from .rag import retrieved_private_context

dispatcher = get_dispatcher(__name__)

REASONING_FIELDS = ("reasoning_content", "thinking", "reasoning")  # additional_kwargs some LLMs put a trace in
TOKEN_FIELDS = ("prompt_tokens", "completion_tokens", "reasoning_tokens", "total_tokens")
SYSTEM_ROLES = (MessageRole.SYSTEM, MessageRole.DEVELOPER)
R = TypeVar("R", ChatResponse, CompletionResponse)


# -- where a reply's parts sit ------------------------------------------------------------------
def _get(item: Any, name: str) -> Any:
    return item.get(name) if isinstance(item, Mapping) else getattr(item, name, None)


def _rewritable(item: Any) -> bool:
    """Only parts the guard can write back are read: a part it could read but not rewrite would leak."""
    return isinstance(item, (Mapping, BaseModel))


def _with(item: Any, name: str, value: Any) -> Any:
    return {**item, name: value} if isinstance(item, Mapping) else item.model_copy(update={name: value})


def _call_arguments(call: Any) -> Any:
    """An `additional_kwargs["tool_calls"]` entry's arguments: OpenAI's `function.arguments`
    (a dict or an SDK object) or a `ToolSelection`'s `tool_kwargs`."""
    function = _get(call, "function")
    if _rewritable(function):
        return _get(function, "arguments")
    return _get(call, "tool_kwargs") if _rewritable(call) else None


def _call_with_arguments(call: Any, arguments: Any) -> Any:
    function = _get(call, "function")
    if _rewritable(function):
        return _with(call, "function", _with(function, "arguments", arguments))
    return _with(call, "tool_kwargs", arguments)


def _json_object(text: str) -> Mapping[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, Mapping) else None


def _arguments_mapping(arguments: Any) -> Mapping[str, Any]:
    """Arguments as the checks read them: a dict, a JSON string's object, or any other string as {"raw": text}."""
    if isinstance(arguments, Mapping):
        return arguments
    if isinstance(arguments, str):
        return _json_object(arguments) or {"raw": arguments}
    return {}


def _field_text(value: Any) -> str:
    """A reasoning field's text: a string, or a mapping with a `thinking` or `text` string."""
    if isinstance(value, str):
        return value
    text = (_get(value, "thinking") or _get(value, "text")) if isinstance(value, Mapping) else None
    return text if isinstance(text, str) else ""


def _block_answer(block: Any) -> str | None:
    if isinstance(block, TextBlock):
        return block.text
    if isinstance(block, CitationBlock) and isinstance(block.cited_content, TextBlock):
        return block.cited_content.text
    return None


def _reasoning_of(blocks: Sequence[Any], *extras: Mapping[str, Any]) -> str:
    """The trace: thinking blocks, then reasoning fields (of the message, then of the response) not already read."""
    texts = [block.content for block in blocks if isinstance(block, ThinkingBlock) and block.content]
    for extra in extras:
        texts += [text for name in REASONING_FIELDS if (text := _field_text(extra.get(name))) and text not in texts]
    return "\n\n".join(texts)


def _calls_of(message: ChatMessage) -> list[Any]:
    """Every tool call's arguments: `ToolCallBlock`s, then `additional_kwargs["tool_calls"]` not already among them."""
    blocks = [block for block in message.blocks if isinstance(block, ToolCallBlock)]
    ids = {block.tool_call_id for block in blocks if block.tool_call_id}
    listed = message.additional_kwargs.get("tool_calls")
    listed = listed if isinstance(listed, list) else []
    extra = [_call_arguments(call) for call in listed if _get(call, "id") not in ids]
    return [*(block.tool_kwargs for block in blocks), *(args for args in extra if args is not None)]


def read_chat(response: ChatResponse) -> ModelOutput:
    """A chat reply as the checks read it."""
    message = response.message
    answers = [text for block in message.blocks if (text := _block_answer(block))]
    return ModelOutput(reasoning=_reasoning_of(message.blocks, message.additional_kwargs, response.additional_kwargs),
                       answer="\n".join(answers),
                       tool_arguments=tuple(_arguments_mapping(args) for args in _calls_of(message)))


def read_completion(response: CompletionResponse) -> ModelOutput:
    """A completion as the checks read it: its text, and its trace in `additional_kwargs`."""
    return ModelOutput(reasoning=_reasoning_of((), response.additional_kwargs), answer=response.text)


# -- writing a checked reply back ------------------------------------------------------------------
@dataclass(frozen=True)
class _Rewriter:
    """Rewrites each part of one reply where it sits, as the check decided."""

    guard: OutputGuard
    context: LeakContext
    checked: CheckedOutput
    changed: bool  # anything shown differs from what the model wrote: its raw payload must go

    def reasoning(self, text: str) -> str:
        return self.guard.rewrite(text, "reasoning", self.context, self.checked)

    def answer(self, text: str) -> str:
        return self.guard.rewrite(text, "answer", self.context, self.checked)

    def arguments(self, arguments: Any) -> Any:
        """Arguments in their own shape: a dict stays a dict, a JSON string stays a JSON string (unchanged
        when nothing in it was rewritten), any other string is rewritten as text."""
        if isinstance(arguments, Mapping):
            return dict(self.guard.rewrite_arguments(arguments, self.context, self.checked))
        if not isinstance(arguments, str):
            return arguments
        parsed = _json_object(arguments)
        if parsed is None:
            return self.guard.rewrite_arguments({"raw": arguments}, self.context, self.checked)["raw"]
        shown = self.guard.rewrite_arguments(parsed, self.context, self.checked)
        return arguments if shown == parsed else json.dumps(shown, ensure_ascii=False)

    def fields(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        """`additional_kwargs` with each reasoning field rewritten; one rewritten to nothing is removed."""
        result = dict(extra)
        for name in REASONING_FIELDS:
            value = result.get(name)
            text = _field_text(value)
            if not text:
                continue
            shown = self.reasoning(text)
            if not shown:
                del result[name]
            elif isinstance(value, Mapping):
                result[name] = {**value, ("thinking" if _get(value, "thinking") else "text"): shown}
            else:
                result[name] = shown
        return result

    def block(self, block: Any) -> Any:
        """A content block rewritten; None for a trace that is stripped."""
        if isinstance(block, ThinkingBlock):
            if self.checked.reasoning_stripped:
                return None
            return block.model_copy(update={"content": self.reasoning(block.content)}) if block.content else block
        if isinstance(block, TextBlock):
            return block.model_copy(update={"text": self.answer(block.text)})
        if isinstance(block, CitationBlock) and isinstance(block.cited_content, TextBlock):
            cited = block.cited_content.model_copy(update={"text": self.answer(block.cited_content.text)})
            return block.model_copy(update={"cited_content": cited})
        if isinstance(block, ToolCallBlock):
            return block.model_copy(update={"tool_kwargs": self.arguments(block.tool_kwargs)})
        return block

    def message(self, message: ChatMessage) -> ChatMessage:
        extra = self.fields(message.additional_kwargs)
        if "tool_calls" in extra and isinstance(extra["tool_calls"], list):
            extra["tool_calls"] = [call if _call_arguments(call) is None
                                   else _call_with_arguments(call, self.arguments(_call_arguments(call)))
                                   for call in extra["tool_calls"]]
        blocks = [shown for block in message.blocks if (shown := self.block(block)) is not None]
        return message.model_copy(update={"blocks": blocks, "additional_kwargs": extra})

    def notes(self, extra: Mapping[str, Any]) -> dict[str, Any]:
        """The response's `additional_kwargs`, rewritten, with what the guard did under "selfguard"."""
        kept = {k: v for k, v in extra.items() if k in TOKEN_FIELDS} if self.checked.blocked else self.fields(extra)
        return {**kept, "selfguard": {"leakage": self.checked.report.summary(), "mode": "external",
                                      "reasoning_stripped": self.checked.reasoning_stripped,
                                      "leak_blocked": self.checked.blocked}}


def shown_chat(response: ChatResponse, rewriter: _Rewriter, refusal: str) -> ChatResponse:
    """The chat reply as it may be shown: rewritten, or the refusal when blocked (its text, marked
    `additional_kwargs["refusal"]`: LlamaIndex has no refusal block)."""
    if rewriter.checked.blocked:
        message = ChatMessage(role=MessageRole.ASSISTANT, blocks=[TextBlock(text=refusal)],
                              additional_kwargs={"refusal": refusal})
    else:
        message = rewriter.message(response.message)
    keep = not rewriter.changed
    return ChatResponse(message=message, raw=response.raw if keep else None, delta=response.delta if keep else None,
                        logprobs=response.logprobs if keep else None,
                        additional_kwargs=rewriter.notes(response.additional_kwargs))


def shown_completion(response: CompletionResponse, rewriter: _Rewriter, refusal: str) -> CompletionResponse:
    """The completion as it may be shown: rewritten, or the refusal when blocked."""
    extra = rewriter.notes(response.additional_kwargs)
    if rewriter.checked.blocked:
        return CompletionResponse(text=refusal, additional_kwargs={**extra, "refusal": refusal})
    keep = not rewriter.changed
    return CompletionResponse(text=rewriter.answer(response.text), raw=response.raw if keep else None,
                              delta=response.delta if keep else None,
                              logprobs=response.logprobs if keep else None, additional_kwargs=extra)


@dataclass(frozen=True)
class _Replies(Generic[R]):
    """How one kind of reply is read, shown and counted."""

    read: Callable[[R], ModelOutput]
    shown: Callable[[R, _Rewriter, str], R]
    empty: Callable[[], R]


def _empty_chat() -> ChatResponse:
    return ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, content=""))


def _empty_completion() -> CompletionResponse:
    return CompletionResponse(text="")


CHAT = _Replies(read_chat, shown_chat, _empty_chat)
COMPLETION = _Replies(read_completion, shown_completion, _empty_completion)


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _usage(response: ChatResponse | CompletionResponse) -> dict[str, int]:
    """Token counts as OpenAI-like LLMs report them in `additional_kwargs` (reasoning: else the thinking blocks')."""
    extra = response.additional_kwargs
    thinking = response.message.blocks if isinstance(response, ChatResponse) else []
    reasoning = _count(extra.get("reasoning_tokens")) or sum(
        _count(block.num_tokens) for block in thinking if isinstance(block, ThinkingBlock))
    return {"input_tokens": _count(extra.get("prompt_tokens")), "output_tokens": _count(extra.get("completion_tokens")),
            "reasoning_tokens": reasoning}


# -- streams ----------------------------------------------------------------------------------------
def _last(chunks: Iterator[R], empty: Callable[[], R]) -> R:
    """A stream's last chunk: its message (or text) is the whole reply."""
    last = empty()
    for chunk in chunks:
        last = chunk
    return last


async def _alast(chunks: Awaitable[AsyncIterator[R]], empty: Callable[[], R]) -> R:
    last = empty()
    async for chunk in await chunks:
        last = chunk
    return last


def chat_chunks(response: ChatResponse) -> list[ChatResponse]:
    """A checked reply as a stream: its shown trace as one thinking chunk (`delta=""`,
    `additional_kwargs["thinking_delta"]`), then the whole message with its text as the delta."""
    thinking = [block for block in response.message.blocks if isinstance(block, ThinkingBlock)]
    reasoning = "".join(block.content or "" for block in thinking)
    extra = {k: v for k, v in response.additional_kwargs.items() if k != "thinking_delta"}
    chunks = [ChatResponse(message=ChatMessage(role=response.message.role, blocks=thinking), delta="",
                           additional_kwargs={"thinking_delta": reasoning})] if reasoning else []
    return [*chunks, response.model_copy(update={"delta": response.message.content or "", "additional_kwargs": extra})]


def completion_chunks(response: CompletionResponse) -> list[CompletionResponse]:
    return [response.model_copy(update={"delta": response.text})]


def _items(items: Sequence[R]) -> Generator[R, None, None]:
    """A list as a generator: LlamaIndex's callbacks wrap a stream only when it is one."""
    yield from items


async def _async_items(items: Sequence[R]) -> AsyncGenerator[R, None]:
    for item in items:
        yield item


# -- the LLM ----------------------------------------------------------------------------------------
@dataclass
class _Call:
    """One call to the guarded LLM: what it protects, and where its audit record goes."""

    messages: list[dict[str, Any]]  # for the record's prompt hash
    context: LeakContext
    span_id: str | None
    sinks: list[AuditSink]
    fields: dict[str, Any]
    started: float = field(default_factory=time.perf_counter)
    attempts: list[LeakAttempt] = field(default_factory=list)


def _strings(name: str, values: Sequence[str]) -> tuple[str, ...]:
    if isinstance(values, str) or not all(isinstance(v, str) for v in values):
        raise InvalidSettingError(f"{name} must be a list of strings, got {values!r:.80}.")
    return tuple(values)


class GuardedLLM(FunctionCallingLLM):
    """Any LlamaIndex LLM with the library's leak checks, policies and audit log on its replies.

    `GuardedLLM(llm=x)` alone redacts every leak (secrets, PII, copies of the system prompt, of
    private context and canaries) from the reasoning, the text and the tool arguments. Options,
    named as `SelfGuardMiddleware`'s:

    - `leak_policy`: a `LeakPolicy`, an action name, or a mapping of kinds to `log` / `redact` /
      `block` / `regenerate` plus options; `regenerate` calls the wrapped LLM again.
    - `strip_reasoning`: "never", "on_leak" (a trace with a finding is dropped whole) or "always".
    - `canaries`, `private_context` (documents protected on every call; the nodes a
      `PrivateContextPostprocessor` saw in this query are protected too).
    - `audit`: a path (JSONL, or SQLite for .db), a sink, a list of them, or an `AuditLog`;
      `audit_failure` "closed" (a failing sink fails the call) or "open". Sinks of attached
      `SelfGuardAuditEventHandler`s get the record as well.
    - `leak_checks`: the kinds to check (all four by default).
    """

    llm: SerializeAsAny[LLM]

    _guard: OutputGuard = PrivateAttr()
    _audit: AuditLog | None = PrivateAttr(default=None)
    _audit_failure: FailureMode = PrivateAttr(default="closed")
    _canaries: tuple[str, ...] = PrivateAttr(default=())
    _private_context: tuple[str, ...] = PrivateAttr(default=())

    def __init__(self, llm: LLM, *, leak_policy: LeakPolicy | Mapping[str, Any] | str | None = None,
                 strip_reasoning: StripReasoning = "never", canaries: Sequence[str] = (),
                 private_context: Sequence[str] = (), audit: Any = None, audit_failure: FailureMode = "closed",
                 leak_checks: Sequence[str] = KINDS, **data: Any) -> None:
        # the wrapped LLM's system prompt is added by `predict` and friends, as it would add it itself
        data.setdefault("system_prompt", getattr(llm, "system_prompt", None))
        super().__init__(llm=llm, **data)
        self._guard = OutputGuard(LeakPolicy.parse(leak_policy), LeakScanner(leak_checks), strip_reasoning)
        self._canaries = _strings("canaries", canaries)
        self._private_context = _strings("private_context", private_context)
        self._audit = audit_log(audit, on_failure=audit_failure)
        self._audit_failure = audit_failure

    @classmethod
    def class_name(cls) -> str:
        return "GuardedLLM"

    @property
    def metadata(self) -> LLMMetadata:
        return self.llm.metadata

    @property
    def guard(self) -> OutputGuard:
        """The checks, the policy and the trace rule applied to every reply."""
        return self._guard

    def _holds_back(self) -> bool:
        return self._guard.policy.holds_back_streams or self._guard.strip_reasoning != "never"

    def _model_name(self) -> str:
        name = self.llm.metadata.model_name
        return name if name and name != "unknown" else type(self.llm).__name__

    # -- one call -----------------------------------------------------------------------------
    def _start(self, messages: Sequence[ChatMessage]) -> _Call:
        """What this call protects: its system messages (and the LLMs' system prompts), the canaries,
        the private documents given and those retrieved in this query."""
        systems = [m.content or "" for m in messages if m.role in SYSTEM_ROLES]
        systems += [prompt for prompt in (self.llm.system_prompt, self.system_prompt) if prompt]
        system = "\n\n".join(dict.fromkeys(text for text in systems if text))
        context = LeakContext(system_prompt=system or None, canaries=self._canaries,
                              private_context=(*self._private_context, *retrieved_private_context()))
        span_id = current_span_id()
        handlers = audit_handlers(dispatcher)
        fields = next((h.span_context(span_id) for h in handlers), {"llama_index_span_id": span_id})
        return _Call([{"role": m.role.value, "content": m.content} for m in messages], context, span_id,
                     [h.sink for h in handlers], fields)

    def _start_prompt(self, prompt: str) -> _Call:
        return self._start([ChatMessage(role=MessageRole.USER, content=prompt)])

    def _check(self, call: _Call, output: ModelOutput) -> CheckedOutput:
        checked = self._guard.check(output, call.context, call.attempts)
        call.attempts = list(checked.report.attempts)
        return checked

    def _deliver(self, call: _Call, reply: R, output: ModelOutput, checked: CheckedOutput, kind: _Replies[R]) -> R:
        """The reply as shown; the audit record and the leak event are written first, then a block may raise."""
        rewriter = _Rewriter(self._guard, call.context, checked, changed=checked.blocked or checked.output != output)
        shown = kind.shown(reply, rewriter, self._guard.policy.refusal_text)
        self._record(call, checked.report, _usage(reply))
        self._guard.raise_if_blocked(checked)
        return shown

    def _record(self, call: _Call, report: LeakageReport, usage: dict[str, int]) -> None:
        if report.findings:
            dispatcher.event(SelfGuardLeakEvent(span_id=call.span_id, summary=report.summary(),
                                                findings=[f.model_dump() for f in report.findings]))
        logs = [log for log in (self._audit, AuditLog(call.sinks, on_failure=self._audit_failure) if call.sinks
                                else None) if log is not None]
        if not logs:
            return
        record = record_for_message(model=self._model_name(), mode="external", messages=call.messages,
                                    report=report, latency_seconds=time.perf_counter() - call.started,
                                    fields=call.fields, input_tokens=usage["input_tokens"],
                                    output_tokens=usage["output_tokens"], reasoning_tokens=usage["reasoning_tokens"])
        for log in logs:
            log.write(record)

    def _run(self, call: _Call, ask: Callable[[], R], kind: _Replies[R]) -> R:
        """Ask, check, and ask again while the policy wants another try."""
        while True:
            reply = ask()
            output = kind.read(reply)
            checked = self._check(call, output)
            if not checked.try_again:
                return self._deliver(call, reply, output, checked, kind)

    async def _arun(self, call: _Call, ask: Callable[[], Awaitable[R]], kind: _Replies[R]) -> R:
        while True:
            reply = await ask()
            output = kind.read(reply)
            checked = self._check(call, output)
            if not checked.try_again:
                return self._deliver(call, reply, output, checked, kind)

    def _live(self, call: _Call, chunks: Iterator[R], kind: _Replies[R]) -> Generator[R, None, None]:
        """A log-only stream: chunks pass as they come; the whole reply is checked and recorded at
        the end (or where the caller stopped)."""
        last = None
        try:
            for last in chunks:
                yield last
        finally:
            if last is not None:
                output = kind.read(last)
                self._deliver(call, last, output, self._check(call, output), kind)

    async def _alive(self, call: _Call, chunks: AsyncIterator[R], kind: _Replies[R]) -> AsyncGenerator[R, None]:
        last = None
        try:
            async for last in chunks:
                yield last
        finally:
            if last is not None:
                output = kind.read(last)
                self._deliver(call, last, output, self._check(call, output), kind)

    # -- the LlamaIndex API -------------------------------------------------------------------
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._run(self._start(messages), lambda: self.llm.chat(messages, **kwargs), CHAT)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        """Held back (any policy beyond `log`, or a trace to strip): returns once the reply is complete
        and checked, then yields it (`chat_chunks`). Log-only: the wrapped stream, live."""
        call = self._start(messages)
        if not self._holds_back():
            return self._live(call, self.llm.stream_chat(messages, **kwargs), CHAT)
        reply = self._run(call, lambda: _last(self.llm.stream_chat(messages, **kwargs), _empty_chat), CHAT)
        return _items(chat_chunks(reply))

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self._run(self._start_prompt(prompt), lambda: self.llm.complete(prompt, formatted, **kwargs),
                         COMPLETION)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        call = self._start_prompt(prompt)
        if not self._holds_back():
            return self._live(call, self.llm.stream_complete(prompt, formatted, **kwargs), COMPLETION)
        reply = self._run(call, lambda: _last(self.llm.stream_complete(prompt, formatted, **kwargs),
                                              _empty_completion), COMPLETION)
        return _items(completion_chunks(reply))

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await self._arun(self._start(messages), lambda: self.llm.achat(messages, **kwargs), CHAT)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        call = self._start(messages)
        if not self._holds_back():
            return self._alive(call, await self.llm.astream_chat(messages, **kwargs), CHAT)
        reply = await self._arun(call, lambda: _alast(self.llm.astream_chat(messages, **kwargs), _empty_chat), CHAT)
        return _async_items(chat_chunks(reply))

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return await self._arun(self._start_prompt(prompt), lambda: self.llm.acomplete(prompt, formatted, **kwargs),
                                COMPLETION)

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False,
                               **kwargs: Any) -> CompletionResponseAsyncGen:
        call = self._start_prompt(prompt)
        if not self._holds_back():
            chunks = await self.llm.astream_complete(prompt, formatted, **kwargs)
            return self._alive(call, chunks, COMPLETION)
        reply = await self._arun(call, lambda: _alast(self.llm.astream_complete(prompt, formatted, **kwargs),
                                                      _empty_completion), COMPLETION)
        return _async_items(completion_chunks(reply))

    # -- function calling, delegated ---------------------------------------------------------
    def _tool_llm(self) -> FunctionCallingLLM:
        if not isinstance(self.llm, FunctionCallingLLM):
            raise InvalidSettingError(f"The wrapped {type(self.llm).__name__} is not a FunctionCallingLLM, so it "
                                      "cannot call tools: wrap a function-calling LLM to use tools or FunctionAgent.")
        return self.llm

    def _prepare_chat_with_tools(self, tools: Sequence[Any], user_msg: str | ChatMessage | None = None,
                                 chat_history: list[ChatMessage] | None = None, verbose: bool = False,
                                 allow_parallel_tool_calls: bool = False, tool_required: bool = False,
                                 **kwargs: Any) -> dict[str, Any]:
        return self._tool_llm()._prepare_chat_with_tools_compat(
            tools, user_msg=user_msg, chat_history=chat_history, verbose=verbose,
            allow_parallel_tool_calls=allow_parallel_tool_calls, tool_required=tool_required, **kwargs)

    def _validate_chat_with_tools_response(self, response: ChatResponse, tools: Sequence[Any],
                                           allow_parallel_tool_calls: bool = False, **kwargs: Any) -> ChatResponse:
        return self._tool_llm()._validate_chat_with_tools_response(
            response, tools, allow_parallel_tool_calls=allow_parallel_tool_calls, **kwargs)

    def get_tool_calls_from_response(self, response: ChatResponse, error_on_no_tool_call: bool = True,
                                     **kwargs: Any) -> list[ToolSelection]:
        return self._tool_llm().get_tool_calls_from_response(response, error_on_no_tool_call=error_on_no_tool_call,
                                                             **kwargs)
