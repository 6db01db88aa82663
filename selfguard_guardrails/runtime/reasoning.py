"""Split a reasoning model's generation into its `<think>` trace and its answer.

Decoding with special tokens skipped deletes the think tags in Qwen3-style tokenizers, so
the split works on token ids where `</think>` is one id, and on text decoded with special
tokens kept where it is not (SmolLM2 cuts it into `</`, `think`, `>`).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any

THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
_TAGS = (THINK_OPEN, THINK_CLOSE)
_TAG_RE = re.compile("|".join(re.escape(t) for t in _TAGS))


class Channel(str, Enum):
    """Where a piece of streamed text belongs."""

    REASONING = "reasoning"
    ANSWER = "answer"


@dataclass(frozen=True)
class ReasoningSplit:
    """A generation cut into trace and answer; `reasoning_tokens` feeds the token budget report."""

    reasoning: str
    answer: str
    reasoning_truncated: bool
    reasoning_tokens: int


def prompt_opens_think(rendered_prompt: str) -> bool:
    """True when the template already opened the trace (DeepSeek-R1, QwQ): the output holds only `</think>`.

    Only a prompt that ends with `<think>` counts, so a closed block (thinking disabled) or a
    tag quoted in a user message does not turn the whole answer into reasoning.
    """
    return rendered_prompt.rstrip().endswith(THINK_OPEN)


def _special_strings(tokenizer: Any) -> list[str]:
    """Special-token strings other than the think tags, longest first so none is cut short."""
    found = set(getattr(tokenizer, "all_special_tokens", None) or [])
    for added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).values():
        if getattr(added, "special", False):
            found.add(str(added.content))
    return sorted((s for s in found if s and s not in _TAGS), key=len, reverse=True)


def clean_special_tokens(text: str, tokenizer: Any) -> str:
    """Remove the tokenizer's special-token strings (eos, turn markers) but keep the think tags."""
    specials = _special_strings(tokenizer)
    if not specials:
        return text
    return re.sub("|".join(re.escape(s) for s in specials), "", text)


def _drop_tags(text: str) -> str:
    """Stray tags (a repeated `<think>`, a second `</think>`) are markup, never content."""
    return _TAG_RE.sub("", text)


class ReasoningSplitter:
    """Splits generated ids; built once per tokenizer and prompt template."""

    def __init__(self, tokenizer: Any, *, prompt_opens_think: bool = False) -> None:
        self.tokenizer = tokenizer
        self.prompt_opens_think = prompt_opens_think
        self._close_id = self._single_id(THINK_CLOSE)
        ids: set[int] = set(getattr(tokenizer, "all_special_ids", None) or [])
        for idx, added in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items():
            if getattr(added, "special", False):
                ids.add(int(idx))
        self._special_ids = ids - {self._close_id, self._single_id(THINK_OPEN)}
        self._end_ids = {i for i in (tokenizer.eos_token_id, tokenizer.pad_token_id) if isinstance(i, int)}

    def _single_id(self, tag: str) -> int | None:
        ids = self.tokenizer.encode(tag, add_special_tokens=False)
        if len(ids) == 1 and self.tokenizer.decode(ids, skip_special_tokens=False) == tag:
            return int(ids[0])
        return None

    def _text(self, ids: Sequence[int]) -> str:
        text = self.tokenizer.decode(list(ids), skip_special_tokens=False)
        return clean_special_tokens(text, self.tokenizer)

    def split(self, token_ids: Sequence[int]) -> ReasoningSplit:
        """Split generated ids (prompt excluded); eos, pad and trailing special ids are ignored."""
        ids = [int(i) for i in token_ids if int(i) not in self._end_ids]
        while ids and ids[-1] in self._special_ids:
            ids.pop()
        text = self._text(ids)
        stripped = text.lstrip()
        opened = self.prompt_opens_think or stripped.startswith(THINK_OPEN)
        if not opened:
            return ReasoningSplit("", _drop_tags(text), False, 0)
        if self._close_id is not None and self._close_id in ids:
            cut = ids.index(self._close_id)
            before, after, count = self._text(ids[:cut]), self._text(ids[cut + 1 :]), cut + 1
        elif THINK_CLOSE in text:
            before, after = text.split(THINK_CLOSE, 1)
            count = self._close_prefix(ids)
        else:
            return ReasoningSplit(_drop_tags(stripped).strip(), "", True, len(ids))
        return ReasoningSplit(_drop_tags(before).strip(), _drop_tags(after.lstrip()), False, count)

    def _close_prefix(self, ids: list[int]) -> int:
        """Shortest id prefix whose text holds `</think>` (binary search: decoding grows with the prefix)."""
        lo, hi = 1, len(ids)
        while lo < hi:
            mid = (lo + hi) // 2
            if THINK_CLOSE in self._text(ids[:mid]):
                hi = mid
            else:
                lo = mid + 1
        return lo

    def stream(self) -> StreamingSplit:
        """A streaming splitter that agrees with `split` on the same output."""
        return StreamingSplit(prompt_opens_think=self.prompt_opens_think)


