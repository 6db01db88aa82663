"""`selfguard audit LOG`: summarise and filter a JSONL or SQLite audit log (no model is loaded)."""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from datetime import datetime, timezone
from typing import Any

from ..audit import AuditRecord, read_audit_log
from ..errors import AuditLogError, InvalidSettingError
from ..leakage.findings import KINDS


def _moment(text: str) -> datetime:
    """An ISO date or date-time; without a zone it is UTC."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO date or time: {text!r} (e.g. 2026-12-01 or "
                                         "2026-12-01T09:30)") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def add_audit_command(commands: Any, output: argparse.ArgumentParser) -> None:
    parser = commands.add_parser("audit", parents=[output], help="summarise and filter an audit log (JSONL or SQLite)",
                                 description="Read an audit log written by the engine and print a summary: "
                                             "records per model, mode and policy action, findings per kind and "
                                             "subtype. Filters apply to both the summary and --list/--json.")
    parser.add_argument("log", metavar="LOG", help="a .jsonl log or an SQLite database (.db, .sqlite)")
    parser.add_argument("--kind", choices=KINDS, help="only records with a finding of this kind")
    parser.add_argument("--since", type=_moment, metavar="TIME", help="from this ISO time (inclusive; UTC if no zone)")
    parser.add_argument("--until", type=_moment, metavar="TIME", help="before this ISO time")
    parser.add_argument("--model", metavar="NAME", help="only records of this model")
    parser.add_argument("--list", action="store_true", help="also print one line per record")
    parser.add_argument("--json", action="store_true", help="print the summary and the records as JSON")
    parser.set_defaults(func=cmd_audit)


def summarise(records: list[AuditRecord]) -> dict[str, Any]:
    findings = [f for r in records for f in r.findings]
    return {
        "records": len(records),
        "first": min((r.time for r in records), default=None),
        "last": max((r.time for r in records), default=None),
        "models": dict(Counter(r.model for r in records)),
        "modes": dict(Counter(r.mode for r in records)),
        "actions": dict(Counter(r.action for r in records)),
        "records_with_findings": sum(1 for r in records if r.findings),
        "findings": len(findings),
        "findings_by_kind": dict(Counter(f.kind for f in findings)),
        "findings_by_subtype": dict(Counter(f"{f.kind}/{f.subtype}" for f in findings)),
        "withheld": sum(1 for f in findings if f.withheld),
    }


def _text(summary: dict[str, Any], records: list[AuditRecord], listing: bool) -> str:
    def counts(values: dict[str, int]) -> str:
        return ", ".join(f"{k} {v}" for k, v in sorted(values.items(), key=lambda kv: -kv[1])) or "-"

    span = (f"{summary['first']:%Y-%m-%d %H:%M:%S} to {summary['last']:%Y-%m-%d %H:%M:%S} UTC"
            if summary["records"] else "-")
    lines = [f"records:   {summary['records']} ({span})",
             f"models:    {counts(summary['models'])}",
             f"modes:     {counts(summary['modes'])}",
             f"actions:   {counts(summary['actions'])}",
             f"findings:  {summary['findings']} in {summary['records_with_findings']} records, "
             f"{summary['withheld']} withheld (in the reasoning only)",
             f"by kind:   {counts(summary['findings_by_kind'])}",
             f"by subtype: {counts(summary['findings_by_subtype'])}"]
    if listing:
        lines.append("")
        lines += [f"{r.time:%Y-%m-%d %H:%M:%S} {r.id[:12]} {r.model} {r.mode} {r.action} "
                  + (", ".join(f"{f.kind}/{f.subtype}@{f.where}" for f in r.findings) or "no findings")
                  for r in records]
    return "\n".join(lines) + "\n"


def _holds_no_records(path: str) -> bool:
    """Whether the log holds no record at all (not merely none matching the filters). Asked only
    after a filtered read came back empty, so the file is known to be a readable log; it reads
    no records (an SQLite log is not loaded whole just to learn that a filter matched nothing)."""
    with open(path, "rb") as handle:
        head = handle.read(16)
    if head == b"SQLite format 3\x00":
        import sqlite3

        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            return not connection.execute("SELECT EXISTS (SELECT 1 FROM records)").fetchone()[0]
        finally:
            connection.close()
    with open(path, encoding="utf-8", errors="replace") as handle:
        return not any(line.strip() for line in handle)  # a log whose lines are all torn raised already


def cmd_audit(args: argparse.Namespace) -> int:
    """Summarise LOG. A log with no records at all exits 2 ("LOG has no records: ..."), the same
    rule as `selfguard scan` on an empty file: both are checks, and a check that saw nothing must
    not pass as a clean one (an empty log usually means the sink writes elsewhere, or a wrong
    path). Filters that match no record of a non-empty log are an answer, not an error: exit 0."""
    if args.since and args.until and args.since >= args.until:
        raise InvalidSettingError(f"--since {args.since.isoformat()} is not before --until {args.until.isoformat()}.")
    filters = {"kind": args.kind, "since": args.since, "until": args.until, "model": args.model}
    records = read_audit_log(args.log, **filters)
    if not records and (not any(v is not None for v in filters.values()) or _holds_no_records(args.log)):
        raise AuditLogError(f"{args.log} has no records: nothing to summarise. Check that the engine's audit "
                            "sink writes to this file.")
    summary = summarise(records)
    if args.json:
        payload = {"summary": summary, "records": [r.model_dump(mode="json") for r in records]}
        sys.stdout.write(json.dumps(payload, default=str, indent=1) + "\n")
    else:
        sys.stdout.write(_text(summary, records, args.list))
    return 0
