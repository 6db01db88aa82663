"""SelfGuardMiddleware in `create_agent`, on fake hosted reasoning models (every provider shape)."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("langchain")

from langchain.agents import create_agent
from langchain.agents.middleware import ModelRefusalMiddleware
from langchain_core.exceptions import ModelRefusalError
from langchain_core.messages import AIMessage, ToolMessage
from langchain_core.tools import tool
from langgraph.checkpoint.memory import InMemorySaver

from selfguard_guardrails.audit import read_audit_log
from selfguard_guardrails.errors import InvalidSettingError
from selfguard_guardrails.integrations.langchain import SelfGuardAuditHandler, SelfGuardMiddleware
from selfguard_guardrails.integrations.langchain.message_parts import reasoning_texts
from selfguard_guardrails.leakage.policy import LeakBlockedError
from tests.fake_chat_models import GITHUB_TOKEN, PROVIDER_SHAPES, ScriptedChatModel, deepseek_reply

EMAIL = "jane.doe@gmail.com"
CANARY = "ORCHID-7781-heron"
SYSTEM = "You are the support agent of Fernhill Bank. Never tell customers about the overdraft amnesty programme."
LOOK_ALIKES = ("Commit 3f9a2c1d7e4b5a6f8091a2b3c4d5e6f7a8b9c0d1 fixed it in v2.14.3 on 2026-11-30; "
               "order #48213-77 shipped, total $1,249.99.")
QUESTION = {"messages": [{"role": "user", "content": "Can you help me with my account?"}]}

captured: list[str] = []


@tool
def lookup_account(query: str) -> str:
    """Look up a customer's account."""
    captured.append(query)
    return "Account 77 is in good standing."


@tool
def read_contract(name: str) -> str:
    """Read a private contract."""
    return "The settlement pays Dana Whitfield four hundred thousand euros over three years in quarterly parts."


def agent(replies: list[AIMessage], tools=(), **options):
    model = ScriptedChatModel(replies=replies)
    middleware = SelfGuardMiddleware(**options)
    return create_agent(model=model, tools=list(tools), system_prompt=SYSTEM, middleware=[middleware]), model


def audit_text(path) -> str:
    return path.read_text(encoding="utf-8")


@pytest.mark.parametrize("shape", sorted(PROVIDER_SHAPES))
def test_a_leak_in_the_reasoning_is_redacted_wherever_the_provider_puts_it(shape, tmp_path):
    reply = PROVIDER_SHAPES[shape](f"The deploy token is {GITHUB_TOKEN}, do not say it.", "Done, all set.")
    graph, _ = agent([reply], audit=tmp_path / "audit.jsonl")
    final = graph.invoke(QUESTION)["messages"][-1]
    dumped = final.model_dump_json()
    assert GITHUB_TOKEN not in dumped
    assert "[REDACTED:secret/github_token]" in dumped
    assert final.text == "Done, all set."
    [record] = read_audit_log(tmp_path / "audit.jsonl")
    assert [(f.kind, f.where, f.redacted) for f in record.findings] == [("secret", "reasoning", True)]
    assert record.action == "redact" and record.mode == "external" and record.model == "ScriptedChatModel"
    assert GITHUB_TOKEN not in audit_text(tmp_path / "audit.jsonl")


def test_tool_arguments_are_redacted_before_the_tool_runs(tmp_path):
    captured.clear()
    call = deepseek_reply("I will search with the customer's e-mail.", "", tool_calls=[
        {"name": "lookup_account", "args": {"query": f"owner {EMAIL} token {GITHUB_TOKEN}"}, "id": "call_1"}])
    graph, _ = agent([call, AIMessage("Your account is fine.")], tools=[lookup_account],
                     audit=tmp_path / "audit.jsonl")
    messages = graph.invoke(QUESTION)["messages"]
    assert captured == ["owner [REDACTED:pii/email] token [REDACTED:secret/github_token]"]
    assert messages[1].tool_calls[0]["args"] == {"query": captured[0]}
    first, second = read_audit_log(tmp_path / "audit.jsonl")
    assert sorted((f.kind, f.where) for f in first.findings) == [("pii", "tool_arguments"),
                                                                  ("secret", "tool_arguments")]
    assert second.findings == []
    text = audit_text(tmp_path / "audit.jsonl")
    assert GITHUB_TOKEN not in text and EMAIL not in text


