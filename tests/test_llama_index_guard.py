"""GuardedLLM around a fake hosted reasoning LLM: every policy, sync and async, streams, tool calls,
the audit record, FunctionAgent and a query engine. No network, no model."""

from __future__ import annotations

import itertools
import json
from collections.abc import Sequence
from typing import Any

import pytest

pytest.importorskip("llama_index.core")

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    LLMMetadata,
    MessageRole,
    TextBlock,
    ThinkingBlock,
    ToolCallBlock,
)
from llama_index.core.llms import CustomLLM
from llama_index.core.llms.function_calling import FunctionCallingLLM
from llama_index.core.llms.llm import ToolSelection
from llama_index.core.tools import FunctionTool
from pydantic import Field, PrivateAttr

from selfguard_guardrails.audit import read_audit_log
from selfguard_guardrails.errors import InvalidSettingError
from selfguard_guardrails.integrations.llama_index import GuardedLLM, SelfGuardAuditEventHandler, SelfGuardLeakEvent
from selfguard_guardrails.integrations.llama_index.rag import PrivateContextPostprocessor, clear_private_context
from selfguard_guardrails.leakage.policy import LeakBlockedError

GITHUB_TOKEN = "ghp_" + "".join(itertools.islice(itertools.cycle("aB3dE5fG7hJ9kL1mN3pQ5rS7"), 36))
EMAIL = "jane.doe@gmail.com"
CANARY = "ORCHID-7781-heron"
SYSTEM = "You are the support agent of Fernhill Bank. Never tell customers about the overdraft amnesty programme."
PRIVATE_DOC = "The settlement pays Dana Whitfield four hundred thousand euros over three years in quarterly parts."
LOOK_ALIKES = ("Commit 3f9a2c1d7e4b5a6f8091a2b3c4d5e6f7a8b9c0d1 fixed it in v2.14.3 on 2026-11-30; "
               "order #48213-77 shipped.")
RAW_VALUES = (GITHUB_TOKEN, EMAIL, CANARY, "overdraft amnesty programme", "four hundred thousand euros")
LEAKY_THOUGHT = (f"The deploy token is {GITHUB_TOKEN} and the owner is {EMAIL}. The vault word is {CANARY}. "
                 f"My instructions say: {SYSTEM} The file says: {PRIVATE_DOC}")
QUESTION = [ChatMessage(role="system", content=SYSTEM), ChatMessage(role="user", content="How is my account?")]


def reply(thought: str = "", text: str = LOOK_ALIKES, calls: Sequence[ToolCallBlock] = (),
          **extra: Any) -> ChatMessage:
    blocks: list[Any] = [ThinkingBlock(content=thought)] if thought else []
    return ChatMessage(role=MessageRole.ASSISTANT, blocks=[*blocks, TextBlock(text=text), *calls],
                       additional_kwargs=extra)


def pieces(text: str, size: int = 7) -> list[str]:
    return [text[i:i + size] for i in range(0, len(text), size)]


