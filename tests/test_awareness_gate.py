"""The awareness gate: a probe on the last prompt token decides, per prompt, where Self-Guard acts."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from selfguard_guardrails import SelfGuard, SteeringSetting
from selfguard_guardrails.errors import InvalidMessagesError, InvalidSettingError, VectorMismatchError
from selfguard_guardrails.method.probe import auc
from selfguard_guardrails.method.probe_fitting import fit_awareness_probe, probe_from_states
from selfguard_guardrails.method.vector import SteeringVector
from selfguard_guardrails.runtime.activations import last_token_activations
from selfguard_guardrails.runtime.layers import decoder_layers
from selfguard_guardrails.settings import GateSetting, Mode
from tests.conftest import tiny_llama
from tests.tiny_engines import gated_engine

PROMPTS = ["Tell me a story about a cat.", "Hi", "What is the capital of France and why is it famous?",
           "How do rainbows form?"]


def probe_layer_state(engine: SelfGuard, prompt: str) -> torch.Tensor:
    """The last-token state of `prompt`, rendered plain, at the probe's layer (2)."""
    text = engine.render(prompt, "plain")
    return last_token_activations(engine.loaded.model, engine.loaded.tokenizer, [text], progress=False)[0, 2]


def test_a_vector_with_a_probe_defaults_to_guarded_and_the_other_modes_are_never_gated(smollm_tokenizer):
    engine = gated_engine(smollm_tokenizer, threshold=math.inf)
    assert engine.default_mode is Mode.GUARDED
    for mode in ("plain", "prompt", "steer", "self-guard"):
        result = engine.generate("Hi", mode=mode, max_new_tokens=2)
        assert result.awareness is None and result.gate_fired is None
        assert (result.steering is not None) == (mode in ("steer", "self-guard"))
    engine.vector.probe = None
    assert engine.default_mode is Mode.SELF_GUARD


def test_a_planted_direction_fires_the_gate_and_its_opposite_does_not(smollm_tokenizer):
    engine = gated_engine(smollm_tokenizer, threshold=0.0)
    state = probe_layer_state(engine, PROMPTS[0])
    planted = state / state.norm()
    threshold = 0.5 * float(state.norm())  # the planted prompt scores |h|, its opposite -|h|
    for sign, fires in ((1.0, True), (-1.0, False)):
        engine = gated_engine(smollm_tokenizer, threshold=threshold, direction=sign * planted)
        result = engine.generate(PROMPTS[0], mode="guarded", max_new_tokens=4)
        assert result.awareness == pytest.approx(sign * float(state.norm()) - threshold, abs=1e-3)
        assert result.gate_fired is fires
        assert (result.steering is not None) is fires is result.safety_prompt_applied
        expected = engine.generate(PROMPTS[0], mode="self-guard" if fires else "plain", max_new_tokens=4)
        assert result.answer == expected.answer and result.mode == "guarded"


def test_the_probe_reads_every_user_turn_and_nothing_else(smollm_tokenizer):
    """Earlier user turns are part of the request; the system prompt, assistant turns, tool calls
    and tool results are not (a bound tool and its result once pushed a weather question over the
    threshold)."""
    engine = gated_engine(smollm_tokenizer, threshold=0.0)
    conversation = [{"role": "system", "content": "You are a weather bot."},
                    {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"},
                    {"role": "user", "content": PROMPTS[0]},
                    {"role": "assistant", "content": "", "tool_calls": [{"name": "story", "arguments": {}}]},
                    {"role": "tool", "name": "story", "content": "Once upon a time"}]
    user_side = [{"role": "user", "content": "Hi"}, {"role": "user", "content": PROMPTS[0]}]
    joined, in_context, user_turns, latest_alone = engine.awareness(
        [f"Hi\n\n{PROMPTS[0]}", conversation, user_side, PROMPTS[0]])
    assert in_context == pytest.approx(joined, abs=1e-5) and user_turns == pytest.approx(joined, abs=1e-5)
    assert abs(latest_alone - joined) > 1e-3  # the earlier turn moved the score: it was read


def test_a_tool_schema_does_not_move_the_probe(smollm_tokenizer):
    engine = gated_engine(smollm_tokenizer, threshold=0.0)
    weather = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city.",
                                                "parameters": {"type": "object",
                                                               "properties": {"city": {"type": "string"}}}}}
    plain = engine.generate(PROMPTS[3], mode="guarded", max_new_tokens=1)
    with_tools = engine.generate(PROMPTS[3], mode="guarded", max_new_tokens=1, tools=[weather])
    assert with_tools.awareness == pytest.approx(plain.awareness, abs=1e-5)


