"""Precision and recall of the leakage checks on a labelled corpus (JSONL, one case per line).

A case holds one `text` standing for a reasoning trace or an answer (`where`), its `kind` and
`subtype`, a `label` ("leak" or "lookalike"), the leaked `values` and the caller's context
(`system_prompt`, `private_context`, `canaries`). A leak is caught when a finding of its kind
covers every leaked value; a look-alike is a false positive when any finding of its kind
appears. Findings of another kind are counted apart (`other_kind`).
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import CorruptFileError
from .findings import KINDS
from .scanner import LeakContext, LeakScanner

REQUIRED = ("id", "kind", "label", "subtype", "where", "text")


def read_corpus(path: str | Path) -> list[dict[str, Any]]:
    """The cases of a corpus file; a malformed line raises naming the file and line."""
    path = Path(path)
    cases = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            case = json.loads(line)
        except json.JSONDecodeError as error:
            raise CorruptFileError(f"{path} line {number} is not JSON: {error}.") from error
        missing = [key for key in REQUIRED if key not in case]
        if missing or case["kind"] not in KINDS or case["label"] not in ("leak", "lookalike"):
            raise CorruptFileError(f"{path} line {number}: needs {', '.join(REQUIRED)} with a known kind and "
                                   f"label 'leak' or 'lookalike' (missing {missing}).")
        cases.append(case)
    return cases


@dataclass
class Tally:
    true_positive: int = 0
    false_negative: int = 0
    false_positive: int = 0
    true_negative: int = 0

    @property
    def precision(self) -> float:
        found = self.true_positive + self.false_positive
        return self.true_positive / found if found else 1.0

    @property
    def recall(self) -> float:
        leaks = self.true_positive + self.false_negative
        return self.true_positive / leaks if leaks else 1.0

    def as_dict(self) -> dict[str, Any]:
        return {"precision": round(self.precision, 4), "recall": round(self.recall, 4), "tp": self.true_positive,
                "fn": self.false_negative, "fp": self.false_positive, "tn": self.true_negative}


@dataclass
class CorpusScore:
    by_kind: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    by_subtype: dict[str, Tally] = field(default_factory=lambda: defaultdict(Tally))
    other_kind: int = 0
    misses: list[str] = field(default_factory=list)  # ids of cases judged wrongly

    def as_dict(self) -> dict[str, Any]:
        return {"by_kind": {k: t.as_dict() for k, t in sorted(self.by_kind.items())},
                "by_subtype": {k: t.as_dict() for k, t in sorted(self.by_subtype.items())},
                "other_kind_findings": self.other_kind, "misses": self.misses}


def context_of(case: dict[str, Any]) -> LeakContext:
    return LeakContext(system_prompt=case.get("system_prompt"), private_context=case.get("private_context") or (),
                       canaries=case.get("canaries") or ())


def scan_case(scanner: LeakScanner, case: dict[str, Any]) -> list[Any]:
    text = case["text"]
    reasoning, answer = (text, "") if case["where"] == "reasoning" else ("", text)
    return scanner.scan(reasoning, answer, context_of(case))


def score_corpus(cases: Iterable[dict[str, Any]], scanner: LeakScanner | None = None) -> CorpusScore:
    scanner = scanner or LeakScanner()
    score = CorpusScore()
    for case in cases:
        findings = scan_case(scanner, case)
        mine = [f for f in findings if f.kind == case["kind"]]
        score.other_kind += len(findings) - len(mine)
        tallies = (score.by_kind[case["kind"]], score.by_subtype[f"{case['kind']}/{case['subtype']}"])
        if case["label"] == "leak":
            caught = all(_covered(case["text"], value, mine) for value in case.get("values") or [""])
            outcome, wrong = ("true_positive", False) if caught else ("false_negative", True)
        else:
            outcome, wrong = ("false_positive", True) if mine else ("true_negative", False)
        for tally in tallies:
            setattr(tally, outcome, getattr(tally, outcome) + 1)
        if wrong:
            score.misses.append(case["id"])
    return score


def _covered(text: str, value: str, findings: Sequence[Any]) -> bool:
    """Whether findings cover most of the value's characters (a leak reported as several findings,
    or with a few characters of punctuation left out, still counts)."""
    if not findings:
        return False
    start = text.find(value) if value else -1
    if start < 0:
        return True
    covered = sum(1 for i in range(start, start + len(value)) if any(f.start <= i < f.end for f in findings))
    return covered >= 0.8 * len(value)
