"""Bank account numbers that are not IBANs: a digit run is an account number only where a label
says so ("account number", "acct #", "Kontonummer", ...), or next to a routing number or sort
code; a US routing number (ABA) must pass its checksum (`python-stdnum`). Order numbers,
invoice numbers, prices, dates and versions have no such label and pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from stdnum.us import rtn

from .matches import Match

_ACCOUNT_LABEL = (r"(?:bank[\s_\-]*)?(?:account|acct|a/c|acc)\.?[\s_\-]*(?:number|num|no|nr|#)?\.?|kontonummer|"
                  r"konto(?:nr)?\.?|"
                  r"(?:n(?:[uú]mero|°|º|o)\.?\s+de\s+)?(?:cuenta|compte|conta|conto)(?:\s+bancaria)?|"
                  r"rekeningnummer|checking|savings")
_ROUTING_LABEL = r"(?:routing|aba|rtn|transit)(?:[\s_\-]*(?:number|num|no|#))?\.?"
_SORT_CODE_LABEL = r"sort\s*code"
# between label and value: a colon, `=`, "is" (in the languages of the labels), quotes of JSON or code
_SEP = r"""["']?\s*(?:is|est(?:\s+le)?|es|ist|lautet|:|=|#|-)?\s*["']?"""
# 6 to 17 digits, groups separated by single spaces or hyphens (account numbers run 6-17 in the US)
_ACCOUNT_VALUE = r"(\d(?:[ \-]?\d){5,16})(?![\d\-/.]\d)"
# lowercase patterns, run on the lowered text (much faster than IGNORECASE; digits keep their offsets)
_ACCOUNT = re.compile(r"\b(?:" + _ACCOUNT_LABEL + r")" + _SEP + _ACCOUNT_VALUE)
_ROUTING = re.compile(r"\b" + _ROUTING_LABEL + _SEP + r"(\d{9})(?!\d)")
_SORT_CODE = re.compile(r"\b" + _SORT_CODE_LABEL + _SEP + r"(\d{2}[ \-]\d{2}[ \-]\d{2}|\d{6})(?!\d)")
_ACCOUNT_ANCHORS = ("account", "acct", "a/c", "acc ", "acc.", "acc#", "acc_", "konto", "cuenta", "compte", "conta",
                    "conto", "rekening", "checking", "savings")
_ROUTING_ANCHORS = ("routing", "aba", "rtn", "transit")


_LABEL_REACH = 48  # characters from a label's start to its value
_LABELS = re.compile("|".join(re.escape(anchor) for anchor in (*_ACCOUNT_ANCHORS, *_ROUTING_ANCHORS, "sort")))


def find_bank_accounts(text: str, digit_runs: list[tuple[int, int]]) -> Iterator[Match]:
    """Account numbers after a label, routing numbers that pass ABA's checksum, and sort codes.
    `digit_runs` are the stretches that hold a run of digits (the PII scan finds them once); the
    labels are searched only just before them."""
    if not digit_runs:
        return
    lowered = text.lower()
    labels = {found.group() for found in _LABELS.finditer(lowered)}
    if not labels:
        return
    checks = [(pattern, kind) for pattern, kind, anchors in ((_ACCOUNT, "account", _ACCOUNT_ANCHORS),
                                                             (_ROUTING, "routing", _ROUTING_ANCHORS),
                                                             (_SORT_CODE, "sort", ("sort",)))
              if not labels.isdisjoint(anchors)]
    if len(lowered) != len(text):  # a character that lowercases to two: keep it, so offsets stay the text's
        lowered = "".join(c if len(c.lower()) != 1 else c.lower() for c in text)
    seen: set[int] = set()
    for start, end in digit_runs:
        window = (max(0, start - _LABEL_REACH), end)
        for pattern, kind in checks:
            for found in pattern.finditer(lowered, *window):
                if found.start(1) in seen:
                    continue
                seen.add(found.start(1))
                value = found.group(1)
                digits = re.sub(r"\D", "", value)
                if kind == "account" and len(set(digits)) <= 2:  # 00000000, 12121212: a mask or a placeholder
                    continue
                if kind == "routing" and not rtn.is_valid(digits):
                    continue
                yield Match("pii", "bank_account", found.start(1), found.end(1),
                            "medium" if kind == "sort" else "high", digits)
