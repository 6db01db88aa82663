"""Engine mechanics on tiny random models: batching, streaming, locking, budgets, errors."""

from __future__ import annotations

import threading

import pytest
import torch

from selfguard_guardrails import SelfGuard, SteeringSetting
from selfguard_guardrails.errors import InvalidMessagesError, InvalidSettingError, PromptTooLongError
from selfguard_guardrails.results import GenerationResult, StreamPiece
from selfguard_guardrails.runtime.activations import last_token_activations
from selfguard_guardrails.runtime.layers import decoder_layers
from selfguard_guardrails.settings import Mode
from tests.conftest import tiny_gpt2, tiny_llama, tiny_qwen3
from tests.tiny_engines import PROMPTS, make_engine


@pytest.fixture(params=[tiny_llama, tiny_qwen3, tiny_gpt2], ids=["llama", "qwen3", "gpt2"])
def engine(request, smollm_tokenizer):
    return make_engine(smollm_tokenizer, request.param)


@pytest.mark.parametrize("mode", ["plain", "self-guard"])
def test_left_padded_batch_matches_one_by_one(engine, mode):
    batched = engine.batch(PROMPTS, mode=mode, max_new_tokens=10)
    single = [engine.generate(p, mode=mode, max_new_tokens=10) for p in PROMPTS]
    for b, s in zip(batched, single, strict=True):
        assert b.answer == s.answer
        assert b.usage == s.usage


def test_left_padded_batch_activations_match_one_by_one(engine):
    texts = [engine.render(p, mode="self-guard") for p in PROMPTS]
    model, tokenizer = engine.loaded.model, engine.loaded.tokenizer
    batched = last_token_activations(model, tokenizer, texts, batch_size=3, progress=False)
    single = torch.cat([last_token_activations(model, tokenizer, [t], progress=False) for t in texts])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-4)


def test_modes_apply_what_they_say(engine):
    plain = engine.generate("Hello there", mode="plain", max_new_tokens=4)
    guarded = engine.generate("Hello there", mode="self-guard", max_new_tokens=4)
    steer_only = engine.generate("Hello there", mode="steer", max_new_tokens=4)
    assert plain.steering is None and not plain.safety_prompt_applied
    assert guarded.steering is not None and guarded.steering.layers == [1, 2] and guarded.safety_prompt_applied
    assert steer_only.steering is not None and not steer_only.safety_prompt_applied
    assert guarded.usage.input_tokens > plain.usage.input_tokens  # the safety prompt is in the prompt


def test_steering_changes_the_output_distribution(smollm_tokenizer):
    engine = make_engine(smollm_tokenizer, setting=SteeringSetting(layers=(0, 1, 2, 3), strength=8.0))
    plain = engine.generate("Hello there", mode="prompt", max_new_tokens=12)
    steered = engine.generate("Hello there", mode="self-guard", max_new_tokens=12)
    assert plain.answer != steered.answer


def test_stream_pieces_add_up_to_the_result(engine):
    items = list(engine.stream(PROMPTS[0], max_new_tokens=12))
    result = items[-1]
    assert isinstance(result, GenerationResult)
    pieces = [i for i in items[:-1] if isinstance(i, StreamPiece)]
    answer = "".join(p.text for p in pieces if p.channel == "answer")
    assert answer.strip() == result.answer.strip()
    assert result.answer == engine.generate(PROMPTS[0], max_new_tokens=12).answer


def test_abandoned_stream_releases_the_engine(engine):
    layers = decoder_layers(engine.loaded.model)
    hooks_seen: list[int] = []  # steering hooks on layer 1 at each forward pass of the stream
    watcher = engine.loaded.model.register_forward_pre_hook(lambda *a: hooks_seen.append(len(layers[1]._forward_hooks)))
    try:
        stream = engine.stream(PROMPTS[0], max_new_tokens=100, min_new_tokens=100)
        first = next(stream)
    finally:
        watcher.remove()
    assert isinstance(first, (StreamPiece, GenerationResult))
    assert hooks_seen and all(count == 1 for count in hooks_seen)  # steering is on while the stream decodes
    stream.close()  # the caller walks away
    assert all(len(layer._forward_hooks) == 0 for layer in layers)
    done = []
    worker = threading.Thread(target=lambda: done.append(engine.generate("Hi", max_new_tokens=2)))
    worker.start()
    worker.join(timeout=30)
    assert done, "the engine stayed locked after the stream was abandoned"


