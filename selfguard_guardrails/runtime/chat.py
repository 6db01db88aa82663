"""Conversations in, prompt text out: message checks and rendering through a model's chat template.

The runtime's side of prompting, for any model: which roles exist, what a valid conversation is,
and what the template does with system messages and tools. Templates without a system role get
the system text at the start of the first user turn. Templates without tools get them in one
documented format (the tools listed as JSON in the system message, calls written as
``<tool_call>{"name": ..., "arguments": {...}}</tool_call>``, tool results as a user turn);
`tooling.parsing` reads calls in that format back from the output.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from contextlib import suppress
from typing import Any

from ..errors import InvalidMessagesError, InvalidSettingError

ROLES = ("system", "user", "assistant", "tool")

Message = Mapping[str, Any]
Messages = str | Sequence[Message]

TOOL_INSTRUCTIONS = (
    "You can call these tools. To call one, reply with only a tool call, in this exact form:\n"
    '<tool_call>{{"name": "TOOL_NAME", "arguments": {{...}}}}</tool_call>\n'
    "Otherwise answer normally. Tools:\n{tools}"
)


def supports_tools(template: str) -> bool:
    """Whether a chat template renders a `tools` list itself."""
    return "tools" in template


def _tool_summary(tool: Mapping[str, Any]) -> dict[str, Any]:
    function = tool.get("function", tool)
    return {"name": function.get("name"), "description": function.get("description", ""),
            "parameters": function.get("parameters", {})}


def normalize_messages(messages: Messages) -> list[dict[str, Any]]:
    """Turn a string or OpenAI-style message list into validated dicts (copies; input untouched)."""
    if isinstance(messages, str):
        messages = [{"role": "user", "content": messages}]
    if not isinstance(messages, Sequence) or isinstance(messages, (bytes, bytearray)):
        raise InvalidMessagesError(
            f"Messages must be a string or a list of {{'role', 'content'}} dicts, got {type(messages).__name__}."
        )
    result = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise InvalidMessagesError(f"Message {index} is a {type(message).__name__}, expected a dict "
                                       "with 'role' and 'content'.")
        role = message.get("role")
        if role not in ROLES:
            raise InvalidMessagesError(f"Message {index} has unknown role {role!r}: use one of {', '.join(ROLES)}.")
        content = message.get("content")
        if content is None and role == "assistant" and message.get("tool_calls"):
            content = ""
        if not isinstance(content, str):
            raise InvalidMessagesError(f"Message {index} ({role}) has no text content: give 'content' as a string.")
        result.append({**message, "content": content})
    user_turns = [m for m in result if m["role"] == "user"]
    if not user_turns:
        raise InvalidMessagesError("The conversation has no user message: add one with the request.")
    if not user_turns[-1]["content"].strip():
        raise InvalidMessagesError("The prompt is empty: give the user message some text.")
    return result


def inline_tools(messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]] | None
                 ) -> list[dict[str, Any]]:
    """The conversation with the tools, earlier calls and tool results written as plain text."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role, content = message["role"], message.get("content") or ""
        if role == "assistant" and message.get("tool_calls"):
            calls = "\n".join(format_tool_call(call) for call in message["tool_calls"])
            out.append({"role": "assistant", "content": f"{content}\n{calls}".strip()})
        elif role == "tool":
            name = message.get("name") or "tool"
            out.append({"role": "user", "content": f"Tool result ({name}): {content}"})
        else:
            out.append({"role": role, "content": content})
    if tools:
        listing = json.dumps([_tool_summary(t) for t in tools], ensure_ascii=False)
        text = TOOL_INSTRUCTIONS.format(tools=listing)
        systems = [i for i, m in enumerate(out) if m["role"] == "system"]
        if systems:
            out[systems[-1]] = {**out[systems[-1]], "content": f"{out[systems[-1]]['content']}\n\n{text}"}
        else:
            out.insert(0, {"role": "system", "content": text})
    return out


def format_tool_call(call: Mapping[str, Any]) -> str:
    function = call.get("function", call)
    arguments = function.get("arguments", function.get("args", {}))
    if isinstance(arguments, str):
        with suppress(json.JSONDecodeError):
            arguments = json.loads(arguments)
    return "<tool_call>" + json.dumps({"name": function.get("name"), "arguments": arguments},
                                      ensure_ascii=False) + "</tool_call>"


def _fold_system_into_user(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For templates with no system role: put the system text at the head of the first user turn."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
    rest = [dict(m) for m in messages if m["role"] != "system"]
    if system:
        first_user = next(i for i, m in enumerate(rest) if m["role"] == "user")
        rest[first_user]["content"] = f"{system}\n\n{rest[first_user]['content']}"
    return rest


class ChatRenderer:
    """Renders conversations through a tokenizer's chat template, learning its quirks once."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        template = getattr(tokenizer, "chat_template", None) or ""
        if not template:
            raise InvalidMessagesError(
                "The tokenizer has no chat template: load an instruct/chat model, or set "
                "tokenizer.chat_template before building the engine."
            )
        self.supports_thinking_switch = "enable_thinking" in template
        self.supports_tools = supports_tools(template)
        self.supports_system = self._probe_system_role()

    def _probe_system_role(self) -> bool:
        marker = "SYSTEM-ROLE-PROBE-7f3a"
        try:
            text = self._template([{"role": "system", "content": marker}, {"role": "user", "content": "hi"}], None)
        except Exception:  # templates that reject the system role raise TemplateError or similar
            return False
        return marker in text

    def _template(self, messages: list[dict[str, Any]], thinking: bool | None,
                  tools: Sequence[Mapping[str, Any]] | None = None) -> str:
        extra: dict[str, Any] = ({"enable_thinking": thinking}
                                 if thinking is not None and self.supports_thinking_switch else {})
        if not tools:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)
        try:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True,
                                                      tools=list(tools), **extra)
        except Exception as error:  # a template's own checks (jinja2 TemplateError, KeyError on a field)
            raise InvalidSettingError(f"The model's chat template could not render the tools ({error}). Check "
                                      "the tool definitions against the format the model documents.") from None

    def render(self, messages: list[dict[str, Any]], *, thinking: bool | None = None,
               tools: Sequence[Mapping[str, Any]] | None = None) -> str:
        """Render validated messages to the prompt text the model continues. Tools (OpenAI
        format) go through the template when it takes them, else through `tools.inline_tools`."""
        uses_tools = bool(tools) or any(m["role"] == "tool" or m.get("tool_calls") for m in messages)
        if uses_tools and not self.supports_tools:
            messages, tools = inline_tools(messages, tools), None
        if not self.supports_system:
            messages = _fold_system_into_user(messages)
        return self._template(messages, thinking, tools)
