"""The two ways the engine consumes a decode, side by side, on one token-level loop.

`token_steps` owns the rules every decode shares: a row ends at end-of-sequence (as the runtime
reports it), when its visible text contains a stop string, or, on a steered decode that asks
for it, when its answer's first sentence is complete and is a refusal (the answer is cut right
after it, so batch and stream agree). `run_batch` drains it into results;
`run_stream` turns row 0's text into reasoning/answer pieces as it grows, through the stream's
leak guard. Both turn token ids into a `GenerationResult` the same way.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator, Sequence
from contextlib import closing
from dataclasses import dataclass
from typing import cast

from ..leakage.streaming import StreamGuard
from ..method.refusals import first_sentence_end, refusal_sentence_end
from ..results import FinishReason, GenerationResult, SteeringApplied, StreamPiece, Timings, Usage
from ..runtime.decoding import DecodeClock, DecodeOptions
from ..runtime.protocol import ModelRuntime, PromptBatch, Steering
from ..runtime.reasoning import Channel, ReasoningSplit, ReasoningSplitter, clean_special_tokens
from ..settings import Mode


@dataclass
class Prepared:
    """A padded batch of rendered prompts, ready to decode, and whether each prompt opened a `<think>`."""

    batch: PromptBatch
    opens_think: list[bool]


@dataclass
class Rows:
    """Token ids generated so far for each row, and why each row ended ("length" while it runs).
    `watching`: rows whose first answer sentence is still open and may end them as a refusal;
    `answer_end`: where a row's answer is cut after its refusal (None: not cut)."""

    ids: list[list[int]]
    finish: list[FinishReason]
    watching: list[bool]
    answer_end: list[int | None]

    @classmethod
    def start(cls, count: int, stop_after_refusal: bool = False) -> Rows:
        return cls(ids=[[] for _ in range(count)], finish=["length"] * count,
                   watching=[stop_after_refusal] * count, answer_end=[None] * count)


def cut_at_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """The text before the first stop string, and whether one was found."""
    hits = [text.find(s) for s in stop if s in text]
    return (text[: min(hits)], True) if hits else (text, False)


def pieces_of(parts: list[tuple[Channel, str]]) -> Iterator[StreamPiece]:
    for channel, text in parts:
        if text:
            yield StreamPiece(channel=channel, text=text)


