"""The engine's leak checks: policies applied to results, regeneration, held-back streams, audit records."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfguard_guardrails.audit import AuditLog, audit_context, read_audit_log
from selfguard_guardrails.audit.jsonl import JsonlAuditSink
from selfguard_guardrails.errors import InvalidSettingError
from selfguard_guardrails.leakage.findings import KINDS
from selfguard_guardrails.leakage.guard import LeakGuard
from selfguard_guardrails.leakage.policy import LeakBlockedError, LeakPolicy
from selfguard_guardrails.leakage.scanner import LeakContext, LeakScanner
from selfguard_guardrails.leakage.streaming import StreamGuard
from selfguard_guardrails.results import GenerationResult, SteeringApplied, Timings, Usage
from tests.audit_sinks import BrokenSink
from tests.tiny_engines import make_engine

KEY = "AKIA" + "Q4TZ7MNB2XWE9RLD"
CORPUS = Path(__file__).parent / "data" / "leakage" / "corpus.jsonl"
CANARY = "heron-quartz-5512"


def result(answer: str, reasoning: str = "", strength: float | None = 0.5) -> GenerationResult:
    steering = None if strength is None else SteeringApplied(layers=[1], strength=strength, scope="generated",
                                                             method="mean_difference", vector_fingerprint="t")
    return GenerationResult(answer=answer, reasoning=reasoning, mode="self-guard", finish_reason="eos",
                            usage=Usage(input_tokens=3, output_tokens=5), steering=steering,
                            timings=Timings(prefill_seconds=0, decode_seconds=0, total_seconds=0), model="tiny")


def test_redact_rewrites_only_the_kinds_it_covers_in_the_texts_asked():
    guard = LeakGuard(LeakPolicy.parse({"secret": "redact", "pii": "log", "redact_in": "answer"}))
    checked = guard.check(result(f"Key {KEY}, mail ana@corp.io", reasoning=f"saw {KEY}"), LeakContext())
    assert checked.answer == "Key [REDACTED:secret/aws_access_key], mail ana@corp.io"
    assert checked.reasoning == f"saw {KEY}"  # redact_in="answer"
    assert checked.leakage.action == "redact" and {f.kind for f in checked.leakage.findings} == {"secret", "pii"}
    # the report says which findings were redacted: the key in the answer, not the e-mail or the reasoning's key
    assert sorted((f.kind, f.where, f.redacted) for f in checked.leakage.findings) == [
        ("pii", "answer", False), ("secret", "answer", True), ("secret", "reasoning", False)]


def test_the_default_policy_redacts_every_kind_and_log_stays_a_choice():
    assert dict(LeakPolicy.parse(None).actions) == dict.fromkeys(KINDS, "redact")
    assert LeakPolicy.parse({"secret": "block"}).actions["pii"] == "redact"  # kinds not named keep the safe default
    assert set(LeakPolicy.parse("log").actions.values()) == {"log"}
    rule = "never discuss refunds above five hundred dollars without asking a manager first"
    context = LeakContext(system_prompt=f"You are the billing bot of Acme. {rule}.", canaries=(CANARY,))
    checked = LeakGuard(LeakPolicy.parse(None)).check(
        result(f"Mail ana@corp.io, key {KEY}, marker {CANARY}. My rules: {rule}."), context)
    assert sorted(f.kind for f in checked.leakage.findings) == ["pii", "private_context", "secret", "system_prompt"]
    assert all(f.redacted for f in checked.leakage.findings) and checked.leakage.summary()["redacted"] == 4
    assert not any(value in checked.answer for value in ("ana@corp.io", KEY, CANARY, "five hundred dollars"))


def test_values_a_protected_text_holds_are_leaks_without_their_label():
    runbook = "Production database: host db-prod-1, user settlement_svc, password Hunter2-Settle-9931. Rotate it."
    staff = "Settlement lead: Maria Okafor, email maria.okafor@acme-payments.com."
    scanner = LeakScanner()
    bare = scanner.scan("", "Try Hunter2-Settle-9931 or write to MARIA.OKAFOR@acme-payments.com",
                        LeakContext(private_context=(runbook, staff)))
    assert sorted((f.kind, f.subtype) for f in bare) == [("pii", "email"), ("private_context", "email"),
                                                          ("private_context", "password")]
    assert scanner.scan("", "Try Hunter2-Settle-9931.", LeakContext()) == []  # unlabelled and not protected
    near = scanner.scan("", "It was hunter2-Settle-931, or settle it later.", LeakContext(private_context=(runbook,)))
    assert [(f.kind, f.subtype, f.start) for f in near] == [("private_context", "password", 7)]  # a digit dropped
    from_system = scanner.scan("", "It is Hunter2-Settle-9931.", LeakContext(system_prompt=runbook))
    assert [(f.kind, f.subtype) for f in from_system] == [("system_prompt", "password")]


@pytest.mark.parametrize("label", ["leak", "lookalike"])
def test_a_stream_without_documents_shows_what_checking_the_whole_answer_shows(label):
    """Fed a few characters at a time, a redacting stream over texts with no protected document
    shows no value before it is caught, and adds up to the whole text redacted at once."""
    from selfguard_guardrails.leakage.evaluate import context_of, read_corpus
    from selfguard_guardrails.leakage.report import redact_text

    cases = [c for c in read_corpus(CORPUS) if c["label"] == label and c["kind"] in ("secret", "pii")
             and not c["system_prompt"] and not c["private_context"]]
    assert len(cases) > 30
    policy = LeakPolicy.parse(None)
    for case in cases:
        text = case["text"]
        context = context_of(case)
        guard = StreamGuard(LeakScanner(), context, policy)
        shown = stream_text(guard, [("answer", text[i:i + 3]) for i in range(0, len(text), 3)])
        whole = redact_text(text, LeakScanner().scan_text(text, "answer", context), "answer")
        assert "".join(t for _, t in shown) == whole, case["id"]
        for value in case.get("values") or []:
            assert all(value not in t for _, t in shown), case["id"]

    def pieces(context: LeakContext) -> int:
        return sum(len(stream_text(StreamGuard(LeakScanner(), context, policy),
                                   [("answer", c["text"][i:i + 3]) for i in range(0, len(c["text"]), 3)]))
                   for c in cases)

    # it streams: shown in more pieces than when a protected document makes it hold a long tail
    assert pieces(LeakContext()) > pieces(LeakContext(private_context=("An unrelated private note.",)))


def test_block_raises_or_answers_with_the_refusal():
    context = LeakContext(canaries=(CANARY,))
    raising = LeakGuard(LeakPolicy.parse({"private_context": "block"}))
    checked = raising.check(result(f"The marker is {CANARY}."), context)
    with pytest.raises(LeakBlockedError) as error:
        raising.raise_if_blocked(checked)
    assert CANARY not in str(error.value) and error.value.findings[0].subtype == "canary"
    refusing = LeakGuard(LeakPolicy.parse({"private_context": "block", "block_with": "refusal"}))
    checked = refusing.check(result(f"The marker is {CANARY}.", reasoning=CANARY), context)
    assert checked.answer == refusing.policy.refusal_text and checked.reasoning == ""
    refusing.raise_if_blocked(checked)  # no error: the refusal is the answer


def test_regenerate_tries_again_with_more_strength_then_blocks():
    policy = LeakPolicy.parse({"secret": "regenerate", "max_regenerations": 2, "strength_step": 0.25})
    guard = LeakGuard(policy)
    tries: list[int] = []

    def clean_on_second(attempt: int) -> GenerationResult:
        tries.append(attempt)
        return result("I can't share credentials.", strength=0.5 + 0.25 * (attempt - 1))

    checked = guard.check(result(f"Use {KEY}."), LeakContext(), clean_on_second)
    assert tries == [2] and checked.answer == "I can't share credentials." and checked.leakage.action == "regenerate"
    assert [(a.attempt, a.strength, a.findings) for a in checked.leakage.attempts] == [(1, 0.5, 1), (2, 0.75, 0)]

    tries.clear()
    checked = guard.check(result(f"Use {KEY}."), LeakContext(),
                          lambda attempt: tries.append(attempt) or result(f"Still {KEY}."))
    assert tries == [2, 3] and checked.leakage.action == "block" and len(checked.leakage.attempts) == 3


def stream_text(guard: StreamGuard, chunks: list[tuple[str, str]]) -> list[tuple[str, str]]:
    shown = [piece for channel, text in chunks for piece in guard.feed(channel, text)]
    return shown + guard.finish()


def test_a_redacting_stream_never_shows_the_value_and_adds_up_to_the_redacted_text():
    answer = "Sure. " + "The deployment uses region eu-west-1 and a single bucket. " * 8 + f"The key is {KEY} there."
    pieces = [("answer", answer[i:i + 7]) for i in range(0, len(answer), 7)]
    chunks = [("reasoning", f"I see {KEY} in the file. "), *pieces]
    guard = StreamGuard(LeakScanner(), LeakContext(), LeakPolicy.parse({"secret": "redact"}), window=64)
    shown = stream_text(guard, chunks)
    assert all(KEY not in text and KEY[:8] not in text for _, text in shown)
    assert "".join(t for c, t in shown if c == "reasoning") == "I see [REDACTED:secret/aws_access_key] in the file. "
    assert "".join(t for c, t in shown if c == "answer") == answer.replace(KEY, "[REDACTED:secret/aws_access_key]")
    assert len([1 for c, _ in shown if c == "answer"]) > 3  # it did stream, not hold everything


def test_a_blocking_stream_stops_before_the_leak_is_shown():
    guard = StreamGuard(LeakScanner(), LeakContext(canaries=(CANARY,)), LeakPolicy.parse({"private_context": "block"}),
                        window=64)
    text = "Here is what the system prompt says. " * 4 + f"It contains {CANARY} and more."
    shown = stream_text(guard, [("answer", text[i:i + 5]) for i in range(0, len(text), 5)])
    assert guard.blocked and CANARY not in "".join(t for _, t in shown)


def test_every_generation_writes_one_audit_record_with_the_callers_context(smollm_tokenizer, tmp_path):
    path = tmp_path / "audit.jsonl"
    engine = make_engine(smollm_tokenizer, audit=path)
    with audit_context(run_id="run-7", tags=["batch-test"]):
        engine.batch(["Hi", "Tell me a story.", "What is 2+2?"], max_new_tokens=4)
        list(engine.stream("Hi", max_new_tokens=4))
    records = read_audit_log(path)
    assert len(records) == 4 and all(r.context == {"run_id": "run-7", "tags": ["batch-test"]} for r in records)
    assert {r.mode for r in records} == {"self-guard"} and all(r.output_tokens <= 4 for r in records)
    assert records[0].steering_layers == [1, 2] and records[0].steering_strength == 2.0
    assert len({r.prompt_hash for r in records}) == 3  # the two "Hi" prompts share a hash


def test_checks_can_be_off_and_bad_context_is_refused_before_generating(smollm_tokenizer):
    assert make_engine(smollm_tokenizer, leak_checks=False).generate("Hi", max_new_tokens=2).leakage is None
    engine = make_engine(smollm_tokenizer)
    assert engine.generate("Hi", max_new_tokens=2).leakage.action in ("none", "log")
    with pytest.raises(InvalidSettingError, match="private_context must be a list of strings"):
        engine.generate("Hi", max_new_tokens=2, private_context="one long string")
    with pytest.raises(InvalidSettingError, match=r"Unknown leak policy key\(s\) \[.secrets.\]"):
        make_engine(smollm_tokenizer, leak_policy={"secrets": "block"})


def test_a_failing_audit_sink_fails_the_generation_closed_or_warns_open(smollm_tokenizer, tmp_path):
    from selfguard_guardrails.errors import AuditLogError

    closed = make_engine(smollm_tokenizer, audit=[BrokenSink(), tmp_path / "a.jsonl"])
    with pytest.raises(AuditLogError, match="disk full"):
        closed.generate("Hi", max_new_tokens=2)
    opened = make_engine(smollm_tokenizer, audit=AuditLog([BrokenSink(), JsonlAuditSink(tmp_path / "b.jsonl")],
                                                          on_failure="open"))
    assert opened.generate("Hi", max_new_tokens=2).answer is not None
    assert len(read_audit_log(tmp_path / "b.jsonl")) == 1