def test_an_abandoned_stream_is_audited_with_what_was_generated(smollm_tokenizer):
    from tests.audit_sinks import ListSink

    engine = make_engine(smollm_tokenizer, leak_policy="log")  # no hold-back: pieces come token by token
    sink = ListSink()
    stream = engine.stream(PROMPTS[0], max_new_tokens=100, min_new_tokens=100, audit_sinks=[sink])
    shown = [next(stream) for _ in range(3)]
    stream.close()
    (record,) = sink.records
    assert record.finish_reason == "abandoned" and 0 < record.output_tokens < 100
    assert all(isinstance(piece, StreamPiece) for piece in shown)
    finished = ListSink()
    engine.generate(PROMPTS[1], max_new_tokens=2, audit_sinks=[finished])
    assert finished.records[0].finish_reason in ("eos", "length")


def test_concurrent_calls_are_serialised_and_correct(engine):
    expected = {p: engine.generate(p, max_new_tokens=8).answer for p in PROMPTS}
    results: dict[str, str] = {}
    errors: list[BaseException] = []

    def run(prompt: str) -> None:
        try:
            results[prompt] = engine.generate(prompt, max_new_tokens=8).answer
        except BaseException as error:  # surfaced below
            errors.append(error)

    threads = [threading.Thread(target=run, args=(p,)) for p in PROMPTS * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and results == expected


def test_stop_string_ends_generation_and_is_cut(engine):
    free = engine.generate(PROMPTS[2], max_new_tokens=16, min_new_tokens=16)
    text = free.answer
    assert len(text) > 6
    stop = text[len(text) // 2: len(text) // 2 + 3]
    cut = engine.generate(PROMPTS[2], max_new_tokens=16, min_new_tokens=16, stop=[stop])
    assert cut.finish_reason == "stop"
    assert cut.answer == text[: text.find(stop)]
    assert cut.usage.output_tokens < free.usage.output_tokens
    streamed = "".join(i.text for i in engine.stream(PROMPTS[2], max_new_tokens=16, min_new_tokens=16, stop=[stop])
                       if isinstance(i, StreamPiece))
    assert stop not in streamed and streamed.strip() == cut.answer.strip()


def test_min_new_tokens_holds_back_eos(smollm_tokenizer):
    engine = make_engine(smollm_tokenizer)
    first = engine.generate("Hi", mode="plain", max_new_tokens=1)
    first_token = smollm_tokenizer.encode(first.answer, add_special_tokens=False)[0]
    engine = make_engine(smollm_tokenizer)
    engine.loaded.model.generation_config.eos_token_id = first_token
    engine = SelfGuard(engine.loaded, vector=engine._vector_source, setting=engine._explicit_setting)
    assert engine.generate("Hi", mode="plain", max_new_tokens=5).finish_reason == "eos"
    held = engine.generate("Hi", mode="plain", max_new_tokens=5, min_new_tokens=3)
    assert held.usage.output_tokens >= 3


def test_sampling_is_reproducible_with_a_seed(engine):
    a = engine.generate(PROMPTS[0], temperature=1.0, seed=7, max_new_tokens=8)
    b = engine.generate(PROMPTS[0], temperature=1.0, seed=7, max_new_tokens=8)
    assert a.answer == b.answer


def test_prompt_longer_than_context_window_is_refused(smollm_tokenizer):
    engine = make_engine(smollm_tokenizer, context_window=64)
    with pytest.raises(PromptTooLongError, match="context window of 64"):
        engine.generate("word " * 80, max_new_tokens=4)
    with pytest.raises(PromptTooLongError, match="lower max_new_tokens"):
        engine.generate("Hi", max_new_tokens=60)


@pytest.mark.parametrize("messages, message", [
    ([{"role": "wizard", "content": "hi"}], "unknown role"),
    ("   ", "empty"),
    ([{"role": "system", "content": "be nice"}], "no user message"),
    ([{"role": "user"}], "content"),
    (42, "must be a string"),
])
def test_malformed_messages_are_refused(engine, messages, message):
    with pytest.raises(InvalidMessagesError, match=message):
        engine.generate(messages, max_new_tokens=2)


@pytest.mark.parametrize("options", [{"max_new_tokens": 0}, {"temperature": -1.0}, {"mode": "yolo"},
                                     {"min_new_tokens": 5, "max_new_tokens": 2}, {"top_p": 0.0},
                                     {"repetition_penalty": 0.9}, {"repetition_penalty": float("nan")}])
def test_bad_generation_options_are_refused(engine, options):
    with pytest.raises(InvalidSettingError):
        engine.generate("Hi", **options)


def test_out_of_range_setting_is_refused(smollm_tokenizer):
    engine = make_engine(smollm_tokenizer, setting=SteeringSetting(layers=(3, 9), strength=0.5))
    with pytest.raises(InvalidSettingError, match="Layer index 9 is out of range"):
        engine.generate("Hi", max_new_tokens=2)


def test_thinking_switch_and_think_split_on_qwen3_template(think_tokenizer):
    engine = make_engine(think_tokenizer, tiny_qwen3, thinking=False)
    assert engine.render("Hi").rstrip().endswith("</think>")
    result = engine.generate("Hi", max_new_tokens=4)
    assert result.reasoning == "" and not result.reasoning_truncated


def test_call_during_an_open_stream_on_the_same_thread_is_refused(engine):
    from selfguard_guardrails.runtime.locking import EngineBusyError

    stream = engine.stream(PROMPTS[0], max_new_tokens=20, min_new_tokens=20)
    next(stream)
    with pytest.raises(EngineBusyError, match="close"):
        engine.generate("Hi", mode="plain", max_new_tokens=2)
    twin = SelfGuard(engine.loaded, vector=engine._vector_source, setting=engine._explicit_setting)
    with pytest.raises(EngineBusyError):  # a second engine on the same model shares the lock
        twin.generate("Hi", mode="plain", max_new_tokens=2)
    stream.close()
    assert engine.generate("Hi", mode="plain", max_new_tokens=2).usage.output_tokens >= 1


def test_extraction_reads_the_last_prompt_token_even_with_a_right_padding_tokenizer(engine):
    texts = [engine.render(p, mode="plain") for p in PROMPTS]
    model, tokenizer = engine.loaded.model, engine.loaded.tokenizer
    left = last_token_activations(model, tokenizer, texts, progress=False)
    tokenizer.padding_side = "right"
    try:
        right = last_token_activations(model, tokenizer, texts, progress=False)
        assert tokenizer.padding_side == "right"  # the caller's setting is restored
    finally:
        tokenizer.padding_side = "left"
    torch.testing.assert_close(left, right)


def test_penalise_repeats_arithmetic():
    from selfguard_guardrails.runtime.decoding import penalise_repeats

    logits = torch.tensor([[2.0, -2.0, 3.0, -1.0]])
    seen = torch.tensor([[True, True, False, False]])
    assert torch.equal(penalise_repeats(logits, seen, 2.0), torch.tensor([[1.0, -4.0, 3.0, -1.0]]))


def test_repetition_penalty_matches_a_reference_greedy_loop(smollm_tokenizer):
    """The decoder's penalty equals recomputing every step from scratch and penalising by hand."""
    from selfguard_guardrails.runtime.decoding import penalise_repeats

    engine = make_engine(smollm_tokenizer)
    model = engine.loaded.model
    prompt = engine.runtime.encode([engine.render_applied("Tell me a story about a cat.", Mode.PLAIN)])
    ids = prompt.input_ids[0].tolist()
    generated: list[int] = []
    with torch.inference_mode():
        for _ in range(16):
            logits = model(input_ids=torch.tensor([ids + generated])).logits[0, -1:]
            seen = torch.zeros_like(logits, dtype=torch.bool)
            seen[0, generated] = True
            generated.append(int(penalise_repeats(logits, seen, 3.0).argmax()))
    eos = engine.loaded.tokenizer.eos_token_id
    expected = generated[:generated.index(eos)] if eos in generated else generated
    result = engine.generate("Tell me a story about a cat.", mode="plain", max_new_tokens=16, repetition_penalty=3.0)
    assert result.usage.output_tokens >= len(expected)
    plain = engine.generate("Tell me a story about a cat.", mode="plain", max_new_tokens=16)
    assert engine.loaded.tokenizer.decode(expected) == result.answer != plain.answer


def test_setting_penalty_applies_to_steered_answers_only(smollm_tokenizer):
    setting = SteeringSetting(layers=(1, 2), strength=2.0, repetition_penalty=3.0)
    engine = make_engine(smollm_tokenizer, setting=setting)
    unpenalised = make_engine(smollm_tokenizer)
    steered = engine.generate("Hi", mode="steer", max_new_tokens=12)
    assert steered.steering.repetition_penalty == 3.0
    assert steered.answer == unpenalised.generate("Hi", mode="steer", max_new_tokens=12, repetition_penalty=3.0).answer
    assert steered.answer != unpenalised.generate("Hi", mode="steer", max_new_tokens=12).answer
    assert engine.generate("Hi", mode="plain", max_new_tokens=12).answer == unpenalised.generate(
        "Hi", mode="plain", max_new_tokens=12).answer
    streamed = list(engine.stream("Hi", mode="steer", max_new_tokens=12))[-1]
    assert streamed.answer == steered.answer
    with pytest.raises(InvalidSettingError, match="repetition_penalty"):
        SteeringSetting(layers=(1,), strength=1.0, repetition_penalty=0.5)


def test_scored_texts_match_a_forward_pass_per_row_despite_padding(engine):
    """`score_texts` is the sum of the target's log-probabilities, whatever else is in the batch."""
    pairs = [("Tool a: adds numbers\nA question this tool answers: ", "What is 2+2?"),
             ("A much longer context that pads the other row " * 3, "Hi")]
    batched = engine.score_texts(pairs)
    tokenizer, model = engine.loaded.tokenizer, engine.loaded.model
    for (context, target), score in zip(pairs, batched, strict=True):
        c = tokenizer(context, add_special_tokens=False)["input_ids"]
        t = tokenizer(target, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([c + t])).logits[0].float().log_softmax(-1)
        expected = sum(float(logits[len(c) - 1 + i, token]) for i, token in enumerate(t))
        assert score == pytest.approx(expected, abs=1e-3)
    with pytest.raises(InvalidSettingError, match="pairs"):
        engine.score_texts([("context", "")])


def test_partial_generations_are_not_audited_until_finished(engine):
    """Pieces of an assembled answer write nothing; `finish` writes the one record."""
    records: list = []
    sink = type("Sink", (), {"write": lambda self, record: records.append(record), "close": lambda self: None})()
    piece = engine.generate("Hello", max_new_tokens=2, partial=True, audit_sinks=[sink])
    assert records == []
    engine.finish("Hello", piece, audit_sinks=[sink], audit_fields={"run": "r1"})
    assert len(records) == 1 and records[0].context["run"] == "r1"


def test_batch_audit_sinks_and_fields_can_be_given_per_prompt(engine):
    records: dict[str, list] = {"a": [], "b": []}
    sinks = {key: type("Sink", (), {"write": lambda self, r, k=key: records[k].append(r),
                                    "close": lambda self: None})() for key in records}
    engine.batch(["one", "two"], max_new_tokens=2, audit_sinks=[[sinks["a"]], [sinks["b"]]],
                 audit_fields=[{"row": 0}, {"row": 1}])
    assert [r.context["row"] for r in records["a"]] == [0] and [r.context["row"] for r in records["b"]] == [1]
    with pytest.raises(InvalidSettingError, match="one per prompt"):
        engine.batch(["one", "two"], max_new_tokens=2, audit_fields=[{"row": 0}])


def test_scored_continuations_match_the_rendered_prompt_forward_pass(engine):
    options = ["yes", "no thanks"]
    scores = engine.score_continuations("Do you like tea?", options, mode="plain", prefix="Answer: ")
    tokenizer, model = engine.loaded.tokenizer, engine.loaded.model
    prompt = tokenizer(engine.render("Do you like tea?", mode="plain") + "Answer: ",
                       add_special_tokens=False)["input_ids"]
    for option, score in zip(options, scores, strict=True):
        target = tokenizer(option, add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([prompt + target])).logits[0].float().log_softmax(-1)
        assert score == pytest.approx(sum(float(logits[len(prompt) - 1 + i, t]) for i, t in enumerate(target)),
                                      abs=1e-3)
    steered = engine.score_continuations("Do you like tea?", options, mode="steer", prefix="Answer: ")
    assert steered != pytest.approx(scores, abs=1e-4)  # the steering hooks were on


@pytest.mark.parametrize("baseline", ["neutral", "bare"])
def test_extraction_is_the_mean_shift_from_the_baseline_to_the_safety_prompt(engine, tmp_path, baseline):
    """v_l = mean_x [h_l(safety ⊕ x) − h_l(baseline ⊕ x)], the baseline recorded in the file."""
    from selfguard_guardrails.method.extraction import extract_steering_vector
    from selfguard_guardrails.method.prompting import BASELINES, apply_safety_prompt
    from selfguard_guardrails.method.vector import SteeringVector
    from selfguard_guardrails.runtime.chat import ChatRenderer, normalize_messages

    model, tokenizer, safety = engine.loaded.model, engine.loaded.tokenizer, engine.safety_prompt
    against = BASELINES[baseline]
    renderer = ChatRenderer(tokenizer)

    def states(prompt_texts):
        texts = [renderer.render(apply_safety_prompt(normalize_messages(p), prompt_texts)) for p in PROMPTS]
        return last_token_activations(model, tokenizer, texts, progress=False)

    expected = (states(safety) - states(against)).mean(dim=0)
    vector = extract_steering_vector(model, tokenizer, PROMPTS, safety=safety, baseline=against, progress=False)
    for layer, direction in vector.directions.items():
        torch.testing.assert_close(direction, expected[layer])
    assert vector.baseline_hash == (against.fingerprint() if against else "")
    assert SteeringVector.load(vector.save(tmp_path / "v.safetensors")).baseline_hash == vector.baseline_hash
    other = extract_steering_vector(model, tokenizer, PROMPTS, safety=safety, progress=False,
                                    baseline=BASELINES["bare" if baseline == "neutral" else "neutral"])
    assert not torch.allclose(other.directions[1], vector.directions[1])
