"""Exact mechanics of steering on tiny random models (Llama, Qwen3, GPT-2)."""

from __future__ import annotations

import math

import pytest
import torch

from selfguard_guardrails.errors import CorruptFileError, InvalidSettingError, VectorMismatchError
from selfguard_guardrails.method.steering import steer
from selfguard_guardrails.method.vector import SteeringVector
from selfguard_guardrails.runtime.layers import decoder_layers
from selfguard_guardrails.settings import SteeringSetting
from tests.tiny_engines import random_vector


class Recorder:
    """Records a layer's output (first element if a tuple) at every forward call."""

    def __init__(self) -> None:
        self.outputs: list[torch.Tensor] = []

    def __call__(self, module, args, output):
        hidden = output[0] if isinstance(output, tuple) else output
        self.outputs.append(hidden.detach().clone())


def record_all(model) -> tuple[list[Recorder], list]:
    recorders = [Recorder() for _ in decoder_layers(model)]
    handles = [layer.register_forward_hook(r) for layer, r in zip(decoder_layers(model), recorders, strict=True)]
    return recorders, handles


INPUT = torch.tensor([[5, 17, 300, 42, 7, 99]])


def test_zero_strength_equals_baseline(tiny_model):
    vector = random_vector(tiny_model)
    with torch.no_grad():
        baseline = tiny_model(INPUT).logits
        with steer(tiny_model, vector, strength=0.0, layers=[1, 2]):
            steered = tiny_model(INPUT).logits
    assert torch.equal(baseline, steered)


def steered_differences(model, vector, inputs, **steer_options) -> list[torch.Tensor]:
    """Per layer, what steering added to its output on `inputs` (one forward pass)."""
    before, before_handles = record_all(model)  # registered first: sees the unsteered output
    try:
        with torch.no_grad(), steer(model, vector, **steer_options):
            after, after_handles = record_all(model)  # registered after steering: sees the result
            model(inputs)
            for handle in after_handles:
                handle.remove()
    finally:
        for handle in before_handles:
            handle.remove()
    return [a.outputs[0] - b.outputs[0] for a, b in zip(after, before, strict=True)]


def test_hook_adds_exactly_strength_times_vector_at_chosen_layers_only(tiny_model):
    vector = random_vector(tiny_model)
    strength, chosen = 0.7, [1, 3]
    differences = steered_differences(tiny_model, vector, INPUT, strength=strength, layers=chosen)
    for index, difference in enumerate(differences):
        if index in chosen:
            expected = (strength * vector.directions[index]).expand_as(difference)
            torch.testing.assert_close(difference, expected, rtol=0, atol=1e-5)
        else:
            assert torch.count_nonzero(difference) == 0, f"layer {index} was changed"


def test_per_row_strengths_give_each_batch_row_its_own_lambda(tiny_model):
    vector = random_vector(tiny_model)
    strengths = [0.0, 0.5, 2.0]
    difference = steered_differences(tiny_model, vector, INPUT.repeat(3, 1), strength=strengths, layers=[2])[2]
    for row, strength in enumerate(strengths):
        expected = (strength * vector.directions[2]).expand_as(difference[row])
        torch.testing.assert_close(difference[row], expected, rtol=0, atol=1e-5)


def test_hooks_are_removed_on_exit_and_on_error(tiny_model):
    vector = random_vector(tiny_model)
    layer = decoder_layers(tiny_model)[2]
    with pytest.raises(RuntimeError, match="boom"), steer(tiny_model, vector, strength=1.0, layers=[2]):
        assert len(layer._forward_hooks) == 1
        raise RuntimeError("boom")
    assert len(layer._forward_hooks) == 0
    with steer(tiny_model, vector, strength=1.0, layers=[2], scope="generated", prompt_lengths=[3]):
        pass
    assert len(layer._forward_hooks) == 0 and len(tiny_model._forward_pre_hooks) == 0


def steered_positions_per_call(model, vector, *, scope, layer, generate_kwargs, prompt_lengths=None,
                               max_tokens=None):
    """Run `generate` and return, per forward call, a [batch, seq] bool map of steered positions."""
    before, after = Recorder(), Recorder()
    block = decoder_layers(model)[layer]
    first = block.register_forward_hook(before)
    try:
        with steer(model, vector, strength=1.0, layers=[layer], scope=scope, prompt_lengths=prompt_lengths,
                   max_tokens=max_tokens):
            second = block.register_forward_hook(after)
            try:
                model.generate(**generate_kwargs)
            finally:
                second.remove()
    finally:
        first.remove()
    return [(a - b).abs().amax(dim=-1) > 1e-6 for a, b in zip(after.outputs, before.outputs, strict=True)]


@pytest.mark.parametrize("scope", ["all", "generated", "answer"])
def test_decode_steps_are_steered_under_kv_cache(tiny_model, scope):
    vector = random_vector(tiny_model)
    ids = torch.tensor([[5, 17, 300, 42], [1, 1, 8, 9]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])  # row 1 is left-padded: its prompt has 2 tokens
    new_tokens = 6
    calls = steered_positions_per_call(
        tiny_model, vector, scope=scope, layer=1,
        generate_kwargs=dict(input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens,
                             min_new_tokens=new_tokens, do_sample=False, pad_token_id=0),
    )
    prefill, decode_steps = calls[0], calls[1:]
    assert len(decode_steps) == new_tokens - 1  # the cache was used: one call per new token after the first
    assert all(step.shape[1] == 1 for step in decode_steps)
    assert all(bool(step.all()) for step in decode_steps), "a decode step was not steered"
    if scope == "all":
        assert bool(prefill.all())
    elif scope == "answer":  # only the last prompt token of each row (both rows end at the last position)
        assert prefill.tolist() == [[False, False, False, True], [False, False, False, True]]
    else:
        assert not bool(prefill.any()), "scope 'generated' steered prompt positions"