class TokenLoops:
    """Runs decodes on a runtime and turns their tokens into results (or stream pieces)."""

    def __init__(self, runtime: ModelRuntime) -> None:
        self.runtime = runtime
        self.tokenizer = runtime.tokenizer

    def visible_text(self, ids: Sequence[int]) -> str:
        text = cast(str, self.tokenizer.decode(list(ids), skip_special_tokens=False))  # one sequence: str
        return clean_special_tokens(text, self.tokenizer)

    def _stop_hit(self, ids: list[int], stop: Sequence[str]) -> bool:
        """Whether the newest tokens complete a stop string (only the tail is decoded: a stop
        string completed now ends there, and decoding the whole answer every step would cost)."""
        longest = max(len(s) for s in stop)
        tail = self.visible_text(ids[-(2 * longest + 8):])
        return any(s in tail for s in stop)

    def _may_end_sentence(self, token: int) -> bool:
        """Whether a token could complete a sentence: only then is the answer decoded and read."""
        text = cast(str, self.tokenizer.decode([token], skip_special_tokens=False))
        return any(mark in text for mark in ".!?\n")

    def _watch_refusal(self, rows: Rows, row: int, opens_think: bool, stop: Sequence[str]) -> None:
        """Once the row's first answer sentence is complete, stop watching it; when that sentence
        is a refusal, mark where the answer ends (trailing white space dropped)."""
        split = self.split(rows.ids[row], opens_think, stop)
        if split.reasoning_truncated or first_sentence_end(split.answer) is None:
            return  # still reasoning, or the first sentence is still open
        rows.watching[row] = False
        end = refusal_sentence_end(split.answer)
        if end is not None:
            rows.answer_end[row] = len(split.answer[:end].rstrip())

    def token_steps(self, prepared: Prepared, options: DecodeOptions, steering: Steering | None,
                    clock: DecodeClock, rows: Rows) -> Generator[None, None, None]:
        """Decode step by step, adding each row's new token to `rows` and marking how it ended;
        yields after each step. Closing this generator ends the decode at once (and removes any
        steering)."""
        stopped = [False] * len(rows.ids)
        with closing(self.runtime.decode(prepared.batch, options, steering, clock, stopped)) as steps:
            for tokens in steps:
                for row, token in enumerate(tokens):
                    if rows.finish[row] != "length":
                        continue
                    if token is None:
                        rows.finish[row] = "eos"
                        continue
                    rows.ids[row].append(token)
                    if options.stop and self._stop_hit(rows.ids[row], options.stop):
                        rows.finish[row] = "stop"
                    if rows.watching[row] and self._may_end_sentence(token):
                        self._watch_refusal(rows, row, prepared.opens_think[row], options.stop)
                        if rows.answer_end[row] is not None:
                            rows.finish[row] = "stop"
                    stopped[row] = rows.finish[row] == "stop"
                yield

    def split(self, ids: list[int], opens_think: bool, stop: Sequence[str]) -> ReasoningSplit:
        split = ReasoningSplitter(self.tokenizer, prompt_opens_think=opens_think).split(ids)
        if not stop:
            return split
        answer, _ = cut_at_stop(split.answer, stop)
        reasoning = split.reasoning
        if split.reasoning_truncated:
            reasoning, _ = cut_at_stop(reasoning, stop)
        return ReasoningSplit(reasoning=reasoning, answer=answer, reasoning_truncated=split.reasoning_truncated,
                              reasoning_tokens=split.reasoning_tokens)

    def streamed_text(self, ids: list[int], opens_think: bool, stop: Sequence[str], answer_end: int | None) -> str:
        """The visible text a stream shows: cut at a stop string, and after a refusal where the
        answer was cut (the answer is the text's tail, so the cut keeps as many characters off)."""
        text, _ = cut_at_stop(self.visible_text(ids), stop)
        if answer_end is None:
            return text
        return text[: len(text) - (len(self.split(ids, opens_think, stop).answer) - answer_end)]

    def result(self, rows: Rows, row: int, mode: Mode, prepared: Prepared, options: DecodeOptions, prefix: str,
               applied: SteeringApplied | None, clock: DecodeClock) -> GenerationResult:
        ids = rows.ids[row]
        split = self.split(ids, prepared.opens_think[row], options.stop)
        answer = split.answer[: rows.answer_end[row]]  # a None end keeps it whole
        return GenerationResult(
            answer=prefix + answer if not split.reasoning_truncated else answer,
            reasoning=split.reasoning, reasoning_truncated=split.reasoning_truncated,
            mode=mode.value, finish_reason=rows.finish[row],
            usage=Usage(input_tokens=int(prepared.batch.prompt_lengths[row]), output_tokens=len(ids),
                        reasoning_tokens=split.reasoning_tokens),
            steering=applied, safety_prompt_applied=mode.uses_prompt,
            timings=Timings(prefill_seconds=clock.prefill_seconds, decode_seconds=clock.decode_seconds,
                            total_seconds=time.perf_counter() - clock.started),
            model=self.runtime.name,
        )

    def run_batch(self, prepared: Prepared, mode: Mode, options: DecodeOptions, prefix: str,
                  steering: Steering | None, applied: Sequence[SteeringApplied | None],
                  stop_after_refusal: bool = False) -> list[GenerationResult]:
        """Decode every row to its end; one result per row. `stop_after_refusal`: end each row
        after a refusing first sentence (steered decodes; never with a `prefix`, the caller's text)."""
        clock = DecodeClock()
        rows = Rows.start(len(prepared.opens_think), stop_after_refusal and not prefix)
        for _ in self.token_steps(prepared, options, steering, clock, rows):
            pass
        return [self.result(rows, r, mode, prepared, options, prefix, applied[r], clock) for r in range(len(rows.ids))]

    def run_stream(self, prepared: Prepared, mode: Mode, options: DecodeOptions, prefix: str,
                   steering: Steering | None, applied: SteeringApplied | None, guard: StreamGuard | None,
                   stop_after_refusal: bool = False,
                   on_abandon: Callable[[GenerationResult], None] | None = None,
                   ) -> Generator[StreamPiece, None, GenerationResult]:
        """Decode one prompt, yielding its pieces (through the leak guard, if any); returns the result.
        The last characters are held back while they could still begin a stop string; a refusal
        ends the row on the step its sentence does, so nothing after it has been shown. A stream
        closed before its end hands what was generated to `on_abandon` (finish "abandoned")."""
        holdback = max((len(s) for s in options.stop), default=1) - 1
        splitter = ReasoningSplitter(self.tokenizer, prompt_opens_think=prepared.opens_think[0]).stream()
        clock = DecodeClock()
        emitted, text = 0, ""

        def release(parts: list[tuple[Channel, str]]) -> list[tuple[Channel, str]]:
            if guard is None:
                return parts
            return [out for channel, piece in parts for out in guard.feed(channel, piece)]

        rows = Rows.start(1, stop_after_refusal and not prefix)
        try:
            with closing(self.token_steps(prepared, options, steering, clock, rows)) as steps:
                for _ in steps:
                    if rows.finish[0] == "eos":
                        break
                    text = self.streamed_text(rows.ids[0], prepared.opens_think[0], options.stop,
                                              rows.answer_end[0])
                    if rows.finish[0] == "stop":
                        break
                    safe_end = len(text) - holdback
                    while safe_end > emitted and text[safe_end - 1] == "\ufffd":  # incomplete UTF-8 sequence
                        safe_end -= 1
                    if safe_end > emitted:
                        yield from pieces_of(release(splitter.feed(text[emitted:safe_end])))
                        emitted = safe_end
                    if guard is not None and guard.blocked:
                        break  # a blocked leak: nothing more will be shown, so stop generating
            rest = release(splitter.feed(text[emitted:]) + splitter.finish())
            yield from pieces_of(rest + (guard.finish() if guard is not None else []))
        except GeneratorExit:
            if on_abandon is not None:
                rows.finish[0] = "abandoned"
                on_abandon(self.result(rows, 0, mode, prepared, options, prefix, applied, clock))
            raise
        return self.result(rows, 0, mode, prepared, options, prefix, applied, clock)
