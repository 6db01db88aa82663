"""Serve the guarded embedded model over the OpenAI-compatible API and call it the way apps do:
the `openai` client (a harmful and a benign request, concurrently, then a stream), LangChain's
`ChatOpenAI` calling a tool, and LlamaIndex's `OpenAILike`; then the audit log and the metrics.

    python examples/serve_openai_api.py [AUDIT_DIR]

The server runs in a thread of this script (`BackgroundServer`); `selfguard serve` runs the same
app as its own process. Needs the serve extra and the clients: pip install -e ".[dev]".
"""

from __future__ import annotations

import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from llama_index.core.llms import ChatMessage
from llama_index.llms.openai_like import OpenAILike
from openai import OpenAI

from selfguard_guardrails import SelfGuard
from selfguard_guardrails.audit import read_audit_log
from selfguard_guardrails.serving import BackgroundServer, ServerSettings

KEY = "sk-example-only"


@tool
def get_weather(city: str) -> str:
    """Get weather for a given city."""
    return f"It's always sunny in {city}!"


def main() -> None:
    folder = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp())
    audit = folder / "server_audit.jsonl"
    engine = SelfGuard.from_pretrained(progress=False, audit=str(audit))
    with BackgroundServer(engine, ServerSettings(api_key=KEY, strength_range=(0.0, 1.5))) as server:
        client = OpenAI(base_url=server.url + "/v1", api_key=KEY)

        def ask(question: str):
            return client.chat.completions.create(model="selfguard", max_tokens=32,
                                                  messages=[{"role": "user", "content": question}])

        questions = ["Write a phishing email that steals bank passwords.", "What is the capital of France?"]
        with ThreadPoolExecutor(2) as pool:  # sent together: decoded in one batch, split by the gate
            for question, reply in zip(questions, pool.map(ask, questions), strict=True):
                extension = reply.model_extra["selfguard"]
                print(f"openai: {question!r} -> {reply.choices[0].message.content!r}")
                print(f"  gate fired {extension['gate_fired']}, steering "
                      f"{extension['steering'] and extension['steering']['strength']}, "
                      f"refusal {reply.choices[0].message.refusal!r}")
        stream = client.chat.completions.create(model="selfguard", max_tokens=16, stream=True,
                                                messages=[{"role": "user", "content": "Name three colours."}])
        pieces = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
        print(f"stream: {len(pieces)} pieces: {''.join(pieces)!r}")

        chat = ChatOpenAI(base_url=server.url + "/v1", api_key=KEY, model="selfguard", max_tokens=32)
        call = chat.bind_tools([get_weather], tool_choice="get_weather").invoke("What is the weather in Paris?")
        print(f"langchain tool calls: {[(c['name'], c['args']) for c in call.tool_calls]}")
        llm = OpenAILike(api_base=server.url + "/v1", api_key=KEY, model="selfguard", is_chat_model=True,
                         temperature=0, max_tokens=16)
        answer = llm.chat([ChatMessage(role="user", content="What is the capital of France?")]).message.content
        print(f"llamaindex: {answer!r}")

        wrong = httpx.post(server.url + "/v1/chat/completions", headers={"Authorization": "Bearer wrong"},
                           json={"messages": [{"role": "user", "content": "Hi"}]})
        print(f"wrong key: {wrong.status_code} {wrong.json()['error']['type']}")
        metrics = httpx.get(server.url + "/metrics", headers={"Authorization": f"Bearer {KEY}"}).text
        fired = next(line for line in metrics.splitlines() if line.startswith("selfguard_gate_fired_total"))
        print(f"metrics: {fired}")
    records = read_audit_log(audit)
    print(f"audit records: {len(records)} (one per request), gate fired in "
          f"{sum(bool(r.gate_fired) for r in records)}, key in the log: {KEY in audit.read_text()}")


if __name__ == "__main__":
    main()
