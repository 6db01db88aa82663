"""Tools for templates without them: the documented prompt format, and tool calls read back."""

from __future__ import annotations

import json

import pytest

from selfguard_guardrails.runtime.chat import inline_tools
from selfguard_guardrails.tooling.parsing import parse_tool_calls

CITY = {"type": "object", "properties": {"city": {"type": "string"}}}
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather for a city",
                                            "parameters": CITY}}


def test_a_tool_call_block_parses_and_the_rest_is_the_text():
    parsed = parse_tool_calls('Let me check.\n<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}'
                              '</tool_call>', ["get_weather"])
    assert parsed.text == "Let me check."
    assert [(c["name"], c["args"]) for c in parsed.calls] == [("get_weather", {"city": "Oslo"})]
    assert parsed.calls[0]["id"].startswith("call_") and parsed.invalid == []


def test_a_bare_json_call_counts_only_for_a_known_tool():
    assert parse_tool_calls('{"name": "get_weather", "parameters": {"city": "Rome"}}', ["get_weather"]).calls
    assert parse_tool_calls('{"name": "get_weather", "parameters": {"city": "Rome"}}', []).calls == []
    assert parse_tool_calls('Here is JSON: {"a": 1}', ["get_weather"]).text == 'Here is JSON: {"a": 1}'


def test_a_broken_call_is_reported_invalid_with_the_reason_not_raised():
    parsed = parse_tool_calls('<tool_call>{"name": "get_weather", "arguments": {"city": </tool_call>', ["get_weather"])
    assert parsed.calls == [] and "did not parse" in parsed.invalid[0]["error"]
    unknown = parse_tool_calls('<tool_call>{"name": "launch", "arguments": {}}</tool_call>', ["get_weather"])
    assert "unknown tool 'launch'" in unknown.invalid[0]["error"]
    odd = parse_tool_calls('<tool_call>{"name": {"tool": "x"}, "arguments": {}}</tool_call>', ["get_weather"])
    assert odd.calls == [] and odd.invalid[0]["name"] is None  # any JSON value may stand where the name goes


def test_inline_format_lists_tools_and_writes_history_as_text():
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Weather in Oslo?"},
                {"role": "assistant", "content": "", "tool_calls": [
                    {"type": "function", "function": {"name": "get_weather", "arguments": {"city": "Oslo"}}}]},
                {"role": "tool", "content": "4 °C, rain", "name": "get_weather", "tool_call_id": "1"}]
    out = inline_tools(messages, [WEATHER])
    assert out[0]["content"].startswith("Be brief.\n\nYou can call these tools.")
    assert '"get_weather"' in out[0]["content"]
    assert out[2] == {"role": "assistant", "content": '<tool_call>{"name": "get_weather", "arguments": '
                                                      '{"city": "Oslo"}}</tool_call>'}
    assert out[3] == {"role": "user", "content": "Tool result (get_weather): 4 °C, rain"}
    assert inline_tools([{"role": "user", "content": "hi"}], [WEATHER])[0]["role"] == "system"


def test_the_engine_renders_tools_for_a_template_without_them(smollm_tokenizer):
    from tests.tiny_engines import make_engine

    engine = make_engine(smollm_tokenizer)
    prompt = engine.render("Weather in Oslo?", mode="plain", tools=[WEATHER])
    assert "You can call these tools" in prompt and '"name": "get_weather"' in prompt
    assert "You can call these tools" not in engine.render("Weather in Oslo?", mode="plain")
    result = engine.generate("Weather in Oslo?", max_new_tokens=3, tools=[WEATHER])
    assert result.usage.input_tokens > engine.generate("Weather in Oslo?", max_new_tokens=3).usage.input_tokens


def test_forced_prefix_names_the_tool_and_its_first_argument():
    from selfguard_guardrails.errors import InvalidSettingError
    from selfguard_guardrails.tooling.choice import forced_call_prefix, forced_tool_name

    prefix = forced_call_prefix([WEATHER], "any")
    assert prefix == '<tool_call>{"name": "get_weather", "arguments": {"city": '
    assert forced_tool_name(prefix) == "get_weather"
    two = [WEATHER, {"type": "function", "function": {"name": "noop", "parameters": {}}}]
    assert forced_call_prefix(two, "required") == '<tool_call>{"name": "'
    assert forced_tool_name('<tool_call>{"name": "') is None
    assert forced_call_prefix(two, "auto") == "" and forced_call_prefix(None, "any") == ""
    with pytest.raises(InvalidSettingError, match="not a bound tool"):
        forced_call_prefix(two, "launch")


