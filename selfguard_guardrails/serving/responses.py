"""Engine results in the OpenAI chat-completions wire format, and OpenAI-style error bodies.

The reasoning trace goes in `reasoning_content`, the field DeepSeek's API defined and that
LangChain's `ChatDeepSeek` and LlamaIndex's `OpenAI`/`OpenAILike` read (LlamaIndex also reads
`reasoning`; LangChain's `ChatOpenAI` reads neither: see docs/serving.md). It never goes in
`content`. What Self-Guard did goes in the `selfguard` extension object.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from ..method.refusals import guardrail_refusal
from ..results import GenerationResult
from ..tooling.parsing import ParsedOutput


def completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage_of(result: GenerationResult) -> dict[str, Any]:
    return {"prompt_tokens": result.usage.input_tokens, "completion_tokens": result.usage.output_tokens,
            "total_tokens": result.usage.input_tokens + result.usage.output_tokens,
            "completion_tokens_details": {"reasoning_tokens": result.usage.reasoning_tokens}}


def selfguard_extension(result: GenerationResult) -> dict[str, Any]:
    """What Self-Guard did for this answer: the mode asked for, the steering applied (None: not
    steered), the gate's score and decision, the safety prompt, and the leak summary."""
    leakage = result.leakage
    return {
        "mode": result.mode,
        "steering": None if result.steering is None else result.steering.model_dump(mode="json"),
        "safety_prompt_applied": result.safety_prompt_applied,
        "awareness": result.awareness,
        "gate_fired": result.gate_fired,
        "leaks": None if leakage is None else {
            "action": leakage.action,
            "kinds": sorted({finding.kind for finding in leakage.findings}),
            "findings": len(leakage.findings),
        },
    }


def tool_calls_of(parsed: ParsedOutput | None) -> list[dict[str, Any]]:
    return [{"id": call["id"], "type": "function",
             "function": {"name": call["name"], "arguments": json.dumps(call["args"], ensure_ascii=False)}}
            for call in (parsed.calls if parsed is not None else [])]


def assistant_message(result: GenerationResult, parsed: ParsedOutput | None) -> dict[str, Any]:
    """The choice's message: answer text (calls taken out), the reasoning apart, tool calls, and
    `refusal` when the guardrail refused (a steered refusal, a blocked leak), as OpenAI marks its own."""
    calls = tool_calls_of(parsed)
    text = parsed.text if parsed is not None else result.answer
    message: dict[str, Any] = {"role": "assistant", "content": text if text or not calls else None}
    if result.reasoning:
        message["reasoning_content"] = result.reasoning
    if calls:
        message["tool_calls"] = calls
    refusal = guardrail_refusal(result)
    if refusal is not None:
        message["refusal"] = refusal
    return message


def finish_reason(result: GenerationResult, parsed: ParsedOutput | None) -> str:
    if parsed is not None and parsed.calls:
        return "tool_calls"
    return "length" if result.finish_reason == "length" else "stop"  # eos and stop strings are both "stop"


def completion(result: GenerationResult, parsed: ParsedOutput | None, model: str) -> dict[str, Any]:
    return {
        "id": completion_id(), "object": "chat.completion", "created": int(time.time()), "model": model,
        "choices": [{"index": 0, "message": assistant_message(result, parsed), "logprobs": None,
                     "finish_reason": finish_reason(result, parsed)}],
        "usage": usage_of(result),
        "selfguard": selfguard_extension(result),
    }


def chunk(completion_id_: str, model: str, delta: dict[str, Any], finish: str | None = None,
          **extra: Any) -> dict[str, Any]:
    """One server-sent event of a streamed completion."""
    return {"id": completion_id_, "object": "chat.completion.chunk", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}], **extra}


def error_body(message: str, kind: str = "invalid_request_error", param: str | None = None,
               code: str | None = None) -> dict[str, Any]:
    """An error as OpenAI's API writes it, which every OpenAI client turns into its own exception."""
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}
