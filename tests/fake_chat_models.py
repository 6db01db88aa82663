"""Fake LangChain chat models that reply the way hosted reasoning models shape their messages.

`ScriptedChatModel` replies with its scripted messages in turn (the last one again once they run
out), streams a reply's text word by word, and binds tools by ignoring them, so that an agent
built with `create_agent` runs offline. The `*_reply` helpers put a reasoning trace where each
provider puts it.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

GITHUB_TOKEN = "ghp_" + "".join(itertools.islice(itertools.cycle("aB3dE5fG7hJ9kL1mN3pQ5rS7"), 36))


class ScriptedChatModel(BaseChatModel):
    replies: list[AIMessage]
    # the conversations it was called with; shared by shallow copies (the middleware holds streams
    # back on a copy of the model), so the copies take their turns from one script
    seen: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "scripted"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> ScriptedChatModel:
        return self

    def _next(self, messages: list[BaseMessage]) -> AIMessage:
        reply = self.replies[min(len(self.seen), len(self.replies) - 1)]
        self.seen.append(list(messages))
        return reply.model_copy(deep=True)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._next(messages))])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        reply = self._next(messages)
        text = reply.content if isinstance(reply.content, str) else reply.text
        words = text.split(" ")
        for index, word in enumerate(words):
            piece = word if index == len(words) - 1 else word + " "
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager is not None:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        yield ChatGenerationChunk(message=AIMessageChunk(
            content="", additional_kwargs=reply.additional_kwargs, tool_call_chunks=[
                {"name": c["name"], "args": json.dumps(c["args"]), "id": c["id"], "index": i}
                for i, c in enumerate(reply.tool_calls)], chunk_position="last"))


def deepseek_reply(reasoning: str, text: str, **kwargs: Any) -> AIMessage:
    """DeepSeek (and LangChain's readers of vLLM/SGLang servers): `reasoning_content`."""
    return AIMessage(content=text, additional_kwargs={"reasoning_content": reasoning}, **kwargs)


def openai_compatible_reply(reasoning: str, text: str, **kwargs: Any) -> AIMessage:
    """Servers that name the field `reasoning` (OpenRouter, llama.cpp's and vLLM's newer fields)."""
    return AIMessage(content=text, additional_kwargs={"reasoning": reasoning}, **kwargs)


def openai_responses_reply(reasoning: str, text: str, **kwargs: Any) -> AIMessage:
    """OpenAI's Responses API through LangChain: a reasoning item with summary texts."""
    return AIMessage(content=text, additional_kwargs={"reasoning": {
        "id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": reasoning}]}}, **kwargs)


def anthropic_reply(reasoning: str, text: str, **kwargs: Any) -> AIMessage:
    """Anthropic: a signed `thinking` block before the text."""
    return AIMessage(content=[{"type": "thinking", "thinking": reasoning, "signature": "sig"},
                              {"type": "text", "text": text}], **kwargs)


def standard_reply(reasoning: str, text: str, **kwargs: Any) -> AIMessage:
    """LangChain v1 standard content blocks."""
    return AIMessage(content=[{"type": "reasoning", "reasoning": reasoning}, {"type": "text", "text": text}],
                     response_metadata={"output_version": "v1"}, **kwargs)


PROVIDER_SHAPES = {"deepseek": deepseek_reply, "openai_compatible": openai_compatible_reply,
                   "openai_responses": openai_responses_reply, "anthropic": anthropic_reply,
                   "standard": standard_reply}
