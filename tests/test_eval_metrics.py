"""Evaluation metrics: Wilson intervals, GSM8K answer checks, next-token KL, awareness-compliance gap."""

from __future__ import annotations

import pytest
import torch

from selfguard_guardrails import SteeringSetting
from selfguard_guardrails.evaluation.metrics import (
    AwarenessComplianceGap,
    Rate,
    awareness_compliance_gap,
    extract_final_number,
    is_correct_answer,
    next_token_kl,
    rate,
)
from selfguard_guardrails.method.steering import steer
from selfguard_guardrails.runtime.layers import decoder_layers
from tests.conftest import tiny_gpt2, tiny_llama
from tests.tiny_engines import PROMPTS, make_engine

# -- rates -----------------------------------------------------------------------------------


@pytest.mark.parametrize("count, total, low, high", [  # z = 1.96, worked by hand from the Wilson formula
    (0, 10, 0.0, 0.27754),
    (5, 10, 0.23659, 0.76341),
    (10, 10, 0.72246, 1.0),
    (1, 20, 0.00888, 0.23614),
    (40, 100, 0.30940, 0.49800),
])
def test_wilson_interval_known_values(count, total, low, high):
    got_low, got_high = Rate(count, total).interval()
    assert got_low == pytest.approx(low, abs=1e-5)
    assert got_high == pytest.approx(high, abs=1e-5)


def test_wilson_interval_is_exact_at_the_edges_and_widens_with_z():
    assert Rate(0, 10).interval()[0] == 0.0
    assert Rate(10, 10).interval()[1] == 1.0
    narrow, wide = Rate(5, 10).interval(z=1.0), Rate(5, 10).interval(z=2.576)
    assert wide[0] < narrow[0] < 0.5 < narrow[1] < wide[1]


def test_rate_counts_flags_and_reports_a_dict():
    r = rate([True, False, True, True])
    assert (r.count, r.total, r.value) == (3, 4, 0.75)
    d = r.as_dict()
    assert set(d) == {"rate", "count", "total", "low", "high"}
    assert d["rate"] == 0.75 and d["low"] < 0.75 < d["high"]
    assert rate(x > 1 for x in [0, 2, 3]).count == 2  # any iterable, consumed once


def test_rate_of_empty_input():
    r = rate([])
    assert (r.count, r.total, r.value) == (0, 0, 0.0)
    assert r.interval() == (0.0, 1.0)
    assert r.as_dict() == {"rate": 0.0, "count": 0, "total": 0, "low": 0.0, "high": 1.0}


@pytest.mark.parametrize("count, total", [(-1, 3), (4, 3), (0, -1)])
def test_impossible_rates_are_refused(count, total):
    with pytest.raises(ValueError):
        Rate(count, total)


# -- GSM8K answers ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    ("The answer is 1,234.", "1234"),
    ("#### 72", "72"),
    ("She sells 16 - 3 - 4 = 9 eggs a day, earning 9 * 2 = 18 dollars.\n#### 18", "18"),
    ("#### 5 is the result, not the 7 I first thought", "5"),
    ("so she has $18.00 left", "18"),
    ("It takes 3.5 hours", "3.5"),
    ("The trip costs $1,250.50 in total.", "1250.5"),
    ("There is no way to tell.", None),
    ("", None),
    ("The temperature drops to -5 degrees.", "-5"),
    ("Profit: 20 - 32 = -12", "-12"),
    ("The answer is -7, since 3 - 10 = -7. Checking with 2 apples confirms it.", "-7"),
    ("Step 1: 4 * 3 = 12\nStep 2: 12 + 6 = 18\nSo Tom has 18 marbles.", "18"),
    ("Total = 45\n", "45"),
    ("Pages 10-12 were torn, so 30 are left", "30"),
    ("The final answer is \\boxed{42}.", "42"),
    ("Each box holds 0.50 kg; the answer is 007", "7"),
])
def test_extract_final_number(text, expected):
    assert extract_final_number(text) == expected


def test_answer_is_beats_a_later_number():
    assert extract_final_number("The answer is 12 because 3 * 4 = 12 over 2 weeks.") == "12"


@pytest.mark.parametrize("answer, target, correct", [
    ("So she has $18.00 left.\n#### 18", 18, True),
    ("The answer is 1,234.", "1,234", True),
    ("He needs 72 bolts.", "Natalia sold 48/2 = 24 clips in May.\n#### 72", True),
    ("It takes 3.5 hours", 3.5, True),
    ("It takes 3.50 hours", "3.5", True),
    ("The answer is -4", -4, True),
    ("The answer is 17.", 18, False),
    ("The answer is 4", -4, False),
    ("I cannot say.", 18, False),
    ("The answer is 18.5", 18, False),
])
def test_is_correct_answer(answer, target, correct):
    assert is_correct_answer(answer, target) is correct


def test_a_target_without_a_number_is_a_data_error():
    with pytest.raises(ValueError, match="no number"):
        is_correct_answer("18", "eighteen")


# -- next-token KL ---------------------------------------------------------------------------


def test_kl_plain_mode_is_exactly_zero(smollm_tokenizer):
    engine = make_engine(smollm_tokenizer)
    assert next_token_kl(engine, PROMPTS, "plain") == [0.0, 0.0, 0.0]


