"""LlamaIndex: `SelfGuardLLM`, a function-calling LLM over the Self-Guard engine.

    from llama_index.core import Settings
    from selfguard_guardrails.integrations.llama_index import SelfGuardLLM
    Settings.llm = SelfGuardLLM()

The engine loads on first use (construction is instant) or is shared (`SelfGuardLLM(engine=guard)`).
Replies carry the reasoning as a `ThinkingBlock` before the answer's `TextBlock` (and in
`additional_kwargs["reasoning_content"]` of completions, never in their text). Every generation
dispatches `SelfGuardSteeringEvent` (and `SelfGuardLeakEvent` when something leaked) inside
the LLM's span; audit records reach `SelfGuardAuditEventHandler`s with the span ids. Nodes a
`PrivateContextPostprocessor` saw in this query are protected by the leak check.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import AsyncGenerator, Callable, Generator, Iterator, Sequence
from typing import Any, TypeVar

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    ChatResponseAsyncGen,
    ChatResponseGen,
    CompletionResponse,
    CompletionResponseAsyncGen,
    CompletionResponseGen,
    LLMMetadata,
    MessageRole,
    TextBlock,
    ThinkingBlock,
)
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.llms.callbacks import llm_chat_callback, llm_completion_callback
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection

from ...results import GenerationResult, StreamPiece
from ...tooling.parsing import parse_tool_calls
from ...tooling.turns import ToolTurn
from ..options import AdapterFields, call_options, max_tokens_field
from .audit import audit_handlers, current_span_id, generation_events
from .messages import assistant_message, details_of, to_engine_messages, usage_of
from .rag import retrieved_private_context

dispatcher = get_dispatcher(__name__)
_DONE = object()
T = TypeVar("T")


class SelfGuardLLM(AdapterFields, FunctionCallingLLM):
    """A local Hugging Face model made safer by Self-Guard, as a LlamaIndex LLM. The settings it
    shares with the LangChain adapter are declared in `AdapterFields`."""

    adapter_name = "SelfGuardLLM"

    max_new_tokens: int = max_tokens_field()

    @classmethod
    def class_name(cls) -> str:
        return "SelfGuardLLM"

    @property
    def metadata(self) -> LLMMetadata:
        loaded = self.engine.loaded
        return LLMMetadata(context_window=loaded.context_window, num_output=self.max_new_tokens, is_chat_model=True,
                           is_function_calling_model=True, model_name=loaded.name)

    # -- one generation -------------------------------------------------------------------
    def _options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs = dict(kwargs)  # the caller's kwargs may be passed on again (a stream with tools)
        max_new_tokens = kwargs.pop("max_new_tokens", kwargs.pop("max_tokens", self.max_new_tokens))
        stop = kwargs.pop("stop", None)
        options = call_options(self, kwargs, max_new_tokens=max_new_tokens, stop=stop,
                               ignored=("formatted", "allow_parallel_tool_calls", "tool_required"))
        # what the retriever marked private in this query is protected as well
        options["private_context"] = [*(options["private_context"] or ()), *retrieved_private_context()] or None
        span_id = current_span_id()
        handlers = audit_handlers(dispatcher)
        options["audit_sinks"] = [h.sink for h in handlers]
        options["audit_fields"] = next((h.span_context(span_id) for h in handlers), {"llama_index_span_id": span_id})
        return options

    def _announce(self, result: GenerationResult, span_id: str | None) -> None:
        for event in generation_events(result, span_id):
            dispatcher.event(event)

    def _chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        conversation = to_engine_messages(messages)
        options = self._options(kwargs)
        result = ToolTurn(self.engine, self.tool_call_retries, self.guided_tool_calls).run(conversation, options)
        self._announce(result, current_span_id())
        tools = options["tools"]
        parsed = parse_tool_calls(result.answer, [t["function"]["name"] for t in tools]) if tools else None
        return ChatResponse(message=assistant_message(result, parsed), raw=result.model_dump(mode="json"),
                            additional_kwargs={**usage_of(result), **details_of(result)})

    def _stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> Iterator[ChatResponse]:
        conversation = to_engine_messages(messages)
        options = self._options(kwargs)
        if options["tools"]:  # a tool call is only known once the answer is complete
            response = self._chat(messages, **kwargs)
            yield response.model_copy(update={"delta": response.message.content or ""})
            return
        span_id = current_span_id()
        pieces = self.engine.stream(conversation, **options)  # bad input raises here, before the first piece
        return (yield from self._chat_pieces(pieces, span_id))

    def _chat_pieces(self, pieces: Iterator[StreamPiece | GenerationResult], span_id: str | None
                     ) -> Iterator[ChatResponse]:
        reasoning, answer = "", ""
        for item in pieces:
            if isinstance(item, StreamPiece):
                reasoning += item.text if item.channel == "reasoning" else ""
                answer += item.text if item.channel == "answer" else ""
                blocks = ([ThinkingBlock(content=reasoning)] if reasoning else []) + [TextBlock(text=answer)]
                message = ChatMessage(role=MessageRole.ASSISTANT, blocks=blocks)
                if item.channel == "reasoning":
                    yield ChatResponse(message=message, delta="", additional_kwargs={"thinking_delta": item.text})
                else:
                    yield ChatResponse(message=message, delta=item.text)
                continue
            self._announce(item, span_id)
            yield ChatResponse(message=assistant_message(item), delta="", raw=item.model_dump(mode="json"),
                               additional_kwargs={**usage_of(item), **details_of(item)})

    def _complete(self, prompt: str, **kwargs: Any) -> CompletionResponse:
        response = self._chat([ChatMessage(role=MessageRole.USER, content=prompt)], **kwargs)
        return _as_completion(response)

    # -- the LlamaIndex API -----------------------------------------------------------------
    @llm_chat_callback()
    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self._chat(messages, **kwargs)

    @llm_chat_callback()
    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseGen:
        return _started(self._stream_chat(messages, **kwargs))

    @llm_completion_callback()
    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self._complete(prompt, **kwargs)

    @llm_completion_callback()
    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponseGen:
        chats = self._stream_chat([ChatMessage(role=MessageRole.USER, content=prompt)], **kwargs)
        return _started(_as_completion(r) for r in chats)

    @llm_chat_callback()
    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return await _in_thread(self._chat, messages, **kwargs)

    @llm_chat_callback()
    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponseAsyncGen:
        return await _stream_in_thread(lambda: self._stream_chat(messages, **kwargs))

    @llm_completion_callback()
    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return await _in_thread(self._complete, prompt, **kwargs)

    @llm_completion_callback()
    async def astream_complete(self, prompt: str, formatted: bool = False,
                               **kwargs: Any) -> CompletionResponseAsyncGen:
        prompt_message = ChatMessage(role=MessageRole.USER, content=prompt)
        return await _stream_in_thread(lambda: (_as_completion(r) for r in self._stream_chat([prompt_message],
                                                                                               **kwargs)))

    # -- function calling -----------------------------------------------------------------
    def _prepare_chat_with_tools(self, tools: Sequence[Any], user_msg: str | ChatMessage | None = None,
                                 chat_history: list[ChatMessage] | None = None, verbose: bool = False,
                                 allow_parallel_tool_calls: bool = False, tool_required: bool = False,
                                 tool_choice: Any = None, **kwargs: Any) -> dict[str, Any]:
        """Tools in the OpenAI format; `tool_required` (or `tool_choice` "any"/a tool's name)
        forces a call, written as `ChatSelfGuard` writes one (docs/llama_index.md)."""
        messages = list(chat_history or [])
        if user_msg is not None:
            messages.append(user_msg if isinstance(user_msg, ChatMessage)
                            else ChatMessage(role=MessageRole.USER, content=user_msg))
        choice = tool_choice if tool_choice is not None else ("any" if tool_required else None)
        return {"messages": messages, "tools": [tool.metadata.to_openai_tool() for tool in tools] or None,
                "tool_choice": choice, **kwargs}

    def get_tool_calls_from_response(self, response: ChatResponse, error_on_no_tool_call: bool = True,
                                     **kwargs: Any) -> list[ToolSelection]:
        from llama_index.core.base.llms.types import ToolCallBlock

        calls = [ToolSelection(tool_id=b.tool_call_id or "", tool_name=b.tool_name,
                               tool_kwargs=b.tool_kwargs if isinstance(b.tool_kwargs, dict) else {})
                 for b in response.message.blocks if isinstance(b, ToolCallBlock)]
        if not calls and error_on_no_tool_call:
            invalid = response.message.additional_kwargs.get("invalid_tool_calls") or []
            reason = f" ({invalid[0]['error']})" if invalid else ""
            raise ValueError(f"Expected at least one tool call, but got 0 tool calls{reason}.")
        return calls


def _as_completion(response: ChatResponse) -> CompletionResponse:
    """A chat reply as a completion: the answer as text, the reasoning kept aside."""
    reasoning = "".join(b.content or "" for b in response.message.blocks if isinstance(b, ThinkingBlock))
    text = "".join(b.text for b in response.message.blocks if isinstance(b, TextBlock))
    extra = {**response.additional_kwargs}
    if reasoning:
        extra["reasoning_content"] = reasoning
    return CompletionResponse(text=text, delta=response.delta, raw=response.raw, additional_kwargs=extra)


def _started(responses: Iterator[T]) -> Generator[T, None, None]:
    """Run a lazy generator up to its first item now, so bad input raises at the call, not at
    the first `next()`; the item is yielded again first. A generator, as LlamaIndex's callbacks
    want of a stream."""
    iterator = iter(responses)
    head: list[T] = []
    with contextlib.suppress(StopIteration):
        head.append(next(iterator))

    def chained() -> Generator[T, None, None]:
        yield from head
        yield from iterator

    return chained()


async def _in_thread(function: Any, *args: Any, **kwargs: Any) -> Any:
    """The engine is synchronous: run it in a worker thread, with this context (the span id)."""
    context = contextvars.copy_context()
    return await asyncio.get_running_loop().run_in_executor(None, lambda: context.run(function, *args, **kwargs))


async def _stream_in_thread(make: Callable[[], Iterator[T]]) -> AsyncGenerator[T, None]:
    """An async view of a sync generator that is made and iterated in one worker thread (the
    engine's lock is taken and released in that thread). Returns once the first item is there,
    so bad input raises at the call. Leaving early closes the generator, which frees the engine."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Any] = asyncio.Queue()
    stop = threading.Event()
    context = contextvars.copy_context()

    def produce() -> None:
        items: Iterator[Any] | None = None
        try:
            items = make()
            for item in items:
                loop.call_soon_threadsafe(queue.put_nowait, item)
                if stop.is_set():
                    break
        except BaseException as error:  # handed to the consumer, raised there
            loop.call_soon_threadsafe(queue.put_nowait, error)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()
            loop.call_soon_threadsafe(queue.put_nowait, _DONE)

    threading.Thread(target=lambda: context.run(produce), daemon=True, name="selfguard-stream").start()
    first = await queue.get()
    if isinstance(first, BaseException):
        raise first

    async def rest() -> AsyncGenerator[T, None]:
        try:
            item = first
            while item is not _DONE:
                if isinstance(item, BaseException):
                    raise item
                yield item
                item = await queue.get()
        finally:
            stop.set()

    return rest()
