"""`selfguard scan FILE.jsonl`: check saved generations for leaks, one JSON report per record."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from ..errors import CorruptFileError, InvalidSettingError

_TEXT_FIELDS = ("reasoning", "answer", "system_prompt")
_LIST_FIELDS = ("private_context", "canaries")


def add_scan_command(commands: Any, output: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "scan", parents=[output], help="check saved reasoning/answers for secrets, PII and copied private text",
        description="Read a JSONL file whose records hold `reasoning` and/or `answer` (optionally `system_prompt`, "
                    "a `private_context` list and a `canaries` list) and report the leaks in each: kind, subtype, "
                    "where, span, severity, a redacted excerpt and whether the answer withholds it. No model is "
                    "loaded. Every record is checked before any is scanned.")
    parser.add_argument("file", metavar="FILE.jsonl")
    parser.add_argument("--json", action="store_true", help="print one JSON report per record")
    parser.add_argument("--out", metavar="PATH", help="also write the reports as JSONL to PATH")
    parser.set_defaults(func=cmd_scan)


def read_scan_records(path: str | Path) -> list[dict[str, Any]]:
    """The records, each validated: a bad one raises naming its line and the field to fix. A file
    with no records (empty, or blank lines only) raises too, so `selfguard scan` exits 2 on it, the
    same rule as `selfguard audit` on an empty log: in a pipeline an empty generations file is a
    bug upstream, and exiting 0 would pass it off as "scanned, nothing found"."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise CorruptFileError(f"Cannot read {path}: {error.strerror or error}.") from error
    except UnicodeDecodeError as error:
        raise CorruptFileError(f"{path} is not UTF-8 text: {error}.") from error
    records = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            record = json.loads(line)
        except json.JSONDecodeError as error:
            raise CorruptFileError(f"{where} is not JSON ({error.msg}); fix or remove that line.") from None
        if not isinstance(record, dict):
            raise CorruptFileError(f"{where} is a JSON {type(record).__name__}, expected an object.")
        if not any(isinstance(record.get(key), str) for key in ("reasoning", "answer")):
            raise CorruptFileError(f"{where} has neither 'reasoning' nor 'answer' text to check.")
        for key in _TEXT_FIELDS:
            if record.get(key) is not None and not isinstance(record[key], str):
                raise CorruptFileError(f"{where}: '{key}' must be a string, got {type(record[key]).__name__}.")
        for key in _LIST_FIELDS:
            value = record.get(key)
            if value is not None and (not isinstance(value, list) or not all(isinstance(v, str) for v in value)):
                raise CorruptFileError(f"{where}: '{key}' must be a list of strings.")
        records.append({**record, "_line": number})
    if not records:  # exit 2, as `selfguard audit` on an empty log: a check that saw nothing is no pass
        raise CorruptFileError(f"{path} has no records: nothing to scan. Give one JSON object per line with "
                               "'reasoning' and/or 'answer'.")
    return records


def scan_record(scanner: Any, record: dict[str, Any]) -> dict[str, Any]:
    from ..leakage.scanner import LeakContext

    context = LeakContext(system_prompt=record.get("system_prompt"), private_context=record.get("private_context")
                          or (), canaries=record.get("canaries") or ())
    findings = scanner.scan(record.get("reasoning") or "", record.get("answer") or "", context)
    return {"id": record.get("id", record["_line"]), "line": record["_line"],
            "findings": [f.model_dump() for f in findings],
            "by_kind": dict(Counter(f.kind for f in findings)), "withheld": sum(f.withheld for f in findings)}


def cmd_scan(args: argparse.Namespace) -> int:
    from ..leakage.scanner import LeakScanner

    if args.out and Path(args.out).resolve() == Path(args.file).resolve():
        raise InvalidSettingError("--out must not be the input file: it would be overwritten.")
    records = read_scan_records(args.file)
    scanner = LeakScanner()
    reports = [scan_record(scanner, record) for record in records]
    if args.out:
        Path(args.out).write_text("".join(json.dumps(r) + "\n" for r in reports), encoding="utf-8")
    if args.json:
        sys.stdout.write("".join(json.dumps(r) + "\n" for r in reports))
        return 0
    for report in reports:
        found = ", ".join(f"{f['kind']}/{f['subtype']}@{f['where']}{' (withheld)' if f['withheld'] else ''}"
                          for f in report["findings"]) or "no findings"
        sys.stdout.write(f"{report['id']}: {found}\n")
    total = Counter(kind for r in reports for kind, n in r["by_kind"].items() for _ in range(n))
    leaky = sum(1 for r in reports if r["findings"])
    sys.stdout.write(f"\n{len(reports)} records, {leaky} with findings: "
                     + (", ".join(f"{k} {v}" for k, v in sorted(total.items())) or "none") + "\n")
    return 0
