"""The runtime seam: the transformers runtime's decode, steering and end-of-row rules, and that
steering hooks live in the runtime only (the method says what to add, the engine routes)."""

from __future__ import annotations

import ast
from pathlib import Path

import torch

from selfguard_guardrails.method.steering import steer, steering_spec
from selfguard_guardrails.runtime.decoding import DecodeClock, DecodeOptions
from selfguard_guardrails.runtime.layers import decoder_layers
from selfguard_guardrails.runtime.protocol import ModelRuntime
from tests.tiny_engines import PROMPTS, make_engine, random_vector

PACKAGE = Path(__file__).resolve().parents[1] / "selfguard_guardrails"


def _decode(runtime: ModelRuntime, texts: list[str], steering=None, stop_after: dict[int, int] | None = None,
            max_new_tokens: int = 10) -> list[list[int | None]]:
    batch = runtime.encode(texts)
    stopped = [False] * len(texts)
    steps = []
    for step, tokens in enumerate(runtime.decode(batch, DecodeOptions(max_new_tokens), steering, DecodeClock(),
                                                 stopped)):
        steps.append(tokens)
        for row, last_step in (stop_after or {}).items():
            if step == last_step:
                stopped[row] = True
    return steps


def test_decode_with_steering_equals_decoding_inside_steer(smollm_tokenizer):
    engine = make_engine(smollm_tokenizer)
    runtime, model = engine.runtime, engine.loaded.model
    texts = [engine.render_applied(p, "plain") for p in PROMPTS]
    vector = random_vector(model)
    spec = steering_spec(vector, strengths=[2.0, 0.5, 1.0], layers=(1, 2), scope="generated", max_tokens=None,
                         num_layers=runtime.num_layers, hidden_size=runtime.hidden_size)
    steered = _decode(runtime, texts, spec)
    lengths = runtime.encode(texts).prompt_lengths
    with steer(model, vector, strength=[2.0, 0.5, 1.0], layers=(1, 2), scope="generated", prompt_lengths=lengths):
        expected = _decode(runtime, texts)
    assert steered == expected
    assert steered != _decode(runtime, texts)  # the steering changed the tokens
    assert all(len(layer._forward_hooks) == 0 for layer in decoder_layers(model))  # removed after the decode


def test_rows_end_at_eos_or_when_the_caller_stops_them(smollm_tokenizer):
    engine = make_engine(smollm_tokenizer)
    runtime = engine.runtime
    texts = [engine.render_applied(p, "plain") for p in PROMPTS]
    steps = _decode(runtime, texts, stop_after={1: 2})
    assert all(tokens[1] is None for tokens in steps[3:])  # stopped after its third token
    assert all(token is not None for token in steps[2])
    assert len(steps) == 10  # the other rows ran to the budget


def test_a_row_that_reaches_eos_reports_none_from_then_on(smollm_tokenizer):
    engine = make_engine(smollm_tokenizer)
    runtime = engine.runtime
    eos = smollm_tokenizer.eos_token_id
    model = engine.loaded.model
    with torch.no_grad():  # make end-of-sequence the model's favourite token
        model.lm_head.weight[eos] += 50 * model.lm_head.weight.abs().max()
    steps = _decode(runtime, [engine.render_applied(PROMPTS[0], "plain")])
    assert steps == [[None]]  # the first step ended the row; the loop ended with it


def _calls_register_hook(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return [f"{path.relative_to(PACKAGE)}:{node.lineno}" for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr.startswith("register_forward")]


def test_forward_hooks_are_registered_only_in_the_runtime():
    outside = [hit for path in PACKAGE.rglob("*.py") if "runtime" not in path.relative_to(PACKAGE).parts
               for hit in _calls_register_hook(path)]
    inside = [hit for path in (PACKAGE / "runtime").rglob("*.py") for hit in _calls_register_hook(path)]
    assert inside, "the checker found no hook registration at all: it no longer sees what it looks for"
    assert not outside, f"forward hooks registered outside runtime/: {outside}"