def _scripted(answers: list[str], seen: list[tuple[str, list[str], int]]):
    """A stand-in model for `guided_json.fill`: writes the next scripted text, cut at a stop."""
    queue = iter(answers)

    def model(text: str, stop, budget: int) -> str:
        seen.append((text, list(stop), budget))
        written = next(queue)
        cut = min((written.find(s) for s in stop if s in written), default=len(written))
        return written[:cut]

    return model


def test_guided_json_writes_the_structure_and_the_model_only_the_values():
    from selfguard_guardrails.tooling import guided_json

    schema = {"type": "object", "required": ["city", "nights", "breakfast"],
              "properties": {"city": {"type": "string"}, "nights": {"type": "integer"},
                             "breakfast": {"type": "boolean"}, "note": {"type": "string"}}}
    seen: list = []
    value, text = guided_json.fill(schema, "", _scripted(['Oslo "centre', " 3, 4", "true}"], seen))
    assert value == {"city": "Oslo ", "nights": 3, "breakfast": True}  # the optional "note" is not filled
    assert json.loads(text) == value
    assert seen[0][:2] == ('{"city": "', ['"', "\n"]) and seen[1][0] == '{"city": "Oslo ", "nights": '
    assert guided_json.fill({"type": "integer"}, "", _scripted(["three"], [])) is None


def test_guided_json_fills_nested_objects_arrays_enums_and_refs():
    from selfguard_guardrails.tooling import guided_json

    schema = {"type": "object", "required": ["trip", "tags"],
              "properties": {"trip": {"$ref": "#/$defs/Trip"},
                             "tags": {"type": "array", "items": {"type": "string"}}},
              "$defs": {"Trip": {"type": "object", "required": ["to", "class_"],
                                 "properties": {"to": {"anyOf": [{"type": "string"}, {"type": "null"}]},
                                                "class_": {"enum": ["economy", "business"]}}}}}
    assert guided_json.supports(schema)
    seen: list = []
    #          trip.to   class_ (nearest)  tags: not empty, item, more?, item, more?
    answers = ["Rome\"", "busines", '"', "art", ",", "food", "]"]
    value, text = guided_json.fill(schema, "", _scripted(answers, seen))
    assert value == {"trip": {"to": "Rome", "class_": "business"}, "tags": ["art", "food"]}
    assert json.loads(text) == value
    empty, _ = guided_json.fill({"type": "array", "items": {"type": "integer"}}, "", _scripted(["]"], []))
    assert empty == []


def test_guided_json_refuses_schemas_it_cannot_guarantee():
    from selfguard_guardrails.tooling import guided_json

    assert not guided_json.supports({})  # untyped
    assert not guided_json.supports({"type": "object", "required": ["a"], "properties": {"a": {}}})
    assert not guided_json.supports({"oneOf": [{"type": "string"}, {"type": "integer"}]})
    assert not guided_json.supports({"type": "array"})  # items unknown
    assert guided_json.supports({"type": "object", "properties": {}})  # no arguments: "{}"


def test_the_tool_is_chosen_by_how_likely_each_description_makes_the_question():
    from selfguard_guardrails.tooling.choice import CHANNEL_TEMPLATE, choose_tool, last_question

    calc = {"type": "function", "function": {"name": "calculator", "description": "Arithmetic."}}
    asked: list = []

    def scores(pairs):
        asked.extend(pairs)
        return [-5.0 if "Arithmetic" in context else -9.0 for context, _ in pairs]

    question = last_question([{"role": "user", "content": "old"}, {"role": "assistant", "content": "x"},
                              {"role": "user", "content": " What is 6*7? "}])
    assert choose_tool(question, [WEATHER, calc], scores) == "calculator"
    assert asked[1] == (CHANNEL_TEMPLATE.format(name="calculator", description="Arithmetic."), "What is 6*7?")
    assert choose_tool("anything", [WEATHER], lambda pairs: pytest.fail("one tool needs no scoring")) \
        == "get_weather"


