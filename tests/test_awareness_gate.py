"""The awareness gate: a probe on the last prompt token decides, per prompt, where Self-Guard acts."""

from __future__ import annotations

import math

import pytest
import torch

from selfguard_guardrails import SelfGuard, SteeringSetting
from selfguard_guardrails.awareness import fit_awareness_probe, probe_from_states
from selfguard_guardrails.errors import InvalidMessagesError, InvalidSettingError
from selfguard_guardrails.model import LoadedModel
from selfguard_guardrails.probe import AwarenessProbe, auc
from selfguard_guardrails.steering import SteeringVector
from tests.conftest import tiny_llama
from tests.test_steering import random_vector

PROMPTS = ["Tell me a story about a cat.", "Hi", "What is the capital of France and why is it famous?",
           "How do rainbows form?"]


def gated_engine(tokenizer, threshold: float, **options) -> SelfGuard:
    model = tiny_llama(vocab_size=len(tokenizer))
    vector = random_vector(model)
    vector.probe = AwarenessProbe(layer=2, direction=torch.ones(32) / math.sqrt(32), threshold=threshold, auc=0.9)
    loaded = LoadedModel(model=model, tokenizer=tokenizer, name="tiny", fingerprint="test", context_window=256,
                         source="object")
    return SelfGuard(loaded, vector=vector, setting=SteeringSetting(layers=(1, 2), strength=2.0), progress=False,
                     **options)


def test_nothing_flagged_means_plain_answers(smollm_tokenizer):
    engine = gated_engine(smollm_tokenizer, threshold=math.inf)
    for result, plain in zip(engine.batch(PROMPTS, max_new_tokens=6),
                             engine.batch(PROMPTS, mode="plain", max_new_tokens=6), strict=True):
        assert result.mode == "self-guard" and result.awareness < 0
        assert result.steering is None and not result.safety_prompt_applied
        assert result.answer == plain.answer


def test_mixed_batch_rows_match_their_own_mode(smollm_tokenizer):
    probe_scores = gated_engine(smollm_tokenizer, threshold=0.0).awareness(PROMPTS)
    cut = sorted(probe_scores)[len(PROMPTS) // 2]  # half the prompts above, half below
    engine = gated_engine(smollm_tokenizer, threshold=cut)
    results = engine.batch(PROMPTS, max_new_tokens=6)
    flagged = [r.awareness >= 0 for r in results]
    assert 0 < sum(flagged) < len(PROMPTS)
    ungated = gated_engine(smollm_tokenizer, threshold=cut, gate=False)
    for prompt, result, is_flagged in zip(PROMPTS, results, flagged, strict=True):
        expected = ungated.generate(prompt, mode="self-guard" if is_flagged else "plain", max_new_tokens=6)
        assert result.answer == expected.answer
        assert (result.steering is not None) == is_flagged == result.safety_prompt_applied
    streamed = list(engine.stream(PROMPTS[flagged.index(False)], max_new_tokens=6))[-1]
    assert streamed.steering is None and streamed.awareness < 0


def test_gate_off_or_plain_mode_skips_the_probe(smollm_tokenizer):
    engine = gated_engine(smollm_tokenizer, threshold=math.inf, gate=False)
    assert engine.generate("Hi", max_new_tokens=2).steering is not None
    assert engine.generate("Hi", mode="plain", max_new_tokens=2).awareness is None


def test_gate_needs_a_probe(smollm_tokenizer):
    engine = gated_engine(smollm_tokenizer, threshold=0.0, gate=True)
    engine.vector.probe = None
    with pytest.raises(InvalidSettingError, match="awareness probe"):
        engine.generate("Hi", max_new_tokens=2)


def test_probe_survives_save_and_load(tmp_path, smollm_tokenizer):
    vector = gated_engine(smollm_tokenizer, threshold=0.25).vector
    loaded = SteeringVector.load(vector.save(tmp_path / "v.safetensors"))
    assert loaded.probe is not None
    assert (loaded.probe.layer, loaded.probe.threshold, loaded.probe.auc) == (2, 0.25, 0.9)
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
    from selfguard_guardrails.awareness import plain_renders
    from selfguard_guardrails.extraction import last_token_activations

    states = last_token_activations(model, smollm_tokenizer, plain_renders(smollm_tokenizer, benign), progress=False)
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