@pytest.mark.parametrize("shape", sorted(PROVIDER_SHAPES))
def test_look_alikes_pass_untouched(shape, tmp_path):
    call = PROVIDER_SHAPES[shape](LOOK_ALIKES, LOOK_ALIKES, tool_calls=[
        {"name": "lookup_account", "args": {"query": LOOK_ALIKES}, "id": "call_1"}])
    graph, _ = agent([call, AIMessage(LOOK_ALIKES)], tools=[lookup_account], audit=tmp_path / "audit.jsonl")
    messages = graph.invoke(QUESTION)["messages"]
    assert messages[1].tool_calls[0]["args"] == {"query": LOOK_ALIKES}
    assert messages[1].text == LOOK_ALIKES and messages[-1].text == LOOK_ALIKES
    assert all(r.findings == [] and r.action == "none" for r in read_audit_log(tmp_path / "audit.jsonl"))


def test_a_copy_of_the_system_message_and_a_canary_are_caught():
    copied = f"My instructions say: {SYSTEM} Also the code is {CANARY}."
    graph, _ = agent([deepseek_reply(copied, "I can help with your account.")], canaries=[CANARY])
    final = graph.invoke(QUESTION)["messages"][-1]
    reasoning = final.additional_kwargs["reasoning_content"]
    assert "overdraft amnesty" not in reasoning and CANARY not in reasoning
    assert "[REDACTED:system_prompt/system_prompt]" in reasoning
    assert "[REDACTED:private_context/canary]" in reasoning
    assert final.response_metadata["selfguard"]["leakage"]["by_kind"] == {"system_prompt": 1, "private_context": 1}


def test_results_of_private_tools_and_documents_in_state_are_protected():
    contract = "The settlement pays Dana Whitfield four hundred thousand euros over three years in quarterly parts."
    memo = "Project Larkspur moves the Leeds warehouse to Bradford in March and cuts the night shift."
    call = AIMessage("", tool_calls=[{"name": "read_contract", "args": {"name": "whitfield"}, "id": "c1"}])
    answer = deepseek_reply(f"The memo says: {memo}", f"Sure. {contract}")
    graph, _ = agent([call, answer], tools=[read_contract], private_tools=["read_contract"],
                     private_state_key="documents")
    final = graph.invoke({**QUESTION, "documents": [memo]})["messages"][-1]
    assert "Dana Whitfield" not in final.text and "Larkspur" not in final.additional_kwargs["reasoning_content"]
    assert final.response_metadata["selfguard"]["leakage"]["by_kind"] == {"private_context": 2}


def test_a_tool_not_named_private_is_not_protected():
    contract = "The settlement pays Dana Whitfield four hundred thousand euros over three years in quarterly parts."
    call = AIMessage("", tool_calls=[{"name": "read_contract", "args": {"name": "whitfield"}, "id": "c1"}])
    graph, _ = agent([call, AIMessage(contract)], tools=[read_contract])
    assert graph.invoke(QUESTION)["messages"][-1].text == contract


def test_log_records_and_changes_nothing(tmp_path):
    reply = deepseek_reply(f"token {GITHUB_TOKEN}", f"mail {EMAIL}")
    graph, _ = agent([reply], leak_policy="log", audit=tmp_path / "audit.jsonl")
    final = graph.invoke(QUESTION)["messages"][-1]
    assert final.text == f"mail {EMAIL}" and GITHUB_TOKEN in final.additional_kwargs["reasoning_content"]
    [record] = read_audit_log(tmp_path / "audit.jsonl")
    assert record.action == "log" and len(record.findings) == 2
    assert GITHUB_TOKEN not in audit_text(tmp_path / "audit.jsonl")


def test_block_with_a_refusal_ends_the_run_with_a_standard_refusal_block(tmp_path):
    call = deepseek_reply("", "", tool_calls=[
        {"name": "lookup_account", "args": {"query": GITHUB_TOKEN}, "id": "c1"}])
    graph, model = agent([call, AIMessage("never reached")], tools=[lookup_account],
                         leak_policy={"secret": "block", "block_with": "refusal"}, audit=tmp_path / "audit.jsonl")
    messages = graph.invoke(QUESTION)["messages"]
    final = messages[-1]
    assert len(messages) == 2 and not final.tool_calls  # no tool ran, the run ended
    assert [b["type"] for b in final.content_blocks] == ["text", "refusal"]
    assert final.text == "I can't share that: it would reveal confidential information."
    assert len(model.seen) == 1
    [record] = read_audit_log(tmp_path / "audit.jsonl")
    assert record.action == "block"


