"""LangChain v1 standard content blocks for `ChatSelfGuard`'s messages.

Our messages keep string content (older readers expect it), the reasoning in
`additional_kwargs["reasoning_content"]` and a guardrail's refusal in `additional_kwargs["refusal"]`.
The translator registered here for the provider "selfguard" (`response_metadata["model_provider"]`)
makes `message.content_blocks` read them as `reasoning`, `text`, `tool_call` and `refusal` blocks,
which is what LangChain's middleware (`ModelRefusalMiddleware`, `ModelFallbackMiddleware`) reads;
with `output_version="v1"` LangChain stores these blocks as the content itself.
"""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, AIMessageChunk
from langchain_core.messages import content as types
from langchain_core.messages.block_translators import register_translator

PROVIDER = "selfguard"


def _blocks(message: AIMessage, calls: list[types.ContentBlock]) -> list[types.ContentBlock]:
    """Reasoning, text, the calls, then the refusal: the order the model produced them."""
    if not isinstance(message.content, str):
        raise NotImplementedError  # already a block list: LangChain's own parsing reads it
    blocks: list[types.ContentBlock] = []
    if reasoning := message.additional_kwargs.get("reasoning_content"):
        blocks.append(types.ReasoningContentBlock(type="reasoning", reasoning=reasoning))
    if message.content:
        blocks.append(types.TextContentBlock(type="text", text=message.content))
    blocks.extend(calls)
    if (refusal := message.additional_kwargs.get("refusal")) is not None:
        blocks.append(types.RefusalContentBlock(type="refusal", refusal=refusal))
    return blocks


def _call_blocks(message: AIMessage) -> list[types.ContentBlock]:
    calls: list[types.ContentBlock] = [
        types.ToolCall(type="tool_call", name=c["name"], args=c["args"], id=c.get("id")) for c in message.tool_calls]
    return calls + [types.InvalidToolCall(type="invalid_tool_call", name=c.get("name"), args=c.get("args"),
                                          id=c.get("id"), error=c.get("error"))
                    for c in message.invalid_tool_calls]


def translate_content(message: AIMessage) -> list[types.ContentBlock]:
    """The standard blocks of a whole message."""
    return _blocks(message, _call_blocks(message))


def translate_content_chunk(chunk: AIMessageChunk) -> list[types.ContentBlock]:
    """The standard blocks of a streamed chunk: a tool call comes whole, in the last chunk."""
    return _blocks(chunk, _call_blocks(chunk))


def as_v1(message: AIMessage) -> AIMessage:
    """The message with its standard blocks as content, as LangChain stores an `output_version="v1"`
    answer (for the batch path, which builds its messages without LangChain's generate)."""
    blocks: Any = message.content_blocks
    return message.model_copy(update={"content": blocks,
                                      "response_metadata": {**message.response_metadata, "output_version": "v1"}})


def register() -> None:
    """Make `content_blocks` use our translator for messages whose provider is "selfguard"."""
    register_translator(PROVIDER, translate_content, translate_content_chunk)
