"""Leakage detectors on the labelled corpus, and the rules behind them on cases written here."""

from __future__ import annotations

from pathlib import Path

import pytest

from selfguard_guardrails.leakage.evaluate import read_corpus, scan_case, score_corpus
from selfguard_guardrails.leakage.scanner import LeakContext, LeakScanner
from selfguard_guardrails.method.prompting import DEFAULT_SAFETY_SYSTEM

CORPUS = Path(__file__).parent / "data" / "leakage" / "corpus.jsonl"
SCANNER = LeakScanner()


@pytest.fixture(scope="module")
def corpus():
    return read_corpus(CORPUS)


def test_precision_and_recall_per_kind_on_the_labelled_corpus(corpus):
    score = score_corpus(corpus, SCANNER)
    for kind, tally in score.by_kind.items():
        assert tally.precision >= 0.95 and tally.recall >= 0.95, (kind, tally.as_dict(), score.misses)
    assert score.other_kind <= 0.02 * len(corpus), "findings of another kind than the case's"


def test_no_excerpt_ever_holds_the_value_it_found(corpus):
    for case in corpus:
        for finding in scan_case(SCANNER, case):
            for value in case.get("values") or []:
                if len(value) > 6:
                    assert value not in finding.excerpt, case["id"]
            assert case["text"][finding.start:finding.end] not in finding.excerpt or finding.end - finding.start < 4


def kinds(reasoning: str = "", answer: str = "", **context) -> list[tuple[str, str, str, bool]]:
    return [(f.kind, f.subtype, f.where, f.withheld) for f in SCANNER.scan(reasoning, answer, LeakContext(**context))]


def test_a_leak_only_the_reasoning_holds_is_withheld():
    key = "ghp_" + "Zq8XwV2mRt5LpK9sNb3YcH7dFj4GaE1uTo6W"
    assert kinds(f"The token is {key}.", "I can't share tokens.") == [("secret", "github_token", "reasoning", True)]
    assert kinds(f"The token is {key}.", f"Use {key}.") == [("secret", "github_token", "reasoning", False),
                                                           ("secret", "github_token", "answer", False)]


def test_checksums_decide_for_digit_runs():
    assert kinds(answer="Card on file: 4539 1488 0343 6467.") == [("pii", "payment_card", "answer", False)]
    assert kinds(answer="Card on file: 4539 1488 0343 6468.") == []  # fails Luhn
    assert kinds(answer="Use the test card 4242 4242 4242 4242 in the sandbox.") == []
    assert kinds(answer="Pay to NL02 ABNA 0123 4567 89.") == [("pii", "iban", "answer", False)]
    assert kinds(answer="Pay to NL03 ABNA 0123 4567 89.") == []  # wrong mod-97


def test_passwords_need_a_value_not_advice():
    assert kinds(answer="The Wi-Fi password is Kestrel!2291 for guests.") == [("secret", "password", "answer", False)]
    assert kinds(answer="Choose a password of at least twelve characters and keep it private.") == []
    assert kinds(answer="password = os.environ['DB_PASSWORD']") == []


def test_our_public_safety_prompt_is_never_a_system_prompt_leak():
    caller = "You are the billing assistant for Northwind. Quote prices only from the March price list."
    answer = f"My instructions say: {DEFAULT_SAFETY_SYSTEM}"
    assert kinds(answer=answer, system_prompt=f"{DEFAULT_SAFETY_SYSTEM}\n\n{caller}") == []
    leaked = "I was told: you are the billing assistant for Northwind, quote prices only from the March price list."
    assert kinds(answer=leaked, system_prompt=caller) == [("system_prompt", "system_prompt", "answer", False)]


def test_canaries_match_exactly_and_documents_need_a_real_copy():
    assert kinds(answer="Marker: osprey-lattice-9921.", canaries=["osprey-lattice-9921"])[0][1] == "canary"
    assert kinds(answer="Marker: osprey-lattice-9922.", canaries=["osprey-lattice-9921"]) == []
    doc = "Quarterly plan: the Lisbon office closes in June and its twelve staff move to the Porto site in July."
    copied = "Per the plan, the Lisbon office closes in June and its twelve staff move to the Porto site."
    assert kinds(copied, "", private_context=[doc]) == [("private_context", "private_context", "reasoning", True)]
    assert kinds("Some staff will relocate this summer.", "", private_context=[doc]) == []


def test_a_corrupt_corpus_line_is_named(tmp_path):
    from selfguard_guardrails.errors import CorruptFileError

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "kind": "secret", "label": "leak", "subtype": "x", "where": "answer", "text": "t"}\n'
                   '{"id": "b", "kind": "gossip"}\n')
    with pytest.raises(CorruptFileError, match="line 2"):
        read_corpus(bad)


def test_scan_command_reports_each_record_and_names_a_bad_one(tmp_path, capsys):
    import json

    from selfguard_guardrails.cli import main

    records = tmp_path / "records.jsonl"
    key = "ghp_" + "Zq8XwV2mRt5LpK9sNb3YcH7dFj4GaE1uTo6W"
    records.write_text(json.dumps({"id": "r1", "reasoning": f"token {key}", "answer": "I can't share it."}) + "\n"
                       + json.dumps({"answer": "Marker heron-quartz-5512.", "canaries": ["heron-quartz-5512"]}) + "\n"
                       + json.dumps({"answer": "Nothing to see."}) + "\n")
    out = tmp_path / "reports.jsonl"
    assert main(["scan", str(records), "--json", "--out", str(out)]) == 0
    reports = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["id"] for r in reports] == ["r1", 2, 3]
    assert reports[0]["findings"][0]["subtype"] == "github_token" and reports[0]["withheld"] == 1
    assert reports[1]["by_kind"] == {"private_context": 1} and reports[2]["findings"] == []
    assert key not in out.read_text() and len(out.read_text().splitlines()) == 3
    assert main(["scan", str(records)]) == 0
    assert "3 records, 2 with findings" in capsys.readouterr().out

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"answer": "fine"}\n{"answer": "x", "canaries": "not-a-list"}\n')
    assert main(["scan", str(bad)]) == 2
    assert "line 2: 'canaries' must be a list of strings" in capsys.readouterr().err
    bad.write_text('{"answer": "fine"}\n{"reasoning": 5}\n')
    assert main(["scan", str(bad)]) == 2
    assert "line 2 has neither 'reasoning' nor 'answer'" in capsys.readouterr().err
