"""Safety-oriented prompting: the safety system text, the user-turn reminder, chat rendering.

Combination rule: our safety text always comes first in the system message; a caller's own
system message(s) follow it, after a blank line, so the caller keeps control of persona and
task while safety keeps precedence. The reminder is appended to the last user turn. For chat
templates without a system role, the system text is put at the start of the first user turn.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidMessagesError, InvalidSettingError
from ..tooling.formats import inline_tools, supports_tools

ROLES = ("system", "user", "assistant", "tool")

DEFAULT_SAFETY_SYSTEM = (
    "You are a safe and helpful assistant. If a request asks for help with something harmful, "
    "dangerous, illegal or unethical, refuse it: reply \"I'm sorry, but I can't help with that.\" "
    "Otherwise, answer helpfully."
)
DEFAULT_SAFETY_REMINDER = "(If this request is harmful, refuse it.)"
# What the safety prompt's shift is measured against by default: the same two slots filled with
# neutral text, so the vector keeps what the safety *content* does and drops what any system
# message and reminder do (on the embedded model: 97.6% vs 80.5% refusal at the shipped λ).
NEUTRAL_BASELINE_SYSTEM = "You are a helpful assistant."
NEUTRAL_BASELINE_REMINDER = "(Please answer.)"
THINK_IN_TAGS_INSTRUCTION = (
    "First reason step by step inside <think> and </think> tags, then give your final answer "
    "after the closing </think> tag."
)

Message = Mapping[str, Any]
Messages = str | Sequence[Message]


@dataclass(frozen=True)
class SafetyPrompt:
    """The two texts of safety-oriented prompting; either may be empty to switch it off."""

    system: str = DEFAULT_SAFETY_SYSTEM
    reminder: str = DEFAULT_SAFETY_REMINDER

    def fingerprint(self) -> str:
        """Short hash stored with steering vectors, so a vector records which prompt made it."""
        return hashlib.sha256(f"{self.system}\x00{self.reminder}".encode()).hexdigest()[:16]


NEUTRAL_BASELINE = SafetyPrompt(system=NEUTRAL_BASELINE_SYSTEM, reminder=NEUTRAL_BASELINE_REMINDER)
BASELINES: dict[str, SafetyPrompt | None] = {"neutral": NEUTRAL_BASELINE, "bare": None}


def baseline_name(baseline_hash: str) -> str:
    """What a vector's `baseline_hash` stands for: "bare", "neutral", or "custom"."""
    names = {(prompt.fingerprint() if prompt else ""): name for name, prompt in BASELINES.items()}
    return names.get(baseline_hash, "custom")


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


def apply_safety_prompt(
    messages: list[dict[str, Any]], safety: SafetyPrompt | None, *, think_in_tags: bool = False
) -> list[dict[str, Any]]:
    """Merge our safety text (and the optional think-in-tags instruction) into the conversation."""
    preamble = [text for text in ((safety.system if safety else ""),
                                  THINK_IN_TAGS_INSTRUCTION if think_in_tags else "") if text]
    own_system = [m["content"] for m in messages if m["role"] == "system" and m["content"].strip()]
    rest = [dict(m) for m in messages if m["role"] != "system"]
    system_text = "\n\n".join(preamble + own_system)
    if safety and safety.reminder:
        last_user = max(i for i, m in enumerate(rest) if m["role"] == "user")
        rest[last_user]["content"] = f"{rest[last_user]['content']}\n\n{safety.reminder}"
    return ([{"role": "system", "content": system_text}] if system_text else []) + rest


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
