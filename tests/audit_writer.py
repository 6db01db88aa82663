"""A separate process that writes audit records, for the concurrency and SIGKILL tests.

    python -m tests.audit_writer JSONL_PATH SQLITE_PATH COUNT TAG
"""

from __future__ import annotations

import sys

from selfguard_guardrails.audit import AuditRecord
from selfguard_guardrails.audit.jsonl import JsonlAuditSink
from selfguard_guardrails.audit.sqlite import SqliteAuditSink
from selfguard_guardrails.leakage.findings import Finding


def record(tag: str, index: int) -> AuditRecord:
    finding = Finding(kind="secret", subtype="password", where="reasoning", start=index, end=index + 8,
                      severity="high", excerpt="…[8 chars]", withheld=True)
    return AuditRecord(model="writer", mode="self-guard", prompt_hash=f"{tag}-{index}", findings=[finding],
                       context={"writer": tag, "index": index})


def main(jsonl: str, sqlite: str, count: int, tag: str) -> None:
    sinks = [JsonlAuditSink(jsonl), SqliteAuditSink(sqlite)]
    print("ready", flush=True)
    for index in range(count):
        for sink in sinks:
            sink.write(record(tag, index))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4])
