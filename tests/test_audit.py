"""The audit log: records, context, JSONL and SQLite sinks, failure modes, concurrency and crashes."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from selfguard_guardrails.audit import (
    AuditLog,
    AuditRecord,
    audit_context,
    current_audit_context,
    open_audit_sink,
    read_audit_log,
)
from selfguard_guardrails.audit.jsonl import JsonlAuditSink, read_jsonl_records
from selfguard_guardrails.audit.sqlite import SCHEMA_VERSION, SqliteAuditSink
from selfguard_guardrails.errors import AuditLogError, InvalidSettingError
from selfguard_guardrails.leakage.findings import Finding
from tests.audit_sinks import BrokenSink
from tests.audit_writer import record

ROOT = Path(__file__).resolve().parent.parent


def finding(kind: str = "secret") -> Finding:
    return Finding(kind=kind, subtype="canary" if kind == "private_context" else "password", where="reasoning",
                   start=0, end=8, severity="high", excerpt="…[8 chars]", withheld=True)


@pytest.fixture(params=["jsonl", "sqlite"])
def sink_path(request, tmp_path) -> Path:
    return tmp_path / ("audit.jsonl" if request.param == "jsonl" else "audit.db")


def test_records_round_trip_and_filter_by_kind_time_and_model(sink_path):
    sink = open_audit_sink(sink_path)
    start = datetime.now(timezone.utc)
    old = AuditRecord(model="a", mode="plain", prompt_hash="1", time=start - timedelta(days=2))
    leaky = AuditRecord(model="b", mode="self-guard", prompt_hash="2", findings=[finding(), finding("pii")])
    canary = AuditRecord(model="a", mode="self-guard", prompt_hash="3", findings=[finding("private_context")])
    for r in (old, leaky, canary):
        sink.write(r)
    sink.close()
    assert [r.id for r in read_audit_log(sink_path)] == [old.id, leaky.id, canary.id]
    assert read_audit_log(sink_path)[1] == leaky
    assert [r.id for r in read_audit_log(sink_path, kind="pii")] == [leaky.id]
    assert [r.id for r in read_audit_log(sink_path, since=start - timedelta(hours=1))] == [leaky.id, canary.id]
    assert [r.id for r in read_audit_log(sink_path, until=start - timedelta(days=1))] == [old.id]
    assert [r.id for r in read_audit_log(sink_path, model="a", kind="private_context")] == [canary.id]


def test_sqlite_log_is_a_wal_database_with_a_findings_row_per_finding_and_indexes(tmp_path):
    path = tmp_path / "audit.sqlite"
    sink = SqliteAuditSink(path)
    sink.write(AuditRecord(model="m", mode="self-guard", prompt_hash="h", findings=[finding(), finding("pii")]))
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert sorted(k for (k,) in db.execute("SELECT kind FROM findings")) == ["pii", "secret"]
    indexes = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert {"records_time", "findings_kind"} <= indexes
    db.execute("PRAGMA user_version = 99")
    db.commit()
    db.close()
    with pytest.raises(AuditLogError, match="schema version 99"):
        SqliteAuditSink(path)
    with pytest.raises(AuditLogError, match="schema version 99"):
        read_audit_log(path)


def test_unreadable_logs_raise_a_clear_error(tmp_path):
    (tmp_path / "notes.jsonl").write_text("this is not a log\nnor is this\n")
    with pytest.raises(AuditLogError, match="not a selfguard audit log"):
        read_audit_log(tmp_path / "notes.jsonl")
    (tmp_path / "fake.db").write_text("not a database at all, just text")
    with pytest.raises(AuditLogError, match="Cannot use"):
        SqliteAuditSink(tmp_path / "fake.db")
    with pytest.raises(AuditLogError, match="No audit log"):
        read_audit_log(tmp_path / "missing.jsonl")


def test_a_torn_line_is_skipped_and_the_next_record_starts_a_fresh_line(tmp_path, caplog):
    path = tmp_path / "audit.jsonl"
    sink = JsonlAuditSink(path)
    sink.write(record("a", 0))
    with path.open("a") as handle:
        handle.write(record("a", 1).model_dump_json()[:40])  # a writer killed mid-record
    sink.write(record("a", 2))
    with caplog.at_level(logging.WARNING):
        records = read_jsonl_records(path)
    assert [r.context["index"] for r in records] == [0, 2]
    assert "skipped 1 torn" in caplog.text


def test_jsonl_rotates_past_its_size_cap_and_keeps_the_newest_backups(tmp_path):
    path = tmp_path / "audit.jsonl"
    line = len(record("r", 0).model_dump_json()) + 1
    sink = JsonlAuditSink(path, max_bytes=3 * line + 10, backups=2)
    for index in range(10):
        sink.write(record("r", index))
    files = sorted(p.name for p in tmp_path.glob("audit.jsonl*") if not p.name.endswith(".lock"))
    assert files == ["audit.jsonl", "audit.jsonl.1", "audit.jsonl.2"]
    kept = [r.context["index"] for name in ("audit.jsonl.2", "audit.jsonl.1", "audit.jsonl")
            for r in read_jsonl_records(tmp_path / name)]
    assert kept == list(range(3, 10))  # three records a file; the oldest file was dropped whole
    with pytest.raises(InvalidSettingError, match="max_bytes"):
        JsonlAuditSink(path, max_bytes=0)


def test_a_failing_sink_fails_closed_or_only_warns_open(tmp_path, caplog):
    good = JsonlAuditSink(tmp_path / "audit.jsonl")
    with pytest.raises(AuditLogError, match=r"disk full.*fails closed"):
        AuditLog([BrokenSink(), good]).write(record("c", 0))
    with caplog.at_level(logging.WARNING):
        AuditLog([BrokenSink(), good], on_failure="open").write(record("c", 1))
    assert "fails open" in caplog.text
    assert [r.context["index"] for r in read_jsonl_records(tmp_path / "audit.jsonl")] == [0, 1]
    with pytest.raises(InvalidSettingError, match="not an audit sink"):
        AuditLog([object()])
    with pytest.raises(InvalidSettingError, match="on_failure"):
        AuditLog([good], on_failure="maybe")


def test_audit_context_nests_and_follows_async_tasks():
    assert current_audit_context() == {}
    with audit_context(run_id="outer", tags=["a"]):
        with audit_context(run_id="inner", span="s1"):
            assert current_audit_context() == {"run_id": "inner", "tags": ["a"], "span": "s1"}

        async def read() -> dict:
            return current_audit_context()

        assert asyncio.run(read()) == {"run_id": "outer", "tags": ["a"]}
    assert current_audit_context() == {}


def test_eight_threads_and_four_processes_lose_and_corrupt_nothing(tmp_path):
    jsonl, db = tmp_path / "audit.jsonl", tmp_path / "audit.db"
    SqliteAuditSink(db).close()  # created once here; the writers open it concurrently
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    processes = [subprocess.Popen([sys.executable, "-m", "tests.audit_writer", str(jsonl), str(db), "1000",
                                   f"p{i}"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL) for i in range(4)]
    sinks = [JsonlAuditSink(jsonl), SqliteAuditSink(db)]

    def write(tag: str) -> None:
        for index in range(1000):
            for sink in sinks:
                sink.write(record(tag, index))

    threads = [threading.Thread(target=write, args=(f"t{i}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(p.wait(timeout=300) == 0 for p in processes)
    expected = {(f"{kind}{i}", n) for kind, count in (("t", 8), ("p", 4)) for i in range(count) for n in range(1000)}
    for path in (jsonl, db):
        records = read_audit_log(path)
        assert len(records) == 12_000
        assert {(r.context["writer"], r.context["index"]) for r in records} == expected
    assert sqlite3.connect(db).execute("SELECT COUNT(*) FROM findings").fetchone()[0] == 12_000


def test_a_writer_killed_mid_run_leaves_every_other_record_readable(tmp_path):
    jsonl, db = tmp_path / "audit.jsonl", tmp_path / "audit.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    writer = subprocess.Popen([sys.executable, "-m", "tests.audit_writer", str(jsonl), str(db), "1000000", "k"],
                              cwd=ROOT, env=env, stdout=subprocess.PIPE)
    assert writer.stdout.readline().strip() == b"ready"
    deadline = time.monotonic() + 60
    while (not jsonl.exists() or jsonl.stat().st_size < 200_000) and time.monotonic() < deadline:
        time.sleep(0.05)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    SqliteAuditSink(db).write(record("after", 0))  # the log stays writable after the crash
    JsonlAuditSink(jsonl).write(record("after", 0))
    for path in (jsonl, db):
        records = read_audit_log(path)
        indexes = [r.context["index"] for r in records if r.context["writer"] == "k"]
        assert len(indexes) > 100
        assert indexes == list(range(len(indexes)))  # a gap-free prefix: at most the record in flight is lost
        assert records[-1].context["writer"] == "after"


def test_audit_command_summarises_and_filters_both_log_kinds(sink_path, capsys):
    import json as json_module

    from selfguard_guardrails.cli import main

    sink = open_audit_sink(sink_path)
    for r in (AuditRecord(model="a", mode="plain", prompt_hash="1", time=datetime(2026, 11, 1, tzinfo=timezone.utc)),
              AuditRecord(model="b", mode="self-guard", prompt_hash="2", action="redact",
                          findings=[finding(), finding("pii")])):
        sink.write(r)
    assert main(["audit", str(sink_path), "--list"]) == 0
    out = capsys.readouterr().out
    assert "records:   2" in out and "secret 1" in out and "redact 1" in out and "secret/password@reasoning" in out
    assert main(["audit", str(sink_path), "--json", "--kind", "pii"]) == 0
    payload = json_module.loads(capsys.readouterr().out)
    assert payload["summary"]["records"] == 1 and payload["records"][0]["model"] == "b"
    assert main(["audit", str(sink_path), "--json", "--until", "2026-11-02"]) == 0
    assert [r["model"] for r in json_module.loads(capsys.readouterr().out)["records"]] == ["a"]
    assert main(["audit", str(sink_path), "--since", "yesterday"]) == 2
    assert "not an ISO date" in capsys.readouterr().err
    assert main(["audit", str(sink_path.with_name("missing.jsonl"))]) == 2
    assert "No audit log" in capsys.readouterr().err