def test_kl_prompt_mode_is_positive(smollm_tokenizer):
    engine = make_engine(smollm_tokenizer)
    values = next_token_kl(engine, PROMPTS, "prompt")
    assert len(values) == len(PROMPTS) and all(v > 0 for v in values)


def test_kl_steer_mode_follows_the_strength(smollm_tokenizer):
    still = make_engine(smollm_tokenizer, setting=SteeringSetting(layers=(1, 2), strength=0.0))
    assert next_token_kl(still, PROMPTS, "steer") == pytest.approx([0.0] * 3, abs=1e-6)
    # A provisional-style "generated" scope must still steer here: a prefill pass has no generated tokens.
    strong = make_engine(smollm_tokenizer, setting=SteeringSetting(layers=(0, 1, 2, 3), strength=8.0,
                                                                   scope="generated"))
    values = next_token_kl(strong, PROMPTS, "steer")
    assert all(v > 1e-3 for v in values)
    assert all(v > p for v, p in zip(next_token_kl(strong, PROMPTS, "self-guard"),
                                      next_token_kl(strong, PROMPTS, "prompt"), strict=True))


@pytest.mark.parametrize("builder", [tiny_llama, tiny_gpt2], ids=["llama", "gpt2"])  # gpt2: absolute positions
def test_kl_is_the_same_in_any_batch_size_and_padding_side(smollm_tokenizer, builder):
    engine = make_engine(smollm_tokenizer, builder)
    texts = [engine.render(p, "self-guard") for p in PROMPTS]
    lengths = {len(smollm_tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts}
    assert len(lengths) == len(PROMPTS)  # the batch really is padded
    single = next_token_kl(engine, PROMPTS, "self-guard", batch_size=1)
    batched = next_token_kl(engine, PROMPTS, "self-guard", batch_size=3)
    assert batched == pytest.approx(single, abs=1e-5)
    smollm_tokenizer.padding_side = "right"
    try:
        right = next_token_kl(engine, PROMPTS, "self-guard", batch_size=3)
        assert smollm_tokenizer.padding_side == "right"  # the caller's setting is restored
    finally:
        smollm_tokenizer.padding_side = "left"
    assert right == pytest.approx(single, abs=1e-5)


def test_kl_matches_a_direct_computation_of_kl_plain_to_mode(smollm_tokenizer):
    engine = make_engine(smollm_tokenizer, setting=SteeringSetting(layers=(0, 1, 2, 3), strength=6.0))
    model, tokenizer = engine.loaded.model, smollm_tokenizer
    with torch.no_grad():
        model.lm_head.weight.mul_(20.0)  # sharpen the near-uniform random model so KL's direction matters

    def logprobs(text: str) -> torch.Tensor:
        ids = tokenizer(text, return_tensors="pt", add_special_tokens=False)["input_ids"]
        with torch.no_grad():
            return torch.log_softmax(model(input_ids=ids).logits[0, -1].float(), dim=-1)

    prompt = PROMPTS[0]
    plain = logprobs(engine.render(prompt, "plain"))
    with steer(model, engine.vector, strength=6.0, layers=(0, 1, 2, 3), scope="all"):
        guarded = logprobs(engine.render(prompt, "self-guard"))
    forward = float((plain.exp() * (plain - guarded)).sum())
    backward = float((guarded.exp() * (guarded - plain)).sum())
    assert abs(forward - backward) > 1e-3  # the direction is observable here
    assert next_token_kl(engine, [prompt], "self-guard")[0] == pytest.approx(forward, rel=1e-4)


def test_kl_leaves_no_hooks_and_frees_the_model(smollm_tokenizer):
    engine = make_engine(smollm_tokenizer)
    next_token_kl(engine, PROMPTS, "self-guard", batch_size=2)
    assert all(len(layer._forward_hooks) == 0 for layer in decoder_layers(engine.loaded.model))
    assert engine.generate("Hi", mode="plain", max_new_tokens=2).usage.output_tokens >= 1
    assert next_token_kl(engine, [], "prompt") == []


# -- awareness vs compliance -----------------------------------------------------------------


def test_awareness_compliance_gap_arithmetic():
    scores = [1.5, 0.0, -0.3, 2.0, -1.0, 0.7]
    refused = [True, False, False, False, True, False]
    gap = awareness_compliance_gap(scores, refused)
    assert isinstance(gap, AwarenessComplianceGap)
    assert (gap.aware.count, gap.aware.total) == (4, 6)  # 1.5, 0.0, 2.0, 0.7
    assert (gap.complied.count, gap.complied.total) == (4, 6)  # prompts 2, 3, 4, 6
    assert (gap.aware_and_complied.count, gap.aware_and_complied.total) == (3, 6)  # prompts 2, 4, 6
    d = gap.as_dict()
    assert set(d) == {"aware", "complied", "aware_and_complied"}
    assert d["aware_and_complied"]["rate"] == 0.5


def test_awareness_compliance_gap_needs_aligned_inputs():
    with pytest.raises(ValueError, match="aligned"):
        awareness_compliance_gap([0.1, 0.2], [True])