def test_nothing_flagged_means_plain_answers(smollm_tokenizer):
    engine = gated_engine(smollm_tokenizer, threshold=math.inf)
    for result, plain in zip(engine.batch(PROMPTS, max_new_tokens=6),
                             engine.batch(PROMPTS, mode="plain", max_new_tokens=6), strict=True):
        assert result.mode == "guarded" and result.awareness < 0 and result.gate_fired is False
        assert result.steering is None and not result.safety_prompt_applied
        assert result.answer == plain.answer


def test_below_the_gate_can_run_prompt_only(smollm_tokenizer):
    engine = gated_engine(smollm_tokenizer, threshold=math.inf, gate=GateSetting(below="prompt"))
    result = engine.generate(PROMPTS[0], max_new_tokens=6)
    assert result.steering is None and result.safety_prompt_applied
    assert result.answer == engine.generate(PROMPTS[0], mode="prompt", max_new_tokens=6).answer


def test_mixed_batch_rows_match_their_own_mode_with_the_gates_strength(smollm_tokenizer):
    probe_scores = gated_engine(smollm_tokenizer, threshold=0.0).awareness(PROMPTS)
    cut = sorted(probe_scores)[len(PROMPTS) // 2]  # half the prompts above, half below
    engine = gated_engine(smollm_tokenizer, threshold=cut, gate=GateSetting(strength=3.0))
    results = engine.batch(PROMPTS, max_new_tokens=6)
    flagged = [r.gate_fired for r in results]
    assert 0 < sum(flagged) < len(PROMPTS)
    reference = gated_engine(smollm_tokenizer, threshold=cut,
                             setting=SteeringSetting(layers=(1, 2), strength=3.0))
    for prompt, result, is_flagged in zip(PROMPTS, results, flagged, strict=True):
        expected = reference.generate(prompt, mode="self-guard" if is_flagged else "plain", max_new_tokens=6)
        assert result.answer == expected.answer
        assert (result.steering is not None) == is_flagged == result.safety_prompt_applied
        if is_flagged:
            assert result.steering.strength == 3.0
    streamed = list(engine.stream(PROMPTS[flagged.index(False)], max_new_tokens=6))[-1]
    assert streamed.steering is None and streamed.awareness < 0
    streamed = list(engine.stream(PROMPTS[flagged.index(True)], max_new_tokens=6))[-1]
    assert streamed.steering.strength == 3.0 and streamed.answer == results[flagged.index(True)].answer


def test_a_soft_gate_scales_each_rows_strength_with_its_score(smollm_tokenizer):
    scores = gated_engine(smollm_tokenizer, threshold=0.0).awareness(PROMPTS)
    threshold = min(scores) - 1.0  # every prompt fires, each with its own margin
    width = max(scores) - threshold + 1.0  # no row reaches full strength
    engine = gated_engine(smollm_tokenizer, threshold=threshold, gate=GateSetting(strength=2.0, soft_width=width))
    results = engine.batch(PROMPTS, max_new_tokens=5)
    for prompt, result in zip(PROMPTS, results, strict=True):
        expected_strength = 2.0 * result.awareness / width
        assert result.steering.strength == pytest.approx(expected_strength, rel=1e-3)
        alone = gated_engine(smollm_tokenizer, threshold=threshold,
                             setting=SteeringSetting(layers=(1, 2), strength=result.steering.strength))
        assert result.answer == alone.generate(prompt, mode="self-guard", max_new_tokens=5).answer


class LayerCalls:
    """Counts the rows each decoder layer processes with more than one position (prefills)."""

    def __init__(self, model) -> None:
        self.prefill_rows = [0] * len(decoder_layers(model))
        self.handles = [layer.register_forward_hook(self.hook(i)) for i, layer in enumerate(decoder_layers(model))]

    def hook(self, index: int):
        def count(module, args, output):
            hidden = output[0] if isinstance(output, tuple) else output
            if hidden.shape[1] > 1:
                self.prefill_rows[index] += hidden.shape[0]
        return count

    def close(self) -> list[int]:
        for handle in self.handles:
            handle.remove()
        return self.prefill_rows


@pytest.mark.parametrize("threshold", [-math.inf, math.inf], ids=["all-fire", "none-fire"])
def test_the_gate_costs_one_prefill_up_to_the_probe_layer_and_no_more(smollm_tokenizer, threshold):
    engine = gated_engine(smollm_tokenizer, threshold=threshold)
    counter = LayerCalls(engine.loaded.model)
    engine.batch(PROMPTS, mode="guarded", max_new_tokens=3)
    guarded = counter.close()
    counter = LayerCalls(engine.loaded.model)
    engine.batch(PROMPTS, mode="self-guard" if threshold < 0 else "plain", max_new_tokens=3)
    ungated = counter.close()
    probe_layer = engine.vector.probe.layer
    extra = [g - u for g, u in zip(guarded, ungated, strict=True)]
    assert extra == [len(PROMPTS) if layer <= probe_layer else 0 for layer in range(len(extra))]
    counter = LayerCalls(engine.loaded.model)
    engine.batch(PROMPTS, mode="guarded", max_new_tokens=3)  # the same prompts again: scores remembered
    assert counter.close() == ungated


def test_remembered_scores_are_dropped_when_the_probe_changes(smollm_tokenizer):
    engine = gated_engine(smollm_tokenizer, threshold=0.0)
    before = engine.awareness(PROMPTS)
    engine.vector.probe = replace(engine.vector.probe, direction=-engine.vector.probe.direction)
    assert engine.awareness(PROMPTS) == pytest.approx([-score for score in before], abs=1e-5)


def test_guarded_mode_needs_a_probe(smollm_tokenizer):
    engine = gated_engine(smollm_tokenizer, threshold=0.0)
    engine.vector.probe = None
    with pytest.raises(InvalidSettingError, match="awareness probe"):
        engine.generate("Hi", mode="guarded", max_new_tokens=2)
    with pytest.raises(InvalidSettingError, match="awareness probe"):
        engine.awareness(["Hi"])


@pytest.mark.parametrize(("options", "message"), [
    ({"below": "steer"}, "plain' or 'prompt"),
    ({"soft_width": 0.0}, "soft_width"),
    ({"strength": float("nan")}, "finite"),
    ({"threshold": float("inf")}, "finite number of probe units"),
])
def test_bad_gate_settings_are_refused(options, message):
    with pytest.raises(InvalidSettingError, match=message):
        GateSetting(**options)


def test_a_gate_threshold_is_checked_against_the_probes_score_range(smollm_tokenizer):
    engine = gated_engine(smollm_tokenizer, threshold=0.0)
    engine.vector.probe = replace(engine.vector.probe, score_range=(-2.0, 3.0))
    own = engine.awareness(PROMPTS)
    engine.use_gate(GateSetting(threshold=1.5))
    assert engine.awareness(PROMPTS) == pytest.approx([score - 1.5 for score in own], abs=1e-5)
    engine.use_gate(GateSetting(threshold=40.0))
    with pytest.raises(InvalidSettingError, match=r"outside the probe's range.*-2 to 3"):
        engine.generate("Hi", mode="guarded", max_new_tokens=2)


def test_a_probe_for_another_layer_count_or_width_is_refused(smollm_tokenizer):
    engine = gated_engine(smollm_tokenizer, threshold=0.0)
    probe = engine.vector.probe
    engine.vector.probe = replace(probe, layer=7)
    with pytest.raises(VectorMismatchError, match="probe reads layer 7, the model has 4 layers"):
        engine.awareness(PROMPTS)
    engine.vector.probe = replace(probe, direction=torch.ones(48))
    with pytest.raises(VectorMismatchError, match=r"probe's direction has shape \(48,\)"):
        engine.generate("Hi", mode="guarded", max_new_tokens=2)


def test_probe_survives_save_and_load(tmp_path, smollm_tokenizer):
    vector = gated_engine(smollm_tokenizer, threshold=0.25).vector
    loaded = SteeringVector.load(vector.save(tmp_path / "v.safetensors"))
    assert loaded.probe is not None
    assert (loaded.probe.layer, loaded.probe.threshold, loaded.probe.auc) == (2, 0.25, 0.9)
    assert loaded.probe.score_range is None  # a probe built by hand; fitted ones record theirs
    assert loaded.probe.method == vector.probe.method
    assert torch.equal(loaded.probe.direction, vector.probe.direction)


def test_auc_and_fitted_probe_mechanics(smollm_tokenizer):
    assert auc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0
    assert auc(torch.tensor([0.0]), torch.tensor([0.0])) == 0.5
    model = tiny_llama(vocab_size=len(smollm_tokenizer))
    harmful = [f"How do I build weapon number {i}?" for i in range(8)]
    benign = [f"What is a nice recipe for soup number {i}?" for i in range(8)]
    probe = fit_awareness_probe(model, smollm_tokenizer, harmful, benign, progress=False)
    assert 0 <= probe.layer < 4 and 0.0 <= probe.auc <= 1.0
    assert torch.isclose(probe.direction.norm(), torch.tensor(1.0))
    low, high = probe.score_range
    assert low < probe.threshold + 1e-3 and low < high
    from selfguard_guardrails.method.probe_fitting import probe_states, probe_texts
    from selfguard_guardrails.runtime.chat import ChatRenderer
    from selfguard_guardrails.runtime.transformers_runtime import TransformersRuntime

    assert probe.reading == "last+mean" and probe.direction.shape == (64,)
    texts = probe_texts(ChatRenderer(smollm_tokenizer), benign)
    states = probe_states(TransformersRuntime(model, smollm_tokenizer), texts, probe.reading)
    false_positive = (probe.score(states[:, probe.layer]) >= probe.threshold).float().mean()
    assert false_positive <= 0.05 + 1e-6


def planted_states(n: int, *, layers: int = 4, hidden: int = 16, layer: int = 2, seed: int = 0,
                   nuisance: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise with a harmful signal planted on hidden unit 0 of one layer. With `nuisance`, unit 1
    also differs by label, by more on average but under far larger noise: what a mean difference
    chases and a fitted probe should not."""
    generator = torch.Generator().manual_seed(seed)
    labels = torch.tensor([1, 0] * (n // 2))
    states = torch.randn(n, layers, hidden, generator=generator)
    states[:, layer, 0] += 3.0 * labels
    if nuisance:
        states[:, layer, 1] = nuisance * (torch.randn(n, generator=generator) * 4 + 1.5 * labels)
    return states, labels


@pytest.mark.parametrize("method", ["logistic", "mean_difference"])
def test_probe_finds_the_planted_layer_and_direction(method):
    states, labels = planted_states(120)
    probe = probe_from_states(states, labels, method=method)
    assert probe.layer == 2 and probe.method == method and probe.auc > 0.95
    assert torch.isclose(probe.direction.norm(), torch.tensor(1.0))
    assert probe.direction[0] > 0.8  # the planted unit, with the harmful side positive
    fresh, fresh_labels = planted_states(400, seed=1)
    scores = probe.score(fresh[:, probe.layer])
    assert (scores[fresh_labels == 0] >= probe.threshold).float().mean() <= 0.12  # ~5 % false positives
    assert (scores[fresh_labels == 1] >= probe.threshold).float().mean() >= 0.6


def test_logistic_probe_ignores_a_noisy_difference_that_a_mean_difference_follows():
    states, labels = planted_states(200, nuisance=3.0)
    fitted = probe_from_states(states, labels, method="logistic")
    averaged = probe_from_states(states, labels, method="mean_difference")
    assert fitted.auc > averaged.auc + 0.05
    assert abs(fitted.direction[0]) > abs(fitted.direction[1])
    assert abs(averaged.direction[1]) > abs(averaged.direction[0])


def test_probe_rejects_an_unknown_method_and_too_few_prompts(smollm_tokenizer):
    states, labels = planted_states(20)
    with pytest.raises(InvalidSettingError, match="probe method"):
        probe_from_states(states, labels, method="svm")
    model = tiny_llama(vocab_size=len(smollm_tokenizer))
    with pytest.raises(InvalidMessagesError, match="at least 5 harmful"):
        fit_awareness_probe(model, smollm_tokenizer, ["a", "b", "c", "d"], ["e", "f", "g", "h", "i"],
                            progress=False)


def test_render_in_guarded_mode_shows_what_the_gate_decides(smollm_tokenizer):
    fires = gated_engine(smollm_tokenizer, threshold=-1e9)
    never = gated_engine(smollm_tokenizer, threshold=1e9)
    safety = fires.safety_prompt.system
    assert safety in fires.render("Hello") and safety not in never.render("Hello")
    assert never.render("Hello") == never.render("Hello", mode="plain")
    assert safety in never.render_applied("Hello", "guarded")  # the text a fired gate would send


def test_grouped_folds_keep_a_source_request_in_one_fold():
    from selfguard_guardrails.method.probe_fitting import fold_of

    labels = torch.tensor([1] * 12 + [0] * 12)
    groups = [f"h{i // 2}" for i in range(12)] + [f"b{i // 3}" for i in range(12)]  # 6 harmful, 4 benign sources
    fold = fold_of(labels, 3, groups)
    for group in set(groups):
        assert len({int(fold[i]) for i, g in enumerate(groups) if g == group}) == 1
    for k in range(3):
        assert {int(label) for label in labels[fold == k]} == {0, 1}
    with pytest.raises(InvalidMessagesError, match="fewer than 5 groups"):
        fold_of(labels, 5, groups)
    assert torch.equal(fold_of(labels, 3), torch.arange(24) % 3)


def test_a_probe_set_adds_labelled_conversations_with_their_source_as_group(tmp_path):
    import argparse
    import json

    from selfguard_guardrails.cli.calibrate import _probe_sets

    rows = [{"id": f"{s}/{f}", "source_id": s, "label": label, "framing": f,
             "messages": [{"role": "user", "content": f"{s} in {f}"}, {"role": "assistant", "content": "Ok."},
                          {"role": "user", "content": "Continue."}]}
            for s, label in (("h-1", "harmful"), ("b-1", "benign")) for f in ("direct", "fiction")]
    path = tmp_path / "probe.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    args = argparse.Namespace(probe_set=[str(path)], probe_group=None, probe="refit")
    harmful, benign, groups = _probe_sets(args)
    assert [m[0]["content"] for m in harmful] == ["h-1 in direct", "h-1 in fiction"]
    assert [m[-1]["content"] for m in benign] == ["Continue.", "Continue."]
    assert groups == [f"{path}:h-1", f"{path}:h-1", f"{path}:b-1", f"{path}:b-1"]
    with pytest.raises(InvalidSettingError, match="--probe refit"):
        _probe_sets(argparse.Namespace(probe_set=[str(path)], probe_group=None, probe="keep"))


def test_one_call_may_score_more_prompts_than_the_cache_keeps(smollm_tokenizer):
    """The score cache keeps a few hundred texts; a larger call must still get every score."""
    from selfguard_guardrails.engine.gate import ProbeScoreCache

    engine = gated_engine(smollm_tokenizer, threshold=0.0)
    prompts = [f"Question {i}: how do rainbows form?" for i in range(6)]
    expected = engine.awareness(prompts)
    engine._probe_scores = ProbeScoreCache(kept=2)
    assert engine.awareness(prompts) == pytest.approx(expected, abs=1e-5)
    assert len(engine._probe_scores.scores) == 2


def test_mean_weights_average_each_left_padded_row_after_its_opening():
    from selfguard_guardrails.runtime.activations import mean_weights

    mask = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1]])
    weights = mean_weights(mask, after=2)
    assert torch.allclose(weights[0], torch.tensor([0, 0, 0, 0, 0.5, 0.5]))
    assert torch.allclose(weights[1], torch.tensor([0, 0, 0.25, 0.25, 0.25, 0.25]))
    assert torch.allclose(weights[2], torch.tensor([0, 0, 0, 0, 0.5, 0.5]))  # nothing after the opening: all of it


def test_the_last_plus_mean_reading_is_the_last_state_then_the_mean_after_the_opening(smollm_tokenizer):
    from selfguard_guardrails.runtime.activations import last_token_activations

    model = tiny_llama(vocab_size=len(smollm_tokenizer))
    texts = ["Tell me a story about a cat, please.", "Hi there"]
    read = last_token_activations(model, smollm_tokenizer, texts, progress=False, mean_after=2)
    last = last_token_activations(model, smollm_tokenizer, texts, progress=False)
    assert read.shape == (2, 4, 64) and torch.allclose(read[:, :, :32], last, atol=1e-5)
    ids = smollm_tokenizer(texts[0], return_tensors="pt", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        hidden = model(input_ids=ids, output_hidden_states=True).hidden_states
    for layer in range(3):  # the model's last hidden state is after the final norm: compare the others
        assert torch.allclose(read[0, layer, 32:], hidden[layer + 1][0, 2:].mean(0), atol=1e-4)


def test_a_last_plus_mean_probe_gates_on_the_mean_and_round_trips_through_its_file(smollm_tokenizer, tmp_path):
    from selfguard_guardrails.method.probe import AwarenessProbe
    from selfguard_guardrails.method.probe_fitting import probe_states, probe_texts
    from selfguard_guardrails.runtime.chat import ChatRenderer

    engine = gated_engine(smollm_tokenizer, threshold=0.0)
    direction = torch.cat([torch.zeros(32), torch.ones(32) / math.sqrt(32)])  # reads the mean part only
    probe = AwarenessProbe(layer=2, direction=direction, threshold=0.5, auc=0.9, reading="last+mean")
    engine.use_vector(replace(engine.vector, probe=probe))
    text = probe_texts(ChatRenderer(smollm_tokenizer), [PROMPTS[0]])
    mean_part = probe_states(engine.runtime, text, "last+mean")[0, 2, 32:]
    assert engine.awareness([PROMPTS[0]])[0] == pytest.approx(float(mean_part.sum()) / math.sqrt(32) - 0.5, abs=1e-4)
    engine.vector.save(tmp_path / "v.safetensors")
    loaded = SteeringVector.load(tmp_path / "v.safetensors")
    assert loaded.probe.reading == "last+mean" and torch.equal(loaded.probe.direction, direction)
    with pytest.raises(VectorMismatchError, match="needs 64"):
        replace(loaded, probe=replace(probe, direction=torch.ones(32))).check_fits(num_layers=4, hidden_size=32)
    with pytest.raises(InvalidSettingError, match="Unknown probe reading"):
        probe_states(engine.runtime, text, "max")