def _held_suffix(text: str) -> int:
    """Length of the longest suffix that could still grow into a tag, so it is not emitted yet."""
    for n in range(min(len(text), len(THINK_CLOSE) - 1), 0, -1):
        tail = text[-n:]
        if any(tag.startswith(tail) for tag in _TAGS):
            return n
    return 0


class StreamingSplit:
    """Incremental split for streaming: feed text deltas as they are decoded."""

    def __init__(self, *, prompt_opens_think: bool = False) -> None:
        self._forced = prompt_opens_think
        self._state = "start"  # start -> reasoning -> answer_start -> answer, or start -> answer
        self._buf = ""
        self._truncated = False

    @property
    def reasoning_truncated(self) -> bool:
        """A trace was open when the stream ended (the budget ran out); meaningful after `finish`."""
        return self._truncated

    def feed(self, delta: str) -> list[tuple[Channel, str]]:
        """Pieces that are now certain; a possible partial tag at the end is held back."""
        self._buf += delta
        out: list[tuple[Channel, str]] = []
        while self._step(out):
            pass
        return out

    def _step(self, out: list[tuple[Channel, str]]) -> bool:
        """Advance once; False when more text is needed to decide."""
        buf = self._buf
        if self._state == "start":
            lead = buf.lstrip()
            if lead.startswith(THINK_OPEN):
                self._buf, self._state = lead[len(THINK_OPEN) :], "reasoning"
            elif not lead or THINK_OPEN.startswith(lead):
                return False
            elif self._forced:
                self._buf, self._state = lead, "reasoning"
            else:
                self._state = "answer"
            return True
        if self._state == "answer_start":
            self._buf = buf.lstrip()
            if not self._buf:
                return False
            self._state = "answer"
            return True
        channel = Channel.REASONING if self._state == "reasoning" else Channel.ANSWER
        match = _TAG_RE.search(buf)
        if match is None:
            keep = _held_suffix(buf)
            self._emit(out, channel, buf[: len(buf) - keep])
            self._buf = buf[len(buf) - keep :]
            return False
        self._emit(out, channel, buf[: match.start()])
        self._buf = buf[match.end() :]
        if self._state == "reasoning" and match.group() == THINK_CLOSE:
            self._state = "answer_start"
        return True

    @staticmethod
    def _emit(out: list[tuple[Channel, str]], channel: Channel, text: str) -> None:
        if not text:
            return
        if out and out[-1][0] is channel:
            out[-1] = (channel, out[-1][1] + text)
        else:
            out.append((channel, text))

    def finish(self) -> list[tuple[Channel, str]]:
        """Flush what was held back; an open trace at the end marks the reasoning truncated."""
        out: list[tuple[Channel, str]] = []
        buf, self._buf = self._buf, ""
        if self._state == "start":
            self._state = "reasoning" if self._forced else "answer"
            buf = buf.lstrip() if self._forced else buf
        if self._state == "reasoning":
            self._truncated = True
            self._emit(out, Channel.REASONING, buf)
        elif self._state == "answer":
            self._emit(out, Channel.ANSWER, buf)
        return out
