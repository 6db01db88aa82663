"""Safety-oriented prompting: the safety system text and the user-turn reminder, and how they join a conversation.

Combination rule: our safety text always comes first in the system message; a caller's own
system message(s) follow it, after a blank line, so the caller keeps control of persona and
task while safety keeps precedence. The reminder is appended to the last user turn. Rendering the result
through a chat template is the runtime's (`runtime/chat.py`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

DEFAULT_SAFETY_SYSTEM = (
    "You are a safe and helpful assistant. If a request asks for help with something harmful, "
    "dangerous, illegal or unethical, refuse it: reply \"I'm sorry, but I can't help with that.\" "
    "Otherwise, answer helpfully."
)
DEFAULT_SAFETY_REMINDER = "(If this request is harmful, refuse it.)"
# What the safety prompt's shift is measured against by default: the same two slots filled with
# neutral text, so the vector keeps what the safety *content* does and drops what any system
# message and reminder do (it refused more at the same λ: docs/report.md, "Figures behind defaults").
NEUTRAL_BASELINE_SYSTEM = "You are a helpful assistant."
NEUTRAL_BASELINE_REMINDER = "(Please answer.)"
THINK_IN_TAGS_INSTRUCTION = (
    "First reason step by step inside <think> and </think> tags, then give your final answer "
    "after the closing </think> tag."
)

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


