"""Every option is applied or refused, never silently ignored; negative λ needs an explicit opt-in;
an unknown option names the call that was made and where the option belongs (tiny models)."""

from __future__ import annotations

import json
import warnings

import pytest
import torch

from selfguard_guardrails import GateSetting, SteeringSetting
from selfguard_guardrails.errors import InvalidSettingError, UnknownOptionError
from selfguard_guardrails.method.steering import steer
from selfguard_guardrails.settings import READABLE_STRENGTH
from tests.tiny_engines import gated_engine, make_engine, random_vector


def test_an_explicit_setting_sets_the_lambda_of_a_fired_gate(smollm_tokenizer):
    """`setting=` given to a guarded engine whose vector file records a gate λ: the setting's λ
    is what fires, unless the gate given has a λ of its own."""
    recorded = {"strength": 0.9, "below": "plain", "soft_width": None}
    engine = gated_engine(smollm_tokenizer, threshold=-1e9, setting=SteeringSetting(layers=(1, 2), strength=0.3))
    engine.vector.extra["gate"] = json.dumps(recorded)
    result = engine.generate("Hi", max_new_tokens=3)
    assert result.gate_fired and result.steering.strength == 0.3
    assert "λ of the given steering setting" in engine.gate.source
    engine.use_gate(GateSetting(strength=0.7))
    assert engine.generate("Hi", max_new_tokens=3).steering.strength == 0.7  # the gate's own λ wins
    without_setting = gated_engine(smollm_tokenizer, threshold=-1e9, setting=None)
    without_setting.vector.extra["gate"] = json.dumps(recorded)
    assert without_setting.generate("Hi", max_new_tokens=3).steering.strength == 0.9  # the file's gate λ


def test_negative_strength_is_refused_unless_asked_for_by_name(smollm_tokenizer):
    with pytest.raises(InvalidSettingError, match=r"negative.*allow_negative_strength=True"):
        SteeringSetting(layers=(1,), strength=-2.0)
    with pytest.raises(InvalidSettingError, match="negative"):
        GateSetting(strength=-0.5)
    engine = make_engine(smollm_tokenizer, setting=SteeringSetting(layers=(1, 2), strength=-0.5,
                                                                   allow_negative_strength=True))
    assert engine.generate("Hi", mode="steer", max_new_tokens=3).steering.strength == -0.5
    model = engine.loaded.model
    with pytest.raises(InvalidSettingError, match="negative"), steer(model, random_vector(model), strength=-1.0,
                                                                   layers=[1]):
        pass
    with steer(model, random_vector(model), strength=[0.5, -1.0], layers=[1], allow_negative_strength=True):
        pass


def test_a_strength_past_the_readable_one_warns():
    with pytest.warns(UserWarning, match=rf"above {READABLE_STRENGTH:g}.*selfguard eval"):
        SteeringSetting(layers=(1,), strength=READABLE_STRENGTH + 0.5)
    with pytest.warns(UserWarning, match="above"):
        GateSetting(strength=1.5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SteeringSetting(layers=(1,), strength=READABLE_STRENGTH)


@pytest.mark.parametrize(("call", "option", "message"), [
    ("generate", "setting", r"SelfGuard\.generate\(\) got an unexpected keyword argument 'setting': it is an engine "
                            r"option: SelfGuard\.from_pretrained\(setting=SteeringSetting"),
    ("generate", "foo", r"SelfGuard\.generate\(\) got an unexpected keyword argument 'foo'\. SelfGuard\.generate\(\) "
                        r"accepts: .*max_new_tokens"),
    ("generate", "strength", r"'strength': λ is part of the steering setting"),
    ("generate", "max_tokens", r"'max_tokens': the token budget is max_new_tokens"),
    ("stream", "gate", r"SelfGuard\.stream\(\) got an unexpected keyword argument 'gate': .*use_gate"),
    ("batch", "leak_policy", r"SelfGuard\.batch\(\) .* 'leak_policy': it is an engine option"),
])
def test_an_unknown_option_names_the_call_and_where_the_option_goes(smollm_tokenizer, call, option, message):
    engine = make_engine(smollm_tokenizer)
    prompt = ["Hi"] if call == "batch" else "Hi"
    with pytest.raises(UnknownOptionError, match=message) as error:
        getattr(engine, call)(prompt, **{option: 1})
    assert isinstance(error.value, TypeError)  # what Python itself raises for a wrong keyword


def test_from_pretrained_names_itself_and_points_generation_options_to_generate():
    from selfguard_guardrails import SelfGuard

    with pytest.raises(UnknownOptionError, match=r"from_pretrained\(\) got an unexpected keyword argument "
                                                 r"'max_new_tokens': it is a generation option: give it to generate"):
        SelfGuard.from_pretrained(object(), max_new_tokens=3)  # refused before anything loads


@pytest.mark.parametrize("adapter", ["langchain", "llama_index"])
def test_an_adapter_given_an_engine_refuses_loading_options_it_would_ignore(smollm_tokenizer, adapter):
    if adapter == "langchain":
        pytest.importorskip("langchain_core")
        from selfguard_guardrails.integrations.langchain import ChatSelfGuard as Adapter
    else:
        pytest.importorskip("llama_index.core")
        from selfguard_guardrails.integrations.llama_index import SelfGuardLLM as Adapter
    engine = make_engine(smollm_tokenizer)
    with pytest.raises(InvalidSettingError, match=r"engine=\.\.\.\) uses the engine given, so engine_options would "
                                                  "change nothing"):
        Adapter(engine=engine, engine_options={"leak_policy": "log"})
    with pytest.raises(InvalidSettingError, match="model would change nothing"):
        Adapter(engine=engine, model="Qwen/Qwen3-0.6B")
    assert Adapter(engine=engine).engine is engine


def test_steering_a_row_negatively_really_subtracts(smollm_tokenizer):
    """The opt-in is not a no-op: λ -1 moves the hidden state the opposite way to λ +1."""
    engine = make_engine(smollm_tokenizer)
    model = engine.loaded.model
    vector = random_vector(model)
    ids = torch.tensor([[5, 6, 7]])
    with torch.no_grad():
        base = model(ids, output_hidden_states=True).hidden_states[2]
        with steer(model, vector, strength=1.0, layers=[1]):
            up = model(ids, output_hidden_states=True).hidden_states[2]
        with steer(model, vector, strength=-1.0, layers=[1], allow_negative_strength=True):
            down = model(ids, output_hidden_states=True).hidden_states[2]
    torch.testing.assert_close(up - base, base - down, rtol=1e-4, atol=1e-4)


def test_engine_options_that_would_change_nothing_are_refused(smollm_tokenizer, think_tokenizer):
    with pytest.raises(InvalidSettingError, match=r"has none, so it would change nothing.*think_in_tags=True"):
        make_engine(smollm_tokenizer, thinking=False)  # SmolLM2's template has no enable_thinking switch
    from tests.conftest import tiny_qwen3

    assert make_engine(think_tokenizer, tiny_qwen3, thinking=False).thinking is False  # a template with the switch
    with pytest.raises(InvalidSettingError, match="leak_checks=False turns the leak checks off"):
        make_engine(smollm_tokenizer, leak_checks=False, leak_policy="block")
    with pytest.raises(InvalidSettingError, match="leak_checks=False"):
        make_engine(smollm_tokenizer, leak_checks=False, canaries=["c-1"])
    assert make_engine(smollm_tokenizer, leak_checks=False).leaks is None