class ScriptedLLM(FunctionCallingLLM):
    """A hosted reasoning LLM with canned replies, one per call (the last repeats)."""

    replies: list[ChatMessage] = Field(default_factory=list)
    _seen: list[list[ChatMessage]] = PrivateAttr(default_factory=list)
    _streamed: int = PrivateAttr(default=0)

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="scripted-reasoner", is_chat_model=True, is_function_calling_model=True)

    @property
    def calls(self) -> int:
        return len(self._seen)

    def _next(self, messages: Sequence[ChatMessage]) -> ChatMessage:
        self._seen.append(list(messages))
        return self.replies[min(len(self._seen), len(self.replies)) - 1]

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        message = self._next(messages)
        return ChatResponse(message=message, raw={"provider": message.model_dump()},
                            additional_kwargs={"prompt_tokens": 11, "completion_tokens": 7})

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> Any:
        message = self._next(messages)
        thought = "".join(b.content or "" for b in message.blocks if isinstance(b, ThinkingBlock))
        text = message.content or ""

        def chunks() -> Any:
            shown_thought, shown_text = "", ""
            for piece in pieces(thought):
                shown_thought += piece
                self._streamed += 1
                yield ChatResponse(message=reply(shown_thought, ""), delta="",
                                   additional_kwargs={"thinking_delta": piece})
            for piece in pieces(text):
                shown_text += piece
                self._streamed += 1
                yield ChatResponse(message=reply(shown_thought, shown_text), delta=piece)
            yield ChatResponse(message=message, delta="", additional_kwargs={"prompt_tokens": 11})

        return chunks()

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        message = self._next([ChatMessage(role="user", content=prompt)])
        thought = "".join(b.content or "" for b in message.blocks if isinstance(b, ThinkingBlock))
        return CompletionResponse(text=message.content or "", raw={"provider": thought},
                                  additional_kwargs={"reasoning_content": thought} if thought else {})

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        response = self.complete(prompt)

        def chunks() -> Any:
            text = ""
            for piece in pieces(response.text):
                text += piece
                yield CompletionResponse(text=text, delta=piece, additional_kwargs=response.additional_kwargs)

        return chunks()

    async def achat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        return self.chat(messages, **kwargs)

    async def astream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> Any:
        chunks = self.stream_chat(messages, **kwargs)

        async def gen() -> Any:
            for chunk in chunks:
                yield chunk

        return gen()

    async def acomplete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return self.complete(prompt, formatted, **kwargs)

    async def astream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        chunks = self.stream_complete(prompt, formatted, **kwargs)

        async def gen() -> Any:
            for chunk in chunks:
                yield chunk

        return gen()

    def _prepare_chat_with_tools(self, tools: Sequence[Any], user_msg: Any = None,
                                 chat_history: list[ChatMessage] | None = None, **kwargs: Any) -> dict[str, Any]:
        messages = [*(chat_history or []), *([ChatMessage(role="user", content=user_msg)] if user_msg else [])]
        return {"messages": messages, "tools": [t.metadata.to_openai_tool() for t in tools]}

    def get_tool_calls_from_response(self, response: ChatResponse, error_on_no_tool_call: bool = True,
                                     **kwargs: Any) -> list[ToolSelection]:
        blocks = [b for b in response.message.blocks if isinstance(b, ToolCallBlock)]
        return [ToolSelection(tool_id=b.tool_call_id or "", tool_name=b.tool_name,
                              tool_kwargs=json.loads(b.tool_kwargs) if isinstance(b.tool_kwargs, str)
                              else b.tool_kwargs) for b in blocks]


def guarded(*replies: ChatMessage, **options: Any) -> tuple[GuardedLLM, ScriptedLLM]:
    fake = ScriptedLLM(replies=list(replies))
    options = {"canaries": [CANARY], "private_context": [PRIVATE_DOC], **options}
    return GuardedLLM(llm=fake, **options), fake


def thought_of(message: ChatMessage) -> str:
    return "".join(b.content or "" for b in message.blocks if isinstance(b, ThinkingBlock))


def assert_clean(dumped: str) -> None:
    assert not [value for value in RAW_VALUES if value in dumped]


def test_defaults_redact_every_leak_in_the_thinking_and_leave_look_alikes_alone():
    llm, _ = guarded(reply(LEAKY_THOUGHT), canaries=[CANARY], private_context=[PRIVATE_DOC])
    response = llm.chat(QUESTION)
    thought = thought_of(response.message)
    for placeholder in ("[REDACTED:secret/github_token]", "[REDACTED:pii/email]", "[REDACTED:private_context/canary]",
                        "[REDACTED:system_prompt/system_prompt]", "[REDACTED:private_context/private_context]"):
        assert placeholder in thought
    assert response.message.content == LOOK_ALIKES  # a SHA, a version, a date and an order number pass
    assert response.raw is None  # the provider's payload held the raw values
    assert_clean(response.model_dump_json())
    assert response.additional_kwargs["selfguard"]["leakage"]["action"] == "redact"
    assert response.additional_kwargs["prompt_tokens"] == 11


