"""The SQLite audit sink: a `records` table and a `findings` table (one row per finding).

WAL mode lets readers run while writers append, and the busy timeout makes concurrent
writers (threads or processes) wait for each other instead of failing. Each record is one
transaction, so a killed writer loses at most the record it was writing.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from datetime import datetime
from pathlib import Path

from ..errors import AuditLogError
from .records import AuditRecord

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY,
    time TEXT NOT NULL,
    time_unix REAL NOT NULL,
    model TEXT NOT NULL,
    mode TEXT NOT NULL,
    prompt_hash TEXT NOT NULL,
    action TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    latency_seconds REAL NOT NULL,
    record TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS findings (
    record_id TEXT NOT NULL REFERENCES records(id),
    kind TEXT NOT NULL,
    subtype TEXT NOT NULL,
    location TEXT NOT NULL,
    start INTEGER NOT NULL,
    "end" INTEGER NOT NULL,
    severity TEXT NOT NULL,
    excerpt TEXT NOT NULL,
    withheld INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS records_time ON records(time_unix);
CREATE INDEX IF NOT EXISTS findings_kind ON findings(kind);
CREATE INDEX IF NOT EXISTS findings_record ON findings(record_id);
"""


def _connect(path: Path, busy_timeout_ms: int) -> sqlite3.Connection:
    connection = sqlite3.connect(str(path), timeout=busy_timeout_ms / 1000, isolation_level=None,
                                 check_same_thread=False)
    connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    return connection


class SqliteAuditSink:
    """Write records to the SQLite database at `path` (created with the schema if missing).

    `durable=False` (the default) commits with `synchronous=NORMAL`: in WAL mode a crashed
    process loses nothing committed, only a power cut can lose the last records; `True` syncs
    every commit to disk (FULL), at a few milliseconds a record.
    """

    def __init__(self, path: str | os.PathLike, *, busy_timeout_ms: int = 30_000, durable: bool = False) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()  # one connection per sink, used by one thread at a time
        try:
            self._db = _connect(self.path, busy_timeout_ms)
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute(f"PRAGMA synchronous = {'FULL' if durable else 'NORMAL'}")
            self._db.execute("BEGIN IMMEDIATE")
            try:
                version = self._db.execute("PRAGMA user_version").fetchone()[0]
                if version == 0:
                    for statement in filter(str.strip, _SCHEMA.split(";")):  # executescript would commit early
                        self._db.execute(statement)
                    self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as error:
            raise AuditLogError(f"Cannot use {self.path} as an SQLite audit log: {error}. Give a new file name "
                                "or a database this library created.") from error
        if version not in (0, SCHEMA_VERSION):
            self._db.close()
            raise AuditLogError(f"{self.path} has audit schema version {version}; this library writes version "
                                f"{SCHEMA_VERSION}. Use a new file or a matching library version.")

    def write(self, record: AuditRecord) -> None:
        row = (record.id, record.time.isoformat(), record.time.timestamp(), record.model, record.mode,
               record.prompt_hash, record.action, record.input_tokens, record.output_tokens,
               record.latency_seconds, record.model_dump_json())
        findings = [(record.id, f.kind, f.subtype, f.where, f.start, f.end, f.severity, f.excerpt, int(f.withheld))
                    for f in record.findings]
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    self._db.execute("INSERT INTO records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
                    self._db.executemany("INSERT INTO findings VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", findings)
                    self._db.execute("COMMIT")
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as error:
                raise AuditLogError(f"Could not write audit record {record.id} to {self.path}: {error}.") from error

    def close(self) -> None:
        with self._lock:
            self._db.close()


def read_sqlite_records(path: str | os.PathLike, *, kind: str | None = None, since: datetime | None = None,
                        until: datetime | None = None, model: str | None = None) -> list[AuditRecord]:
    """Records of an SQLite log in time order, filtered in SQL (by the indexes on time and kind)."""
    path = Path(path)
    clauses: list[str] = []
    params: list[str | float] = []
    if kind is not None:
        clauses.append("id IN (SELECT record_id FROM findings WHERE kind = ?)")
        params.append(kind)
    if since is not None:
        clauses.append("time_unix >= ?")
        params.append(since.timestamp())
    if until is not None:
        clauses.append("time_unix < ?")
        params.append(until.timestamp())
    if model is not None:
        clauses.append("model = ?")
        params.append(model)
    where = f" WHERE {' AND '.join(clauses)}" if clauses else ""
    try:
        connection = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            version = connection.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION:
                raise AuditLogError(f"{path} has audit schema version {version}, not {SCHEMA_VERSION}: it is not "
                                    "a log this library version wrote.")
            rows = connection.execute(f"SELECT record FROM records{where} ORDER BY time_unix", params).fetchall()
        finally:
            connection.close()
    except sqlite3.DatabaseError as error:
        raise AuditLogError(f"Could not read the SQLite audit log {path}: {error}.") from error
    try:
        return [AuditRecord.model_validate(json.loads(text)) for (text,) in rows]
    except ValueError as error:
        raise AuditLogError(f"{path} holds a record this library cannot read: {error}.") from error