def test_a_blocked_reply_raises_model_refusal_error_under_model_refusal_middleware():
    model = ScriptedChatModel(replies=[deepseek_reply(GITHUB_TOKEN, "ok")])
    guard = SelfGuardMiddleware(leak_policy={"secret": "block", "block_with": "refusal"})
    graph = create_agent(model=model, tools=[], middleware=[ModelRefusalMiddleware(), guard])
    with pytest.raises(ModelRefusalError):
        graph.invoke(QUESTION)


def test_block_raises_after_writing_the_audit_record(tmp_path):
    graph, _ = agent([deepseek_reply(f"token {GITHUB_TOKEN}", "ok")], leak_policy="block",
                     audit=tmp_path / "audit.jsonl")
    with pytest.raises(LeakBlockedError) as raised:
        graph.invoke(QUESTION)
    assert [f.kind for f in raised.value.findings] == ["secret"]
    [record] = read_audit_log(tmp_path / "audit.jsonl")
    assert record.action == "block"


def test_regenerate_asks_the_model_again_and_keeps_the_clean_reply(tmp_path):
    graph, model = agent([deepseek_reply(f"token {GITHUB_TOKEN}", "first"), AIMessage("second, clean")],
                         leak_policy="regenerate", audit=tmp_path / "audit.jsonl")
    final = graph.invoke(QUESTION)["messages"][-1]
    assert final.text == "second, clean" and len(model.seen) == 2
    [record] = read_audit_log(tmp_path / "audit.jsonl")
    assert record.action == "regenerate"
    assert [(a.attempt, a.action) for a in record.attempts] == [(1, "regenerate"), (2, "none")]


def test_regenerate_out_of_tries_blocks():
    graph, model = agent([deepseek_reply(f"token {GITHUB_TOKEN}", "leaky")],
                         leak_policy={"secret": "regenerate", "max_regenerations": 2, "block_with": "refusal"})
    final = graph.invoke(QUESTION)["messages"][-1]
    assert len(model.seen) == 3 and final.content_blocks[-1]["type"] == "refusal"


@pytest.mark.parametrize(("strip", "leaky", "kept"), [("always", False, False), ("on_leak", True, False),
                                                       ("on_leak", False, True), ("never", True, True)])
def test_strip_reasoning(strip, leaky, kept):
    trace = f"token {GITHUB_TOKEN}" if leaky else "Thinking about accounts."
    for shape in PROVIDER_SHAPES.values():
        graph, _ = agent([shape(trace, "Answer.")], strip_reasoning=strip)
        final = graph.invoke(QUESTION)["messages"][-1]
        assert bool(reasoning_texts(final)) is kept, (shape.__name__, final)
        assert final.text == "Answer." and GITHUB_TOKEN not in final.model_dump_json()


async def test_async_agents_are_guarded_the_same_way(tmp_path):
    captured.clear()
    call = deepseek_reply(f"token {GITHUB_TOKEN}", "", tool_calls=[
        {"name": "lookup_account", "args": {"query": EMAIL}, "id": "c1"}])
    graph, _ = agent([call, AIMessage("fine")], tools=[lookup_account], audit=tmp_path / "audit.jsonl")
    messages = (await graph.ainvoke(QUESTION))["messages"]
    assert captured == ["[REDACTED:pii/email]"]
    assert GITHUB_TOKEN not in messages[1].additional_kwargs["reasoning_content"]
    assert len(read_audit_log(tmp_path / "audit.jsonl")) == 2


@pytest.mark.parametrize(("policy", "action", "shown"), [
    ("log", "log", GITHUB_TOKEN), ("redact", "redact", "[REDACTED:secret/github_token]"),
    ({"secret": "block", "block_with": "refusal"}, "block", "I can't share that"),
    ({"secret": "regenerate", "block_with": "refusal"}, "regenerate", "clean answer")])
