"""The engine's leak checks: scan each result, apply the policy, generate again if it says so."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Literal

from tenacity import RetryCallState, Retrying, retry_if_result, stop_after_attempt, wait_exponential, wait_none

from ..results import GenerationResult
from ..runtime.chat import Messages, normalize_messages
from .findings import Finding
from .policy import LeakBlockedError, LeakPolicy, PolicyAction
from .report import LeakageReport, LeakAttempt, redact_text
from .scanner import LeakContext, LeakScanner

# Regenerate: called with the try number (2, 3, ...), returns that try's result.
Regenerate = Callable[[int], GenerationResult]


def _strength(result: GenerationResult) -> float | None:
    return None if result.steering is None else result.steering.strength


def _last_try(state: RetryCallState) -> Any:
    """The last try's own result: out of tries, `Retrying` returns it instead of raising."""
    assert state.outcome is not None  # set once a try has run, before retrying gives up
    return state.outcome.result()


class LeakGuard:
    """Checks results against one policy; `canaries` are checked in every generation."""

    def __init__(self, policy: LeakPolicy, scanner: LeakScanner | None = None, canaries: Sequence[str] = ()) -> None:
        self.policy = policy
        self.scanner = scanner or LeakScanner()
        self.canaries = tuple(canaries)

    def context_for(self, messages: Messages, private_context: Sequence[str] | None = None,
                    canaries: Sequence[str] | None = None) -> LeakContext:
        """The caller's own system prompt (never ours), their private documents and canaries."""
        system = "\n\n".join(m["content"] for m in normalize_messages(messages) if m["role"] == "system")
        for name, values in (("private_context", private_context), ("canaries", canaries)):
            if values is not None and (isinstance(values, str) or not all(isinstance(v, str) for v in values)):
                from ..errors import InvalidSettingError

                raise InvalidSettingError(f"{name} must be a list of strings, got {values!r:.80}.")
        return LeakContext(system_prompt=system or None, private_context=tuple(private_context or ()),
                           canaries=(*self.canaries, *(canaries or ())))

    def check(self, result: GenerationResult, context: LeakContext,
              regenerate: Regenerate | None = None) -> GenerationResult:
        """The result with its leakage report attached and the policy applied (redacted, or the
        refusal answer when blocked with `block_with="refusal"`). A block that raises is left to
        the caller (`raise_if_blocked`), after it has written the audit record."""
        findings = self.scanner.scan(result.reasoning, result.answer, context)
        action = self.policy.action_for(findings)
        attempts = [LeakAttempt(attempt=1, strength=_strength(result), findings=len(findings), action=action)]
        if action == "regenerate" and regenerate is not None:
            result, findings, action = self._regenerate(result, findings, context, regenerate, attempts)
        elif action == "regenerate":
            action = "block"  # nothing to generate with: the policy's fallback
        report = LeakageReport(findings=findings, action=action, attempts=attempts)
        return self._apply(result, report)

    def _regenerate(self, result: GenerationResult, findings: list[Finding], context: LeakContext,
                    regenerate: Regenerate, attempts: list[LeakAttempt],
                    ) -> tuple[GenerationResult, list[Finding], PolicyAction | Literal["none"]]:
        """Up to `max_regenerations` more tries, waiting `backoff_seconds` x 2^n between them; still
        leaking after the last, the policy falls back to `block`."""
        if self.policy.max_regenerations == 0:
            return result, findings, "block"

        def one_try() -> tuple[GenerationResult, list[Finding]]:
            number = len(attempts) + 1
            retried = regenerate(number)
            found = self.scanner.scan(retried.reasoning, retried.answer, context)
            attempts.append(LeakAttempt(attempt=number, strength=_strength(retried), findings=len(found),
                                        action=self.policy.action_for(found)))
            return retried, found

        wait = (wait_exponential(multiplier=self.policy.backoff_seconds) if self.policy.backoff_seconds > 0
                else wait_none())
        retrying = Retrying(stop=stop_after_attempt(self.policy.max_regenerations), wait=wait,
                            retry=retry_if_result(lambda outcome: self.policy.action_for(outcome[1]) == "regenerate"),
                            retry_error_callback=_last_try)  # the last try, no error
        retried, found = retrying(one_try)
        final = self.policy.action_for(found)
        if final == "regenerate":
            return retried, found, "block"
        return retried, found, "regenerate" if final in ("none", "log") else final

    def _apply(self, result: GenerationResult, report: LeakageReport) -> GenerationResult:
        update: dict[str, Any] = {"leakage": report}
        if report.action == "redact":
            redactable = [f for f in report.findings if self.policy.actions[f.kind] == "redact"
                          and self.policy.redact_in in ("both", f.where)]
            update["reasoning"] = redact_text(result.reasoning, redactable, "reasoning")
            update["answer"] = redact_text(result.answer, redactable, "answer")
            marked = [f.model_copy(update={"redacted": True}) if f in redactable else f for f in report.findings]
            update["leakage"] = report.model_copy(update={"findings": marked})
        elif report.action == "block" and self.policy.block_with == "refusal":
            update |= {"answer": self.policy.refusal_text, "reasoning": ""}
        return result.model_copy(update=update)

    def raise_if_blocked(self, result: GenerationResult) -> None:
        report = result.leakage
        if report is not None and report.action == "block" and self.policy.block_with == "raise":
            kinds = sorted({f.kind for f in report.findings})
            raise LeakBlockedError(f"The generation was withheld: the leak policy blocks {', '.join(kinds)} and the "
                                   f"checks found {len(report.findings)} finding(s) (see error.findings; the audit "
                                   "log has the record).", report.findings)
