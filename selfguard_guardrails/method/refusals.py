"""Where a refusal that opens an answer ends, so a steered answer can end there too.

Steering strong enough to make a small model refuse also pushes it on past its refusal, into
broken echoes of the safety instruction ("... reply \"You're not my friend.\""). The engine ends
a steered answer after its first sentence when that sentence is a refusal (`SteeringSetting.
stop_after_refusal`). The rules are kept narrow on purpose: the sentence has to open with a
refusal form *and* decline something, so an apology ("Sorry to hear that your cat is ill.")
or an "I can't wait to ..." never cuts an answer short. No torch: it reads text only.
"""

from __future__ import annotations

import re

from ..results import GenerationResult

# A sentence ends at a run of . ! ? followed by white space or the end of the text so far, or
# at a newline. "3.5" and "e.g." do not end one; a "." that is the last character does.
_SENTENCE_END = re.compile(r"[.!?]+(?=\s|\Z)|\n")
# How a refusal opens; leading markdown emphasis or a quote mark is ignored.
_OPENING = re.compile(
    r"[*_\"'“]*(?:I(?:'m| am) (?:so |very |really |truly )?sorry|sorry|I apologi[sz]e|my apologies|unfortunately"
    r"|I(?:'m| am) afraid|I can(?:no|')?t|I can not|I won't|I will not|I(?:'m| am) (?:unable|not able|not going)"
    r"|I must decline|I(?:'m| am) not allowed|as an AI|as a responsible AI|as an? (?:AI )?language model)\b",
    re.IGNORECASE)
# What the sentence declines: a negated ability or will followed by an act, or a plain decline.
_DECLINING = re.compile(
    r"\b(?:(?:can(?:no|')?t|can not|won't|will not|(?:am|'m) (?:unable|not able|not going|not allowed) to"
    r"|unable to|not able to|refuse to|decline to)(?: (?:really|possibly|in good conscience|ethically))?"
    r" (?:help(?!\s+but\b)|assist|provide|comply|fulfil|fulfill|do (?:that|this|it|so)\b|create|write|generate"
    r"|give|share|support|engage|produce|offer|answer|participate|facilitate|draft|be of (?:help|assistance))"
    r"|must decline|have to decline)",
    re.IGNORECASE)


def first_sentence_end(text: str) -> int | None:
    """Index just after the terminator of the text's first sentence (leading white space
    skipped); None while that sentence is not complete."""
    start = len(text) - len(text.lstrip())
    found = _SENTENCE_END.search(text, start)
    return None if found is None else found.end()


def is_refusal_sentence(sentence: str) -> bool:
    """Whether one sentence opens like a refusal and declines something (not a mere apology)."""
    sentence = sentence.strip().replace("\u2019", "'")
    return _OPENING.match(sentence) is not None and _DECLINING.search(sentence) is not None


def refusal_sentence_end(text: str) -> int | None:
    """Index just after the first sentence's terminator when that sentence is a refusal; None
    when it is not one, or is not complete yet (text still being generated)."""
    end = first_sentence_end(text)
    return end if end is not None and is_refusal_sentence(text[:end]) else None


def guardrail_refusal(result: GenerationResult) -> str | None:
    """The guardrail's refusal in a result, for the refusal fields of LangChain's content blocks
    and OpenAI's messages: an answer the leak policy blocked, or a steered answer that opens with
    a refusal (its first sentence). An unsteered model refusing in its own words is ordinary text."""
    if result.leakage is not None and result.leakage.action == "block":
        return result.answer
    if not (result.gate_fired or result.steering is not None):
        return None
    end = refusal_sentence_end(result.answer)
    return None if end is None else result.answer[:end].strip()