def test_guarded_llm_alone_redacts_with_safe_defaults():
    llm = GuardedLLM(llm=ScriptedLLM(replies=[reply(f"token {GITHUB_TOKEN}", f"mail {EMAIL}")]))
    response = llm.chat(QUESTION)
    assert thought_of(response.message) == "token [REDACTED:secret/github_token]"
    assert response.message.content == "mail [REDACTED:pii/email]"
    assert llm.metadata.is_function_calling_model and llm.metadata.model_name == "scripted-reasoner"


def test_log_policy_passes_the_reply_untouched_and_records_the_findings(tmp_path):
    message = reply(LEAKY_THOUGHT)
    llm, _ = guarded(message, leak_policy="log", audit=tmp_path / "audit.jsonl")
    response = llm.chat(QUESTION)
    assert response.message == message and response.raw is not None
    [record] = read_audit_log(tmp_path / "audit.jsonl")
    assert record.action == "log" and {f.kind for f in record.findings} == {"secret", "pii", "system_prompt",
                                                                           "private_context"}
    assert_clean((tmp_path / "audit.jsonl").read_text(encoding="utf-8"))


def test_block_with_refusal_replaces_the_reply():
    llm, _ = guarded(reply(LEAKY_THOUGHT), leak_policy={"secret": "block", "block_with": "refusal"})
    response = llm.chat(QUESTION)
    refusal = llm.guard.policy.refusal_text
    assert response.message.content == refusal and response.message.additional_kwargs == {"refusal": refusal}
    assert [type(b) for b in response.message.blocks] == [TextBlock]
    assert response.additional_kwargs["selfguard"]["leak_blocked"] is True
    assert_clean(response.model_dump_json())


def test_block_raising_writes_the_record_first(tmp_path):
    llm, _ = guarded(reply(LEAKY_THOUGHT), leak_policy="block", audit=tmp_path / "audit.jsonl")
    with pytest.raises(LeakBlockedError) as caught:
        llm.chat(QUESTION)
    assert caught.value.findings and all(GITHUB_TOKEN not in f.excerpt for f in caught.value.findings)
    [record] = read_audit_log(tmp_path / "audit.jsonl")
    assert record.action == "block"


def test_regenerate_asks_again_and_returns_the_clean_try(tmp_path):
    llm, fake = guarded(reply(LEAKY_THOUGHT), reply("Let me answer without details."), leak_policy="regenerate",
                        audit=tmp_path / "audit.jsonl")
    response = llm.chat(QUESTION)
    assert fake.calls == 2 and thought_of(response.message) == "Let me answer without details."
    assert response.raw is not None  # the clean try is shown as it came
    [record] = read_audit_log(tmp_path / "audit.jsonl")
    assert record.action == "regenerate" and [a.action for a in record.attempts] == ["regenerate", "none"]


def test_regenerate_out_of_tries_blocks():
    llm, fake = guarded(reply(LEAKY_THOUGHT), leak_policy={"secret": "regenerate", "max_regenerations": 1,
                                                           "block_with": "refusal", "pii": "log",
                                                           "system_prompt": "log", "private_context": "log"})
    response = llm.chat(QUESTION)
    assert fake.calls == 2 and response.message.content == llm.guard.policy.refusal_text


@pytest.mark.parametrize(("strip", "thought", "kept"), [
    ("on_leak", LEAKY_THOUGHT, False), ("on_leak", "Nothing private here.", True),
    ("always", "Nothing private here.", False), ("never", "Nothing private here.", True)])
