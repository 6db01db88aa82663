"""Leak checks on any model's message: reasoning, answer text and tool-call arguments.

The engine checks what it generated itself (`guard.py`); this checks a message another model
wrote, for the framework guards (LangChain middleware, the LlamaIndex wrapper). A framework
adapter reads its message into a `ModelOutput`, and writes the checked one back.

Tool arguments are checked value by value: each string in the arguments is scanned on its own
and redacted in place, so the arguments stay valid JSON of the same shape.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from ..errors import InvalidSettingError
from .findings import Finding, Where
from .policy import LeakBlockedError, LeakPolicy
from .report import LeakageReport, LeakAttempt, ReportAction, redact_range
from .scanner import LeakContext, LeakScanner

StripReasoning = Literal["never", "on_leak", "always"]
STRIP_REASONING: tuple[str, ...] = ("never", "on_leak", "always")


@dataclass(frozen=True)
class ModelOutput:
    """One model message as the checks read it: its trace, its text and its tool calls' arguments."""

    reasoning: str = ""
    answer: str = ""
    tool_arguments: tuple[Mapping[str, Any], ...] = ()  # one mapping per tool call, in order


@dataclass(frozen=True)
class CheckedOutput:
    """The output as it may be shown (redacted, its trace stripped) and what was found.

    `blocked`: the policy withholds the whole message."""

    output: ModelOutput
    report: LeakageReport
    reasoning_stripped: bool = False

    @property
    def blocked(self) -> bool:
        return self.report.action == "block"

    @property
    def try_again(self) -> bool:
        """The policy asks for another try (`regenerate`, tries left): the caller asks the model again."""
        return self.report.action == "regenerate" and self.report.attempts[-1].action == "regenerate"


def _string_paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], str]]:
    """Every string inside a JSON-like value, with the keys and indexes that lead to it."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, Mapping):
        return [found for key, item in value.items() for found in _string_paths(item, (*path, key))]
    if isinstance(value, (list, tuple)):
        return [found for index, item in enumerate(value) for found in _string_paths(item, (*path, index))]
    return []


def _replaced(value: Any, path: tuple[Any, ...], new: str) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, Mapping):
        return {**value, head: _replaced(value[head], rest, new)}
    items = list(value)
    items[head] = _replaced(items[head], rest, new)
    return items


@dataclass
class OutputGuard:
    """The checks, the policy and what to do with a trace, for messages of any model.

    `strip_reasoning`: "never" (the trace is checked like the answer), "on_leak" (a trace with any
    finding is dropped whole instead of redacted) or "always" (no trace is ever passed on)."""

    policy: LeakPolicy = field(default_factory=LeakPolicy)
    scanner: LeakScanner = field(default_factory=LeakScanner)
    strip_reasoning: StripReasoning = "never"

    def __post_init__(self) -> None:
        if self.strip_reasoning not in STRIP_REASONING:
            raise InvalidSettingError(f"strip_reasoning must be one of {', '.join(STRIP_REASONING)}, got "
                                      f"{self.strip_reasoning!r}.")

    def findings(self, output: ModelOutput, context: LeakContext) -> list[Finding]:
        """Findings in the trace, the text and every string of the tool arguments."""
        found = self.scanner.scan(output.reasoning, output.answer, context)
        for arguments in output.tool_arguments:
            for _, text in _string_paths(arguments):
                found += self.scanner.scan_text(text, "tool_arguments", context)
        return found

    def check(self, output: ModelOutput, context: LeakContext,
              attempts: Sequence[LeakAttempt] = ()) -> CheckedOutput:
        """The output with the policy applied. `attempts` are the earlier tries of this call under
        `regenerate`: out of tries, a leak that asks for another one is blocked instead."""
        findings = self.findings(output, context)
        action: ReportAction = self.policy.action_for(findings)
        tries = [*attempts, LeakAttempt(attempt=len(attempts) + 1, strength=None, findings=len(findings),
                                        action=action)]
        if action == "regenerate" and len(attempts) >= self.policy.max_regenerations:
            action = "block"
        elif attempts and action in ("none", "log"):
            action = "regenerate"  # an earlier try leaked; this one is what the caller gets
        redacting = action == "redact"
        report = LeakageReport(findings=[f.model_copy(update={"redacted": True}) if redacting and self._redacts(f)
                                         else f for f in findings],
                               action=action, attempts=tries if attempts or action == "regenerate" else [])
        in_trace = any(f.where == "reasoning" for f in findings)
        strip = bool(output.reasoning) and (self.strip_reasoning == "always"
                                            or (self.strip_reasoning == "on_leak" and in_trace))
        checked = CheckedOutput(output, report, reasoning_stripped=strip)
        shown = ModelOutput(reasoning=self.rewrite(output.reasoning, "reasoning", context, checked),
                            answer=self.rewrite(output.answer, "answer", context, checked),
                            tool_arguments=tuple(self.rewrite_arguments(args, context, checked)
                                                 for args in output.tool_arguments))
        return replace(checked, output=shown)

    def _redacts(self, finding: Finding) -> bool:
        where = "answer" if finding.where == "tool_arguments" else finding.where
        return self.policy.actions[finding.kind] == "redact" and self.policy.redact_in in ("both", where)

    def rewrite(self, text: str, where: Where, context: LeakContext, checked: CheckedOutput) -> str:
        """One piece of the message as it may be shown: "" for a stripped trace, redacted under
        `redact`. A message whose trace or text sits in several places (content blocks and
        provider fields) has each rewritten on its own."""
        if where == "reasoning" and checked.reasoning_stripped:
            return ""
        if checked.report.action != "redact" or not text:
            return text
        spans = [f for f in self.scanner.scan_text(text, where, context) if self._redacts(f)]
        return redact_range(text, spans) if spans else text

    def rewrite_arguments(self, arguments: Mapping[str, Any], context: LeakContext,
                          checked: CheckedOutput) -> Mapping[str, Any]:
        """A tool call's arguments with each string value rewritten in place: still the same JSON shape."""
        result: Any = arguments
        for path, text in _string_paths(arguments):
            shown = self.rewrite(text, "tool_arguments", context, checked)
            if shown != text:
                result = _replaced(result, path, shown)
        return result

    def raise_if_blocked(self, checked: CheckedOutput) -> None:
        """`LeakBlockedError` when the policy blocks by raising (after the caller wrote its audit record)."""
        if checked.blocked and self.policy.block_with == "raise":
            found = {f.kind for f in checked.report.findings}
            stopping = self.policy.kinds_with("block") | self.policy.kinds_with("regenerate")
            blocking = sorted(found & stopping) or sorted(found)
            raise LeakBlockedError(f"The model's message was withheld: the leak policy blocks {', '.join(blocking)} "
                                   f"and the checks found {len(checked.report.findings)} finding(s) (see "
                                   "error.findings; the audit log has the record).", checked.report.findings)
