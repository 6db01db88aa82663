"""Reasoning split: token-id split (Qwen3-style), text split (SmolLM2), streaming agreement."""

from __future__ import annotations

import itertools
import random

import pytest

from selfguard_guardrails.runtime.reasoning import (
    THINK_CLOSE,
    THINK_OPEN,
    Channel,
    ReasoningSplitter,
    StreamingSplit,
    clean_special_tokens,
    prompt_opens_think,
)

TEXT = "<think>\nplan\n</think>\n\nHello"


def _ids(tok, text):
    return tok.encode(text, add_special_tokens=False)


def _run(stream: StreamingSplit, deltas) -> tuple[str, str]:
    pieces = [p for d in deltas for p in stream.feed(d)] + stream.finish()
    for channel, text in pieces:
        assert text, "empty pieces are never emitted"
        assert THINK_OPEN not in text and THINK_CLOSE not in text
        assert isinstance(channel, Channel)
    reasoning = "".join(t for c, t in pieces if c is Channel.REASONING)
    answer = "".join(t for c, t in pieces if c is Channel.ANSWER)
    return reasoning, answer


def _chunkings(text: str, sizes=(1, 2, 3)):
    """Every way to cut `text` into pieces of 1..3 characters."""
    if not text:
        yield []
        return
    for n in sizes:
        if n <= len(text):
            for rest in _chunkings(text[n:], sizes):
                yield [text[:n], *rest]


def test_qwen3_style_splits_on_close_token_id(think_tokenizer):
    ids = _ids(think_tokenizer, TEXT)
    close_id = think_tokenizer.convert_tokens_to_ids(THINK_CLOSE)
    assert ids.count(close_id) == 1
    out = ReasoningSplitter(think_tokenizer).split(ids)
    assert out.reasoning == "plan"
    assert out.answer == "Hello"
    assert not out.reasoning_truncated
    assert out.reasoning_tokens == ids.index(close_id) + 1


def test_qwen3_style_split_uses_ids_not_text(think_tokenizer):
    # "</", "think", ">" spelled from ordinary tokens inside the trace are not the delimiter.
    spelled = _ids(think_tokenizer, "a</") + _ids(think_tokenizer, "think>b")
    ids = _ids(think_tokenizer, "<think>x ") + spelled + _ids(think_tokenizer, "</think>Hi")
    close_id = think_tokenizer.convert_tokens_to_ids(THINK_CLOSE)
    assert ids.count(close_id) == 1
    out = ReasoningSplitter(think_tokenizer).split(ids)
    assert out.answer == "Hi"
    assert out.reasoning_tokens == ids.index(close_id) + 1


def test_smollm_splits_on_text_when_close_tag_is_several_tokens(smollm_tokenizer):
    assert len(_ids(smollm_tokenizer, THINK_CLOSE)) > 1
    ids = _ids(smollm_tokenizer, TEXT)
    out = ReasoningSplitter(smollm_tokenizer).split(ids)
    assert (out.reasoning, out.answer, out.reasoning_truncated) == ("plan", "Hello", False)
    assert THINK_CLOSE in smollm_tokenizer.decode(ids[: out.reasoning_tokens])
    assert THINK_CLOSE not in smollm_tokenizer.decode(ids[: out.reasoning_tokens - 1])
    assert out.reasoning_tokens < len(ids)


@pytest.mark.parametrize("fixture", ["smollm_tokenizer", "think_tokenizer"])
def test_prompt_opened_trace_holds_only_close_tag(fixture, request):
    tok = request.getfixturevalue(fixture)
    ids = _ids(tok, "step one\nstep two</think>\n\nThe answer.")
    out = ReasoningSplitter(tok, prompt_opens_think=True).split(ids)
    assert out.reasoning == "step one\nstep two"
    assert out.answer == "The answer."
    assert 0 < out.reasoning_tokens < len(ids)
    # Without the flag the same output is no trace at all; the stray tag is still dropped.
    plain = ReasoningSplitter(tok).split(ids)
    assert plain.reasoning == "" and plain.reasoning_tokens == 0
    assert plain.answer == "step one\nstep two\n\nThe answer."