def test_strip_reasoning(strip, thought, kept):
    llm, _ = guarded(reply(thought), strip_reasoning=strip)
    response = llm.chat(QUESTION)
    assert any(isinstance(b, ThinkingBlock) for b in response.message.blocks) == kept
    assert response.additional_kwargs["selfguard"]["reasoning_stripped"] == (not kept)
    assert response.message.content == LOOK_ALIKES


def test_tool_arguments_are_redacted_in_place_keeping_their_shape():
    calls = [ToolCallBlock(tool_call_id="a", tool_name="lookup", tool_kwargs={"query": f"owner {EMAIL}", "n": 3,
                                                                              "ref": "v2.14.3"}),
             ToolCallBlock(tool_call_id="b", tool_name="lookup", tool_kwargs=json.dumps({"tags": [GITHUB_TOKEN, "x"]}))]
    openai_call = {"id": "c", "type": "function",
                   "function": {"name": "send", "arguments": json.dumps({"to": EMAIL, "order": "#48213-77"})}}
    llm, _ = guarded(reply("", "Looking it up.", calls, tool_calls=[openai_call]))
    message = llm.chat(QUESTION).message
    first, second = [b for b in message.blocks if isinstance(b, ToolCallBlock)]
    assert first.tool_kwargs == {"query": "owner [REDACTED:pii/email]", "n": 3, "ref": "v2.14.3"}
    assert isinstance(second.tool_kwargs, str)
    assert json.loads(second.tool_kwargs) == {"tags": ["[REDACTED:secret/github_token]", "x"]}
    [listed] = message.additional_kwargs["tool_calls"]
    assert json.loads(listed["function"]["arguments"]) == {"to": "[REDACTED:pii/email]", "order": "#48213-77"}
    assert listed["id"] == "c" and listed["function"]["name"] == "send"


def test_a_completion_is_checked_in_its_text_and_its_reasoning_field():
    fake = ScriptedLLM(replies=[reply(LEAKY_THOUGHT, f"Write to {EMAIL}.")], system_prompt=SYSTEM)
    llm = GuardedLLM(llm=fake, canaries=[CANARY], private_context=[PRIVATE_DOC])
    response = llm.complete("Who owns the repo?")  # no system message: the LLM's own system prompt is protected
    assert response.text == "Write to [REDACTED:pii/email]."
    assert "[REDACTED:secret/github_token]" in response.additional_kwargs["reasoning_content"]
    assert response.raw is None
    assert_clean(response.model_dump_json())


async def test_async_calls_are_guarded_like_the_sync_ones():
    llm, fake = guarded(reply(LEAKY_THOUGHT, f"Write to {EMAIL}."), leak_policy="regenerate")
    fake.replies.append(reply("Clean thought.", "Clean answer."))
    chat = await llm.achat(QUESTION)
    assert fake.calls == 2 and chat.message.content == "Clean answer."
    completion = await GuardedLLM(llm=ScriptedLLM(replies=[reply("", f"Write to {EMAIL}.")])).acomplete("Who?")
    assert completion.text == "Write to [REDACTED:pii/email]."


def assert_stream_is_checked(chunks: list[ChatResponse]) -> None:
    deltas = [c.delta or "" for c in chunks]
    thinking = [c.additional_kwargs.get("thinking_delta") or "" for c in chunks]
    for chunk in chunks:
        assert_clean(chunk.model_dump_json())
    final = chunks[-1].message
    assert "".join(deltas) == final.content == f"Write to [REDACTED:pii/email]. {LOOK_ALIKES}"
    assert "".join(thinking) == thought_of(final) and "[REDACTED:secret/github_token]" in thought_of(final)


def test_a_redacting_stream_never_yields_a_raw_value(tmp_path):
    llm, _ = guarded(reply(LEAKY_THOUGHT, f"Write to {EMAIL}. {LOOK_ALIKES}"), audit=tmp_path / "audit.jsonl")
    assert_stream_is_checked(list(llm.stream_chat(QUESTION)))
    [record] = read_audit_log(tmp_path / "audit.jsonl")
    assert record.action == "redact"


