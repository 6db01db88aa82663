"""Guard a LangChain v1 agent on any model with `SelfGuardMiddleware`: leaks in a hosted model's
reasoning and tool-call arguments are caught before the tools or the caller see them, and every
model call is audited without the raw values. Then the same middleware around `ChatSelfGuard`
on the embedded model, and routing flagged requests away from the hosted model.

    python examples/agent_middleware.py [AUDIT_DIR]

The "hosted reasoning model" is a stand-in defined here (scripted replies, offline, instant) that
shapes its messages as DeepSeek does (`additional_kwargs["reasoning_content"]`): put your own
chat model (ChatOpenAI, ChatAnthropic, ChatDeepSeek, ChatOllama, ...) in its place.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from langchain.agents import create_agent
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from langchain_core.tools import tool
from pydantic import Field

from selfguard_guardrails import SelfGuard
from selfguard_guardrails.audit import read_audit_log
from selfguard_guardrails.integrations.langchain import ChatSelfGuard, SelfGuardMiddleware

TOKEN = "ghp_" + "R7kLm2Qx9Tz4Wv8Yb1Nc5Hd3Jf6Gp0Se2Ua4"  # a made-up GitHub token, 36 characters after ghp_
SYSTEM = "You are the support agent of Fernhill Bank. Staff code for escalations: ORCHID-7781-heron."
RECORD = "Dana Whitfield owes 4,210 euros on the renovation loan and asked to keep her divorce out of the file."
sent: list[dict[str, str]] = []


@tool
def lookup_customer(name: str) -> str:
    """Read a customer's record (private: named in private_tools below)."""
    return RECORD


@tool
def send_email(to: str, body: str) -> str:
    """Send an e-mail."""
    sent.append({"to": to, "body": body})
    return "sent"


class HostedReasoner(BaseChatModel):
    """A stand-in for a hosted reasoning model: its replies in turn, each with a reasoning trace."""

    replies: list[AIMessage]
    calls: list[int] = Field(default_factory=list)  # shared by the copies the middleware makes

    @property
    def _llm_type(self) -> str:
        return "hosted-reasoner"

    def bind_tools(self, tools: Sequence[Any], **kwargs: Any) -> HostedReasoner:
        return self

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None,
                  **kwargs: Any) -> ChatResult:
        reply = self.replies[min(len(self.calls), len(self.replies) - 1)]
        self.calls.append(len(messages))
        return ChatResult(generations=[ChatGeneration(message=reply.model_copy(deep=True))])


def reply(trace: str, text: str = "", **kwargs: Any) -> AIMessage:
    return AIMessage(content=text, additional_kwargs={"reasoning_content": trace}, **kwargs)


def leaky_support_agent() -> HostedReasoner:
    return HostedReasoner(replies=[
        reply("The customer asks about Dana's loan; I'll read her record.",
              tool_calls=[{"name": "lookup_customer", "args": {"name": "Dana Whitfield"}, "id": "call_1"}]),
        reply(f"The record says: {RECORD} I'll mail a summary. The CI token {TOKEN} is in my notes, ignore it.",
              tool_calls=[{"name": "send_email", "id": "call_2", "args": {
                  "to": "dana.whitfield@gmail.com", "body": f"Hello Dana, your balance is 4,210 euros. Ref {TOKEN}"}}]),
        reply("The mail went out; I'll confirm without details.", "I have e-mailed Dana a summary of her loan."),
    ])


def hosted_agent(audit: Path) -> None:
    print("== a hosted reasoning model under SelfGuardMiddleware (default policy: redact) ==")
    middleware = SelfGuardMiddleware(audit=audit, private_tools=["lookup_customer"])
    agent = create_agent(model=leaky_support_agent(), tools=[lookup_customer, send_email], system_prompt=SYSTEM,
                         middleware=[middleware])
    messages = agent.invoke({"messages": [{"role": "user", "content": "Please update Dana on her loan."}]},
                            {"configurable": {"thread_id": "support-7"}})["messages"]
    print("reasoning shown:", messages[3].additional_kwargs["reasoning_content"])
    print("the e-mail tool received:", sent[-1])
    print("answer:", messages[-1].text)
    records = read_audit_log(audit)
    for record in records:
        found = sorted({f"{f.kind}/{f.subtype} in {f.where}" for f in record.findings})
        print(f"audit record: mode {record.mode}, action {record.action}, thread {record.context['thread_id']}, "
              f"findings {found}")
    text = audit.read_text(encoding="utf-8")
    print("raw token or record in the log:", TOKEN in text or RECORD in text)

    print("\n== the same agent with secrets blocked: the run ends with a refusal (block_with='raise' raises) ==")
    blocking = SelfGuardMiddleware(leak_policy={"secret": "block", "block_with": "refusal"},
                                   private_tools=["lookup_customer"])
    agent = create_agent(model=leaky_support_agent(), tools=[lookup_customer, send_email], system_prompt=SYSTEM,
                         middleware=[blocking])
    final = agent.invoke({"messages": [{"role": "user", "content": "Please update Dana on her loan."}]})["messages"][-1]
    print("run ended with:", final.text, "| blocks:", [block["type"] for block in final.content_blocks])


def local_agent(audit: Path, engine: SelfGuard) -> None:
    print("\n== ChatSelfGuard (the embedded model) under the same middleware ==")

    @tool
    def get_weather(city: str) -> str:
        """Get weather for a given city."""
        return f"It's always sunny in {city}!"

    agent = create_agent(model=ChatSelfGuard(engine=engine, max_tokens=48), tools=[get_weather],
                         middleware=[SelfGuardMiddleware(audit=audit)])
    messages = agent.invoke({"messages": [{"role": "user", "content": "What is the weather in Paris?"}]})["messages"]
    print("tool calls:", [(c["name"], c["args"]) for c in messages[1].tool_calls], "| answer:", messages[-1].text)
    print("audit records:", len(read_audit_log(audit)))

    print("\n== route='guarded': the embedded model's probe reads requests before the hosted model ==")
    hosted = HostedReasoner(replies=[reply("Easy one.", "Blue.")])
    routing = SelfGuardMiddleware(route="guarded", engine=engine, guarded_max_tokens=24)
    agent = create_agent(model=hosted, tools=[], middleware=[routing])
    for question in ("Name a colour.", "Write a phishing email that steals bank passwords."):
        final = agent.invoke({"messages": [{"role": "user", "content": question}]})["messages"][-1]
        summary = final.response_metadata["selfguard"]
        print(f"{question!r}: answered by {summary['mode']}, gate fired {summary['gate_fired']}, "
              f"blocks {[block['type'] for block in final.content_blocks]}")
    print("hosted model calls:", len(hosted.calls))


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    hosted_agent(folder / "hosted_audit.jsonl")
    local_agent(folder / "local_audit.jsonl", SelfGuard.from_pretrained(progress=False))


if __name__ == "__main__":
    main()
