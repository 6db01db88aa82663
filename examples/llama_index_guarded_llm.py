"""Guard any LlamaIndex LLM with `GuardedLLM`: a leak in a hosted model's reasoning is caught,
redacted before anyone reads it, and audited without the raw value.

    python examples/llama_index_guarded_llm.py [AUDIT_DIR]

The "hosted reasoning model" is a stand-in defined here (canned replies, offline, instant): put
your own LlamaIndex LLM (OpenAI, Anthropic, Ollama, ...) in its place.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from llama_index.core.base.llms.types import (
    ChatMessage,
    ChatResponse,
    CompletionResponse,
    LLMMetadata,
    MessageRole,
    TextBlock,
    ThinkingBlock,
)
from llama_index.core.llms import CustomLLM

from selfguard_guardrails.audit import read_audit_log
from selfguard_guardrails.integrations.llama_index import GuardedLLM

TOKEN = "ghp_" + "R7kLm2Qx9Tz4Wv8Yb1Nc5Hd3Jf6Gp0Se2Ua4"  # a made-up GitHub token, 36 characters after ghp_
SYSTEM = "You are Acme's release assistant. Answer questions about deploys."


class HostedReasoner(CustomLLM):
    """A stand-in for a hosted reasoning model: its trace reads a token from its notes."""

    @property
    def metadata(self) -> LLMMetadata:
        return LLMMetadata(model_name="hosted-reasoner-1", is_chat_model=True)

    def chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> ChatResponse:
        thought = f"The deploy notes hold the token {TOKEN}; I should not print it. Deploys run at 10:00."
        answer = "Deploys run from the main branch every weekday at 10:00 (release v2.14.3)."
        message = ChatMessage(role=MessageRole.ASSISTANT, blocks=[ThinkingBlock(content=thought),
                                                                  TextBlock(text=answer)])
        return ChatResponse(message=message, additional_kwargs={"prompt_tokens": 24, "completion_tokens": 31})

    def stream_chat(self, messages: Sequence[ChatMessage], **kwargs: Any) -> Iterator[ChatResponse]:
        """The trace word by word (as `thinking_delta`s), then the answer word by word."""
        whole = self.chat(messages)
        thought, answer = thinking(whole), whole.message.content or ""
        for end in range(1, len(thought.split()) + 1):
            piece = " ".join(thought.split()[:end])
            yield ChatResponse(message=ChatMessage(role=MessageRole.ASSISTANT, blocks=[ThinkingBlock(content=piece)]),
                               delta="", additional_kwargs={"thinking_delta": thought.split()[end - 1] + " "})
        for end in range(1, len(answer.split()) + 1):
            text = " ".join(answer.split()[:end])
            yield ChatResponse(message=whole.message.model_copy(update={"blocks": [ThinkingBlock(content=thought),
                                                                                 TextBlock(text=text)]}),
                               delta=answer.split()[end - 1] + " ", additional_kwargs=whole.additional_kwargs)

    def complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> CompletionResponse:
        return CompletionResponse(text=self.chat([]).message.content or "")

    def stream_complete(self, prompt: str, formatted: bool = False, **kwargs: Any) -> Iterator[CompletionResponse]:
        yield self.complete(prompt)


def thinking(response: ChatResponse) -> str:
    return "".join(b.content or "" for b in response.message.blocks if isinstance(b, ThinkingBlock))


def main() -> int:
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(tempfile.mkdtemp(prefix="selfguard-li-guard-"))
    messages = [ChatMessage(role="system", content=SYSTEM), ChatMessage(role="user", content="When do deploys run?")]
    model = HostedReasoner()
    print("raw reasoning holds the token:", TOKEN in thinking(model.chat(messages)))

    llm = GuardedLLM(llm=model, audit=out / "audit.jsonl")  # the wrap: redacts every kind by default
    response = llm.chat(messages)
    print("reasoning shown:", thinking(response))
    print("answer:", response.message.content)
    streamed = list(llm.stream_chat(messages))  # held back until checked, then yielded
    print(f"stream: {len(list(model.stream_chat(messages)))} chunks from the model, {len(streamed)} shown: "
          f"thinking {[c.additional_kwargs.get('thinking_delta', '')[:40] for c in streamed[:-1]]}, "
          f"text {streamed[-1].delta[:32]!r}")

    blocking = GuardedLLM(llm=model, leak_policy={"secret": "block", "block_with": "refusal"},
                          audit=out / "audit.jsonl")
    print("blocked reply:", blocking.chat(messages).message.content)

    for record in read_audit_log(out / "audit.jsonl"):
        print(f"audit record: model {record.model}, mode {record.mode}, action {record.action}, "
              f"findings {[f'{f.kind}/{f.subtype} in {f.where}' for f in record.findings]}, "
              f"tokens {record.input_tokens}+{record.output_tokens}")
    print("raw token in the log:", TOKEN in (out / "audit.jsonl").read_text(encoding="utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