async def test_an_async_redacting_stream_never_yields_a_raw_value():
    llm, _ = guarded(reply(LEAKY_THOUGHT, f"Write to {EMAIL}. {LOOK_ALIKES}"))
    assert_stream_is_checked([chunk async for chunk in await llm.astream_chat(QUESTION)])


async def test_completion_streams_are_held_back_and_checked():
    llm, _ = guarded(reply(LEAKY_THOUGHT, f"Write to {EMAIL}."))
    for chunks in (list(llm.stream_complete("Who?")), [c async for c in await llm.astream_complete("Who?")]):
        assert "".join(c.delta or "" for c in chunks) == chunks[-1].text == "Write to [REDACTED:pii/email]."
        assert all(EMAIL not in c.model_dump_json() and GITHUB_TOKEN not in c.model_dump_json() for c in chunks)


def test_a_log_only_stream_is_live_and_recorded_at_its_end(tmp_path):
    llm, fake = guarded(reply(LEAKY_THOUGHT, f"Write to {EMAIL}."), leak_policy="log", audit=tmp_path / "a.jsonl")
    stream = llm.stream_chat(QUESTION)
    first = next(stream)
    assert fake._streamed == 1 and first.additional_kwargs["thinking_delta"] == LEAKY_THOUGHT[:7]
    rest = list(stream)
    assert rest[-1].message.content == f"Write to {EMAIL}."  # log: shown as written
    [record] = read_audit_log(tmp_path / "a.jsonl")
    assert record.action == "log" and record.findings
    assert_clean((tmp_path / "a.jsonl").read_text(encoding="utf-8"))


def test_the_audit_record_is_whole_and_holds_no_raw_value(tmp_path):
    llm, _ = guarded(reply(LEAKY_THOUGHT, f"Write to {EMAIL}."), audit=tmp_path / "audit.jsonl")
    llm.chat(QUESTION)
    llm.complete("Say hi.")
    chat, completion = read_audit_log(tmp_path / "audit.jsonl")
    assert (chat.model, chat.mode, chat.input_tokens, chat.output_tokens) == ("scripted-reasoner", "external", 11, 7)
    assert chat.action == "redact" and chat.prompt_hash and chat.latency_seconds >= 0
    assert {(f.kind, f.where) for f in chat.findings} >= {("secret", "reasoning"), ("pii", "answer")}
    assert all(f.redacted for f in chat.findings)
    assert chat.context["llama_index_span_id"].startswith("GuardedLLM.chat-")
    assert completion.context["llama_index_span_id"].startswith("GuardedLLM.complete-")
    assert_clean((tmp_path / "audit.jsonl").read_text(encoding="utf-8"))


def test_attached_audit_handlers_get_the_record_and_the_leak_event(tmp_path):
    from llama_index.core.instrumentation import get_dispatcher

    root = get_dispatcher()
    handler = SelfGuardAuditEventHandler(tmp_path / "handler.jsonl").attach()
    try:
        llm, _ = guarded(reply(LEAKY_THOUGHT))
        llm.chat(QUESTION)
    finally:
        root.event_handlers.remove(handler)
        root.span_handlers.remove(handler._spans)
    [record] = read_audit_log(tmp_path / "handler.jsonl")
    [event] = [e for e in handler.events if isinstance(e, SelfGuardLeakEvent)]
    assert event.span_id == record.context["llama_index_span_id"]
    assert record.context["llama_index_root_span_id"] == record.context["llama_index_span_id"]
    assert_clean(event.model_dump_json())


received: list[str] = []


def lookup_account(query: str) -> str:
    """Look up a customer's account."""
    received.append(query)
    return "Account 77 is in good standing."