def test_a_token_budget_steers_only_the_first_generated_tokens_of_every_row(tiny_model):
    vector = random_vector(tiny_model)
    ids = torch.tensor([[5, 17, 300, 42], [1, 1, 8, 9]])
    mask = torch.tensor([[1, 1, 1, 1], [0, 0, 1, 1]])  # left padding: the rows' prompts end at different positions
    calls = steered_positions_per_call(
        tiny_model, vector, scope="generated", layer=1, max_tokens=3,
        generate_kwargs=dict(input_ids=ids, attention_mask=mask, max_new_tokens=7, min_new_tokens=7,
                             do_sample=False, pad_token_id=0),
    )
    prefill, decode_steps = calls[0], calls[1:]
    assert not bool(prefill.any())
    # decode step k feeds generated token k (the first comes from the prefill): tokens 1-3 are steered
    assert [bool(step.all()) for step in decode_steps] == [True, True, True, False, False, False]
    assert not any(bool(step.any()) for step in decode_steps[3:])


@pytest.mark.parametrize("max_tokens, scope, message", [(0, "generated", ">= 1"), (2.5, "generated", "whole number"),
                                                        (4, "all", "scope 'generated' or 'answer'")])
def test_bad_token_budgets_are_refused(tiny_model, max_tokens, scope, message):
    with pytest.raises(InvalidSettingError, match=message), \
            steer(tiny_model, random_vector(tiny_model), strength=0.5, layers=[0], scope=scope, max_tokens=max_tokens):
        pass
    with pytest.raises(InvalidSettingError, match=message):
        SteeringSetting(layers=(0,), strength=0.5, scope=scope, max_tokens=max_tokens)


def test_generated_scope_uses_given_prompt_lengths(tiny_model):
    vector = random_vector(tiny_model)
    # Treat the first 4 positions as the prompt and the last 2 as already-generated tokens.
    calls = []
    before, after = Recorder(), Recorder()
    block = decoder_layers(tiny_model)[0]
    handle = block.register_forward_hook(before)
    with torch.no_grad(), steer(tiny_model, vector, strength=1.0, layers=[0], scope="generated",
                                prompt_lengths=[4]):
        second = block.register_forward_hook(after)
        tiny_model(INPUT, attention_mask=torch.ones_like(INPUT))
        second.remove()
    handle.remove()
    calls = (after.outputs[0] - before.outputs[0]).abs().amax(dim=-1) > 1e-6
    assert calls.tolist() == [[False, False, False, False, True, True]]


def test_answer_scope_adds_the_last_prompt_token_and_counts_it_in_a_budget(tiny_model):
    vector = random_vector(tiny_model)
    block = decoder_layers(tiny_model)[0]
    for max_tokens, expected in ((None, [False, False, False, True, True, True]),
                                 (2, [False, False, False, True, True, False])):
        before, after = Recorder(), Recorder()
        handle = block.register_forward_hook(before)
        with torch.no_grad(), steer(tiny_model, vector, strength=1.0, layers=[0], scope="answer",
                                    prompt_lengths=[4], max_tokens=max_tokens):
            second = block.register_forward_hook(after)
            tiny_model(INPUT, attention_mask=torch.ones_like(INPUT))
            second.remove()
        handle.remove()
        steered = (after.outputs[0] - before.outputs[0]).abs().amax(dim=-1) > 1e-6
        assert steered.tolist() == [expected]


def test_save_load_round_trip(tmp_path, tiny_model):
    vector = random_vector(tiny_model)
    vector.extra = {"setting": '{"layers": [1], "strength": 0.5}'}
    path = vector.save(tmp_path / "v.safetensors")
    loaded = SteeringVector.load(path)
    assert loaded.directions.keys() == vector.directions.keys()
    for layer in vector.directions:
        assert torch.equal(loaded.directions[layer], vector.directions[layer])
    for name in ("model_fingerprint", "num_layers", "hidden_size", "method", "model_name", "extra"):
        assert getattr(loaded, name) == getattr(vector, name)


def test_mismatched_vector_is_refused(tiny_model):
    from tests.conftest import tiny_llama

    other = random_vector(tiny_llama(layers=6))
    with pytest.raises(VectorMismatchError, match="6 layers in the vector"), \
            steer(tiny_model, other, strength=0.5, layers=[1]):
        pass
    with pytest.raises(VectorMismatchError, match="fingerprint"):
        random_vector(tiny_model).check_fits(num_layers=4, hidden_size=32, fingerprint="another-model")


def test_corrupt_vector_file_is_refused(tmp_path):
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x00\x01not a safetensors file")
    with pytest.raises(CorruptFileError, match="extract it again"):
        SteeringVector.load(path)
    with pytest.raises(CorruptFileError, match="No steering vector"):
        SteeringVector.load(tmp_path / "missing.safetensors")


@pytest.mark.parametrize("strength", [math.nan, math.inf, "strong"])
def test_non_finite_strength_is_refused(tiny_model, strength):
    with pytest.raises(InvalidSettingError, match=r"[Ss]trength"), \
            steer(tiny_model, random_vector(tiny_model), strength=strength, layers=[0]):
        pass


@pytest.mark.parametrize("layers", [[4], [-1], []])
def test_layer_out_of_range_is_refused(tiny_model, layers):
    with pytest.raises(InvalidSettingError, match=r"[Ll]ayer"), \
            steer(tiny_model, random_vector(tiny_model), strength=0.5, layers=layers):
        pass
