"""Leak policies: parsing with clear errors, the strongest action winning, typed redaction."""

from __future__ import annotations

import pytest

from selfguard_guardrails.errors import InvalidSettingError
from selfguard_guardrails.leakage.findings import Finding, redact_value
from selfguard_guardrails.leakage.policy import LeakPolicy
from selfguard_guardrails.leakage.report import LeakageReport, redact_text


def finding(kind: str, start: int, end: int, where: str = "answer", subtype: str = "x") -> Finding:
    return Finding(kind=kind, subtype=subtype, where=where, start=start, end=end, severity="high",
                   excerpt=redact_value("secretvalue"))


def test_policies_parse_from_a_name_a_mapping_or_nothing():
    assert LeakPolicy.parse(None).actions == {"secret": "redact", "pii": "redact", "system_prompt": "redact",
                                              "private_context": "redact"}
    assert set(LeakPolicy.parse("redact").actions.values()) == {"redact"}
    policy = LeakPolicy.parse({"secret": "block", "pii": "redact", "block_with": "refusal"})
    assert policy.actions["secret"] == "block" and policy.actions["system_prompt"] == "redact"
    assert policy.block_with == "refusal" and policy.holds_back_streams
    assert LeakPolicy().holds_back_streams and not LeakPolicy.parse("log").holds_back_streams


@pytest.mark.parametrize("value, message", [
    ("shred", "Unknown policy action 'shred'"),
    ({"secrets": "block"}, r"Unknown leak policy key\(s\) \['secrets'\]"),
    ({"pii": "hide"}, "Unknown policy action 'hide' for 'pii'"),
    ({"block_with": "silence"}, "block_with"),
    ({"max_regenerations": -1}, "max_regenerations"),
    (42, "a LeakPolicy, an action name or a mapping"),
])
def test_bad_policies_name_the_key_and_the_fix(value, message):
    with pytest.raises(InvalidSettingError, match=message):
        LeakPolicy.parse(value)


def test_the_strongest_action_any_finding_calls_for_wins():
    policy = LeakPolicy.parse({"secret": "redact", "pii": "block", "private_context": "regenerate",
                               "system_prompt": "log"})
    assert policy.action_for([]) == "none"
    assert policy.action_for([finding("system_prompt", 0, 1)]) == "log"
    assert policy.action_for([finding("secret", 0, 1), finding("private_context", 2, 3)]) == "regenerate"
    assert policy.action_for([finding("secret", 0, 1), finding("pii", 2, 3)]) == "block"


def test_redaction_replaces_each_span_with_a_typed_placeholder_and_merges_overlaps():
    text = "key AKIAABCDEFGHIJKLMNOP and mail bob@corp.io end"
    findings = [finding("secret", 4, 24, subtype="aws_access_key"), finding("pii", 34, 45, subtype="email"),
                finding("pii", 36, 40, subtype="email"), finding("pii", 0, 3, where="reasoning")]
    assert redact_text(text, findings, "answer") == (
        "key [REDACTED:secret/aws_access_key] and mail [REDACTED:pii/email] end")
    assert redact_text(text, [], "answer") == text
    assert redact_value("AKIAABCDEFGHIJKLMNOP") == "AKIA…[20 chars]" and redact_value("hunter2") == "…[7 chars]"


def test_report_summary_holds_counts_only():
    report = LeakageReport(findings=[finding("secret", 0, 1), finding("secret", 2, 3, where="reasoning")],
                           action="redact")
    assert report.summary() == {"findings": 2, "by_kind": {"secret": 2}, "withheld": 0, "redacted": 0,
                                "action": "redact", "attempts": 1}