async def test_each_policy_acts_the_same_in_async_agents(policy, action, shown, tmp_path):
    graph, _ = agent([AIMessage(f"key {GITHUB_TOKEN}"), AIMessage("clean answer")], leak_policy=policy,
                     audit=tmp_path / "audit.jsonl")
    final = (await graph.ainvoke(QUESTION))["messages"][-1]
    assert shown in final.text
    [record] = read_audit_log(tmp_path / "audit.jsonl")
    assert record.action == action and GITHUB_TOKEN not in audit_text(tmp_path / "audit.jsonl")


async def test_an_async_block_raises_after_writing_the_audit_record(tmp_path):
    graph, _ = agent([deepseek_reply(f"token {GITHUB_TOKEN}", "ok")], leak_policy="block",
                     audit=tmp_path / "audit.jsonl")
    with pytest.raises(LeakBlockedError):
        await graph.ainvoke(QUESTION)
    assert [r.action for r in read_audit_log(tmp_path / "audit.jsonl")] == ["block"]


def test_a_streamed_agent_shows_a_redacted_reply_only_once_it_is_checked():
    reply = AIMessage(f"Here is the key {GITHUB_TOKEN} for you, and more words after it.")
    graph, _ = agent([reply])
    shown = "".join(chunk.text for chunk, _ in graph.stream(QUESTION, stream_mode="messages")
                    if isinstance(chunk, AIMessage))
    assert GITHUB_TOKEN not in shown and "[REDACTED:secret/github_token]" in shown


def test_a_streamed_agent_under_a_log_policy_streams_token_by_token():
    reply = AIMessage("one two three four five")
    graph, _ = agent([reply], leak_policy="log")
    chunks = [chunk.text for chunk, _ in graph.stream(QUESTION, stream_mode="messages")
              if isinstance(chunk, AIMessage) and chunk.text]
    assert len(chunks) >= 5 and "".join(chunks[:5]) == "one two three four five"


def test_audit_records_carry_the_thread_and_reach_audit_handlers(tmp_path):
    handler = SelfGuardAuditHandler(tmp_path / "handler.jsonl")
    model = ScriptedChatModel(replies=[deepseek_reply(f"token {GITHUB_TOKEN}", "ok")])
    graph = create_agent(model=model, tools=[], middleware=[SelfGuardMiddleware(audit=tmp_path / "audit.jsonl")],
                         checkpointer=InMemorySaver())
    graph.invoke(QUESTION, {"configurable": {"thread_id": "thread-42"}, "callbacks": [handler]})
    [record] = read_audit_log(tmp_path / "audit.jsonl")
    [from_handler] = read_audit_log(tmp_path / "handler.jsonl")
    assert record.id == from_handler.id
    assert record.context["thread_id"] == "thread-42" and record.context["langchain_run_id"]
    raw = json.loads(audit_text(tmp_path / "audit.jsonl"))
    assert set(raw) >= {"prompt_hash", "findings", "action", "latency_seconds", "context"}
    assert "Can you help" not in audit_text(tmp_path / "audit.jsonl")  # the prompt itself is never logged


@pytest.mark.parametrize(("options", "message"), [
    ({"engine_options": {"threads": 1}}, "only with route='guarded'"),
    ({"route": "fast"}, "route must be"),
    ({"on_flagged": "warn", "route": "guarded"}, "on_flagged must be"),
    ({"strip_reasoning": "sometimes"}, "strip_reasoning must be"),
    ({"private_tools": "read_contract"}, "private_tools must be a list"),
    ({"leak_policy": {"secret": "shout"}}, "Unknown policy action"),
    ({"leak_checks": ["passwords"]}, "Unknown leak kind"),
])
def test_bad_options_are_refused_by_name(options, message):
    with pytest.raises(InvalidSettingError, match=message):
        SelfGuardMiddleware(**options)


def test_tool_messages_keep_their_content():
    call = AIMessage("", tool_calls=[{"name": "lookup_account", "args": {"query": "x"}, "id": "c1"}])
    graph, _ = agent([call, AIMessage("done")], tools=[lookup_account])
    messages = graph.invoke(QUESTION)["messages"]
    assert isinstance(messages[2], ToolMessage) and messages[2].text == "Account 77 is in good standing."
