"""One model turn with tools bound, for any adapter: forced calls, and turns after tool results.

Adapters (LangChain, LlamaIndex) turn their messages and tool definitions into engine
messages and OpenAI-format tools, call `ToolTurn.run`, and read the calls back from the
result's answer with `parsing.parse_tool_calls`. What a 135M model needs is here:

- a forced call (`tool_choice` "any"/"required" or a tool's name): the tool chosen by
  likelihood (`choice.choose_tool`) when the model may pick, the arguments written into JSON we
  write (`guided_json`), or for schemas that cannot be guided, generated whole and parsed,
  retried (sampled) through tenacity while they do not parse;
- no forced choice ("auto"): a call or an answer without tools, as likelihood decides
  (`choice.choose_tool_or_answer`); a call is then made as a forced one. In a gated mode a
  request the awareness gate flags gets the steered answer, never a call: likelihood must not
  hand a harmful request to a tool;
- after tool results for the latest question: an answer, never another call (a small model
  reading its own call copies it); a call the model writes instead becomes an answer from the
  conversation with the results folded into the question.

The pieces are partial generations; the finished turn is leak-checked and audited once.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt

from ..results import GenerationResult, Usage
from ..settings import Mode
from . import guided_json
from .choice import choose_tool, choose_tool_or_answer, forced_call_prefix, forced_tool_name, last_question
from .history import fold_tool_results, has_results_since_question
from .parsing import parse_tool_calls

if TYPE_CHECKING:
    from ..engine.selfguard import SelfGuard

CALL_END = "</tool_call>"


def tool_options(tools: Sequence[Mapping[str, Any]] | None, choice: Any, stop: Sequence[str] | None
                 ) -> dict[str, Any]:
    """The engine options a tool choice means: the tools to render (none for "none"), the
    forced answer start, and the stop string that ends a forced call."""
    tools = None if choice == "none" or not tools else list(tools)
    prefix = forced_call_prefix(tools, choice)
    return {"tools": tools, "prefix": prefix, "stop": [*(stop or []), CALL_END] if prefix else stop}


def _names(tools: Sequence[Mapping[str, Any]] | None) -> list[str]:
    return [t.get("function", t).get("name") for t in tools or ()]


def _last_try(state: RetryCallState) -> GenerationResult:
    """The last try's own result: out of tries, `Retrying` returns it instead of raising."""
    assert state.outcome is not None  # set once a try has run, before retrying gives up
    return state.outcome.result()


@dataclass
class ToolTurn:
    """How a turn with tools runs on one engine: `retries` sampled tries of a call that does
    not parse, `guided` to write the JSON for the model."""

    engine: SelfGuard
    retries: int = 2
    guided: bool = True

    def run(self, conversation: list[dict[str, Any]], options: dict[str, Any]) -> GenerationResult:
        """The turn's result; engine `options` as from `tool_options` plus the usual ones."""
        if options.get("prefix"):
            return self._forced_call(conversation, options)
        if not options.get("tools"):
            return self.engine.generate(conversation, **options)
        if has_results_since_question(conversation):
            return self._after_tool_results(conversation, options)
        return self._call_or_answer(conversation, options)

    def _call_or_answer(self, conversation: list[dict[str, Any]], options: dict[str, Any]) -> GenerationResult:
        """No forced choice: the call likelihood picks, made as a forced call, or an answer without
        the tools in sight (a small model shown tools imitates a call it was not asked for)."""
        tools = options["tools"]
        name = None if self._gate_fires(conversation, options) else choose_tool_or_answer(
            last_question(conversation), tools, self.engine.score_texts)
        if name is None:
            return self.engine.generate(conversation, **{**options, "tools": None})
        return self._forced_call(conversation, {**options, **tool_options(tools, name, options.get("stop"))})

    def _gate_fires(self, conversation: list[dict[str, Any]], options: dict[str, Any]) -> bool:
        mode = Mode.parse(options.get("mode") or self.engine.default_mode)
        return mode.gated and self.engine.awareness([conversation])[0] > 0

    def _forced_call(self, conversation: list[dict[str, Any]], options: dict[str, Any]) -> GenerationResult:
        started = time.perf_counter()
        tools = options["tools"]
        name = forced_tool_name(options["prefix"]) or choose_tool(last_question(conversation), tools,
                                                                  self.engine.score_texts)
        tool = next(t for t in tools if t.get("function", t).get("name") == name)
        pieces = {**options, "tools": [tool], "prefix": forced_call_prefix(tools, name), "partial": True}
        parameters = tool.get("function", tool).get("parameters") or {}
        guided = self.guided and guided_json.supports(parameters)
        result = (self._guided_call(conversation, pieces, name, parameters) if guided else None
                  ) or self._parsed_call(conversation, pieces)
        return self._finish(conversation, result, options, started)

    def _after_tool_results(self, conversation: list[dict[str, Any]], options: dict[str, Any]) -> GenerationResult:
        started = time.perf_counter()
        result = self.engine.generate(conversation, **{**options, "partial": True})
        written = parse_tool_calls(result.answer, _names(options["tools"]))
        if written.calls or written.invalid:
            result = self.engine.generate(fold_tool_results(conversation),
                                          **{**options, "tools": None, "partial": True})
        return self._finish(conversation, result, options, started)

    def _finish(self, conversation: list[dict[str, Any]], result: GenerationResult, options: dict[str, Any],
                started: float) -> GenerationResult:
        return self.engine.finish(conversation, result, started=started, private_context=options.get("private_context"),
                                  canaries=options.get("canaries"), audit_sinks=options.get("audit_sinks", ()),
                                  audit_fields=options.get("audit_fields"))

    def _parsed_call(self, conversation: list[dict[str, Any]], options: dict[str, Any]) -> GenerationResult:
        tries: list[GenerationResult] = []
        names = _names(options["tools"])

        def one_try() -> GenerationResult:
            retry = {"temperature": 0.7, "seed": len(tries)} if tries else {}
            tries.append(self.engine.generate(conversation, **{**options, **retry}))
            return tries[-1]

        retrying = Retrying(stop=stop_after_attempt(1 + self.retries),
                            retry=retry_if_result(lambda result: not parse_tool_calls(result.answer, names).calls),
                            retry_error_callback=_last_try)
        return retrying(one_try)

    def _guided_call(self, conversation: list[dict[str, Any]], options: dict[str, Any], name: str,
                     parameters: Mapping[str, Any]) -> GenerationResult | None:
        pieces: list[GenerationResult] = []

        def continue_text(text: str, stop: Sequence[str], budget: int) -> str:
            result = self.engine.generate(conversation, **{**options, "prefix": text, "stop": list(stop),
                                                           "max_new_tokens": min(budget, options["max_new_tokens"])})
            pieces.append(result)
            return result.answer[len(text):]

        def choose(text: str, values: Sequence[str]) -> int:
            scores = self.engine.score_continuations(conversation, values, mode=options.get("mode"),
                                                     tools=options.get("tools"), prefix=text)
            return max(range(len(values)), key=scores.__getitem__)

        start = '<tool_call>{"name": ' + json.dumps(name) + ', "arguments": '
        filled = guided_json.fill(parameters, start, continue_text, choose)
        if filled is None:
            return None
        first = pieces[0] if pieces else self.engine.generate(conversation, **{**options, "max_new_tokens": 1})
        usage = Usage(input_tokens=first.usage.input_tokens, output_tokens=sum(p.usage.output_tokens for p in pieces),
                      reasoning_tokens=0)
        return first.model_copy(update={"answer": filled[1] + "}" + CALL_END, "reasoning": "", "usage": usage,
                                        "finish_reason": "stop"})