def test_without_a_forced_choice_a_tool_must_beat_the_answer_channel_by_the_margin():
    from selfguard_guardrails.tooling.choice import ANSWER_CHANNEL, CALL_MARGIN, choose_tool_or_answer

    calc = {"type": "function", "function": {"name": "calculator", "description": "Arithmetic."}}

    def scores(weather: float, calculator: float):
        def score(pairs):
            assert pairs[-1] == (ANSWER_CHANNEL, "What is 6*7?")
            return [weather, calculator, -10.0]
        return score

    assert choose_tool_or_answer(" What is 6*7? ", [WEATHER, calc], scores(-12.0, -10.0 + CALL_MARGIN + 0.1)) \
        == "calculator"
    assert choose_tool_or_answer("What is 6*7?", [WEATHER, calc], scores(-12.0, -10.0 + CALL_MARGIN - 0.1)) is None
    assert choose_tool_or_answer(" ", [WEATHER], lambda pairs: pytest.fail("nothing to score")) is None


def test_the_latest_question_is_answered_once_it_has_tool_results_after_it():
    from selfguard_guardrails.tooling.history import has_results_since_question

    call = {"role": "assistant", "content": "", "tool_calls": [{"id": "1", "function": {"name": "get_weather"}}]}
    result = {"role": "tool", "content": "sunny", "tool_call_id": "1", "name": "get_weather"}
    asked = [{"role": "user", "content": "Weather in Oslo?"}, call, result]
    assert has_results_since_question(asked)
    assert not has_results_since_question([*asked, {"role": "assistant", "content": "Sunny."},
                                           {"role": "user", "content": "And in Rome?"}])
    assert not has_results_since_question(asked[:2])


def test_guided_json_picks_booleans_and_enums_by_likelihood_and_reads_numbers_leniently():
    from selfguard_guardrails.tooling import guided_json

    schema = {"type": "object", "required": ["nights", "breakfast", "room"],
              "properties": {"nights": {"type": "integer"}, "breakfast": {"type": "boolean"},
                             "room": {"enum": ["single", "double"]}}}
    offered: list = []

    def choose(text, values):
        offered.append((text, list(values)))
        return len(values) - 1  # the last value offered

    value, text = guided_json.fill(schema, "", _scripted(["3 nights"], []), choose)
    assert value == {"nights": 3, "breakfast": False, "room": "double"} and json.loads(text) == value
    assert offered == [('{"nights": 3, "breakfast": ', ["true", "false"]),
                       ('{"nights": 3, "breakfast": false, "room": ', ['"single"', '"double"'])]
    assert guided_json.fill({"type": "integer"}, "", _scripted(["2.5"], [])) is None  # not a whole number


@pytest.mark.parametrize(("tool", "match"), [
    ({"type": "function", "function": {"description": "no name"}}, "has no name"),
    ({"type": "function", "function": {"name": "f", "parameters": ["city"]}}, "JSON-schema object"),
    ({"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "when": {"type": "string", "default": object()}}}}}, "cannot be written as JSON"),
])
def test_tools_a_model_cannot_be_shown_are_refused_with_the_reason(tool, match):
    from selfguard_guardrails.errors import InvalidSettingError
    from selfguard_guardrails.tooling.definitions import checked_tools

    with pytest.raises(InvalidSettingError, match=match):
        checked_tools([WEATHER, tool])
    assert checked_tools(None) == () and checked_tools([WEATHER]) == (WEATHER,)


def test_a_template_that_rejects_the_tools_is_a_clear_error_not_a_jinja_trace(smollm_tokenizer):
    import copy

    from selfguard_guardrails.errors import InvalidSettingError
    from selfguard_guardrails.runtime.chat import ChatRenderer

    tokenizer = copy.deepcopy(smollm_tokenizer)
    tokenizer.chat_template = ("{% if tools %}{{ raise_exception('tools need a description') }}{% endif %}"
                               "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}")
    renderer = ChatRenderer(tokenizer)
    assert renderer.supports_tools
    with pytest.raises(InvalidSettingError, match=r"could not render the tools.*tools need a description"):
        renderer.render([{"role": "user", "content": "hi"}], tools=[WEATHER])