@pytest.mark.parametrize("streaming", [True, False])
async def test_a_function_agent_runs_the_tool_with_redacted_arguments(tmp_path, streaming):
    from llama_index.core.agent.workflow import FunctionAgent

    received.clear()
    call = ToolCallBlock(tool_call_id="call_1", tool_name="lookup_account",
                         tool_kwargs={"query": f"owner {EMAIL} token {GITHUB_TOKEN}"})
    llm, fake = guarded(reply("I will look the account up.", "", [call]), reply("", "Your account is fine."),
                        audit=tmp_path / "audit.jsonl")
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(lookup_account)], llm=llm, system_prompt=SYSTEM,
                          streaming=streaming)
    result = await agent.run("How is my account?")
    assert received == ["owner [REDACTED:pii/email] token [REDACTED:secret/github_token]"]
    assert [c.tool_kwargs for c in result.tool_calls] == [{"query": received[0]}]
    assert str(result) == "Your account is fine." and fake.calls == 2
    assert [r.action for r in read_audit_log(tmp_path / "audit.jsonl")] == ["redact", "none"]


async def test_a_streaming_function_agent_shows_only_checked_text():
    from llama_index.core.agent.workflow import AgentStream, FunctionAgent

    llm, _ = guarded(reply(LEAKY_THOUGHT, f"Write to {EMAIL}."))
    agent = FunctionAgent(tools=[FunctionTool.from_defaults(lookup_account)], llm=llm, streaming=True)
    handler = agent.run("How is my account?")
    streamed = [event async for event in handler.stream_events() if isinstance(event, AgentStream)]
    result = await handler
    assert "".join(e.delta for e in streamed) == str(result) == "Write to [REDACTED:pii/email]."
    assert all(GITHUB_TOKEN not in (e.thinking_delta or "") for e in streamed)


def test_nodes_a_postprocessor_marked_private_are_protected_in_a_query():
    from llama_index.core.query_engine import RetrieverQueryEngine
    from llama_index.core.retrievers import BaseRetriever
    from llama_index.core.schema import NodeWithScore, TextNode

    class FixedRetriever(BaseRetriever):
        def _retrieve(self, query_bundle: Any) -> list[NodeWithScore]:
            return [NodeWithScore(node=TextNode(text=PRIVATE_DOC), score=1.0)]

    llm, _ = guarded(reply("", f"Per the file: {PRIVATE_DOC}"), private_context=[])
    engine = RetrieverQueryEngine.from_args(FixedRetriever(), llm=llm,
                                            node_postprocessors=[PrivateContextPostprocessor()])
    try:
        answer = str(engine.query("What does the settlement pay?"))
    finally:
        clear_private_context()
    assert "[REDACTED:private_context/private_context]" in answer and "four hundred thousand" not in answer
    assert llm.chat(QUESTION).message.content == f"Per the file: {PRIVATE_DOC}"  # cleared: not protected now


class PlainLLM(CustomLLM):
    """A completion-only LLM (no function calling)."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata()

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=f"Mail {EMAIL}")

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Any:
        yield CompletionResponse(text=f"Mail {EMAIL}", delta=f"Mail {EMAIL}")


def test_any_llm_is_guarded_but_only_a_function_calling_one_calls_tools():
    llm = GuardedLLM(llm=PlainLLM())
    assert llm.complete("Hi").text == "Mail [REDACTED:pii/email]"
    assert llm.chat([ChatMessage(role="user", content="Hi")]).message.content == "Mail [REDACTED:pii/email]"
    assert not llm.metadata.is_function_calling_model
    with pytest.raises(InvalidSettingError, match="not a FunctionCallingLLM"):
        llm.chat_with_tools([FunctionTool.from_defaults(lookup_account)], user_msg="Hi")


@pytest.mark.parametrize("options", [{"strip_reasoning": "sometimes"}, {"canaries": "ORCHID"},
                                     {"leak_policy": "shout"}, {"leak_checks": ["secrets"]}])
def test_bad_options_are_refused_at_construction(options):
    with pytest.raises(InvalidSettingError):
        GuardedLLM(llm=ScriptedLLM(), **options)