def test_prompt_opens_think_detects_open_and_closed_blocks(think_tokenizer):
    msgs = [{"role": "user", "content": "hi"}]
    r1 = "<｜User｜>hi<｜Assistant｜><think>\n"
    assert prompt_opens_think(r1)
    assert prompt_opens_think("<|im_start|>assistant\n<think>\n\n")
    disabled = think_tokenizer.apply_chat_template(
        msgs, tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert "<think>\n\n</think>" in disabled
    assert not prompt_opens_think(disabled)
    enabled = think_tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert not prompt_opens_think(enabled)
    assert not prompt_opens_think("<|im_start|>user\nwhat is <think>?<|im_end|>\n<|im_start|>assistant\n")


@pytest.mark.parametrize("fixture", ["smollm_tokenizer", "think_tokenizer"])
def test_unclosed_trace_is_truncated_with_empty_answer(fixture, request):
    tok = request.getfixturevalue(fixture)
    ids = _ids(tok, "<think>\nI keep thinking and the budget")
    out = ReasoningSplitter(tok).split(ids)
    assert out.reasoning_truncated
    assert out.answer == ""
    assert out.reasoning == "I keep thinking and the budget"
    assert out.reasoning_tokens == len(ids)
    forced = ReasoningSplitter(tok, prompt_opens_think=True).split(_ids(tok, "still going"))
    assert (forced.reasoning, forced.answer, forced.reasoning_truncated) == ("still going", "", True)


@pytest.mark.parametrize("fixture", ["smollm_tokenizer", "think_tokenizer"])
def test_no_trace_is_all_answer(fixture, request):
    tok = request.getfixturevalue(fixture)
    out = ReasoningSplitter(tok).split(_ids(tok, "Just an answer, no <b>tags</b>."))
    assert out == type(out)("", "Just an answer, no <b>tags</b>.", False, 0)


@pytest.mark.parametrize("fixture", ["smollm_tokenizer", "think_tokenizer"])
def test_eos_and_trailing_special_tokens_are_dropped(fixture, request):
    tok = request.getfixturevalue(fixture)
    ids = _ids(tok, TEXT)
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    eot = tok.convert_tokens_to_ids("<|endoftext|>")
    clean = ReasoningSplitter(tok).split(ids)
    for tail in ([tok.eos_token_id], [im_end, eot], [im_end, tok.pad_token_id, tok.pad_token_id]):
        out = ReasoningSplitter(tok).split(ids + tail)
        assert out == clean
        assert out.answer == "Hello"
    unended = ReasoningSplitter(tok).split([*_ids(tok, "plain"), im_end])
    assert unended.answer == "plain"


def test_clean_special_tokens_keeps_think_tags(think_tokenizer):
    text = "<|im_start|><think>a</think>b<|im_end|><|endoftext|><repo_name>"
    assert clean_special_tokens(text, think_tokenizer) == "<think>a</think>b"


STREAM_CASES = [
    (TEXT, False),
    ("  \n<think>deep </thought> <thin </think>  answer with </ and <th", False),
    ("no trace <think> here</think> at all", False),
    ("opened by prompt</think>\n answer", True),
    ("<think>repeated open</think>x", True),
    ("<think>a<think>b</think>c<think>d", False),
    ("<think>never closed </thi", False),
    ("<th", False),
    ("  ", False),
    ("", True),
]


def _reference(text: str, forced: bool, tok) -> tuple[str, str, bool]:
    out = ReasoningSplitter(tok, prompt_opens_think=forced).split(_ids(tok, text))
    return out.reasoning, out.answer, out.reasoning_truncated


@pytest.mark.parametrize(("text", "forced"), STREAM_CASES)
def test_stream_matches_split_for_random_chunkings(text, forced, smollm_tokenizer):
    reasoning, answer, truncated = _reference(text, forced, smollm_tokenizer)
    rng = random.Random(text)
    chunkings = [list(text), [text]]
    for _ in range(300):
        cuts = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(0, 6)))) if text else []
        chunkings.append([text[a:b] for a, b in itertools.pairwise([0, *cuts, len(text)])])
    for deltas in chunkings:
        stream = ReasoningSplitter(smollm_tokenizer, prompt_opens_think=forced).stream()
        got_reasoning, got_answer = _run(stream, deltas)
        assert got_reasoning.strip() == reasoning
        assert got_answer == answer
        assert stream.reasoning_truncated == truncated


@pytest.mark.parametrize("text", ["<think>a</think> b", " <think></think>", "x</think> y<th"])
def test_stream_matches_split_for_every_small_chunking(text, smollm_tokenizer):
    for forced in (False, True):
        reasoning, answer, truncated = _reference(text, forced, smollm_tokenizer)
        for deltas in _chunkings(text):
            stream = StreamingSplit(prompt_opens_think=forced)
            got_reasoning, got_answer = _run(stream, deltas)
            assert (got_reasoning.strip(), got_answer) == (reasoning, answer), deltas
            assert stream.reasoning_truncated == truncated


@pytest.mark.parametrize("fixture", ["smollm_tokenizer", "think_tokenizer"])
def test_stream_matches_split_for_token_deltas(fixture, request):
    tok = request.getfixturevalue(fixture)
    ids = [*_ids(tok, "<think>\nLet me think: 2+2.\n</think>\n\nIt is 4."), tok.eos_token_id]
    splitter = ReasoningSplitter(tok)
    expected = splitter.split(ids)
    stream = splitter.stream()
    shown = [i for i in ids if i != tok.eos_token_id]
    deltas = [tok.decode(shown[: k + 1])[len(tok.decode(shown[:k])) :] for k in range(len(shown))]
    assert len(deltas) > 5
    got_reasoning, got_answer = _run(stream, deltas)
    assert got_reasoning.strip() == expected.reasoning == "Let me think: 2+2."
    assert got_answer == expected.answer == "It is 4."
    assert not stream.reasoning_truncated


def test_stream_holds_back_partial_tags():
    stream = StreamingSplit()
    assert stream.feed("  <th") == []
    assert stream.feed("ink>ok </") == [(Channel.REASONING, "ok ")]
    assert stream.feed("think") == []
    assert stream.feed(">\n\n") == []
    assert stream.feed("Hi") == [(Channel.ANSWER, "Hi")]
    assert stream.finish() == []
    assert not stream.reasoning_truncated
