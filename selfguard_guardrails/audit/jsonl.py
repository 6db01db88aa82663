"""The JSONL audit sink: one JSON object per line, appended under a file lock, with rotation.

Each record is one `os.write` of one line to a file opened with O_APPEND, under a lock on a
sidecar `.lock` file (the log itself is renamed on rotation, so it cannot hold the lock).
A writer killed mid-line leaves a torn line; the next writer starts on a fresh line, and
readers skip torn lines with a warning, so every other record still reads back.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

from filelock import FileLock, Timeout
from pydantic import ValidationError

from ..errors import AuditLogError, InvalidSettingError
from .records import AuditRecord

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 64 * 1024 * 1024


class JsonlAuditSink:
    """Append records to `path`; past `max_bytes` the file rotates to `path.1` … `path.N`
    (`backups`; None: never rotate). `fsync=True` also survives power loss, at ~1 ms a record."""

    def __init__(self, path: str | os.PathLike, *, max_bytes: int | None = DEFAULT_MAX_BYTES, backups: int = 5,
                 fsync: bool = False, lock_timeout: float = 30.0) -> None:
        if max_bytes is not None and max_bytes < 1:
            raise InvalidSettingError(f"max_bytes must be a positive size or None, got {max_bytes!r}.")
        if backups < 1:
            raise InvalidSettingError(f"backups must be at least 1, got {backups!r}.")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes, self.backups, self.fsync = max_bytes, backups, fsync
        self._lock = FileLock(str(self.path) + ".lock", timeout=lock_timeout)
        self._threads = threading.Lock()  # one writer per process at a time; FileLock orders the processes

    def write(self, record: AuditRecord) -> None:
        line = (record.model_dump_json() + "\n").encode("utf-8")
        try:
            with self._threads, self._lock:
                self._rotate_if_full(len(line))
                fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    if _ends_torn(fd):
                        line = b"\n" + line  # a killed writer's partial line stays a line of its own
                    view = memoryview(line)
                    while view:
                        view = view[os.write(fd, view):]
                    if self.fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
        except Timeout as error:
            raise AuditLogError(f"Could not lock {self._lock.lock_file} within {self._lock.timeout} s: another "
                                "writer holds it; remove the lock file if no writer is running.") from error
        except OSError as error:
            raise AuditLogError(f"Could not append to the audit log {self.path}: {error.strerror or error}.") from error

    def _rotate_if_full(self, incoming: int) -> None:
        if self.max_bytes is None:
            return
        try:
            size = self.path.stat().st_size
        except FileNotFoundError:
            return
        if size == 0 or size + incoming <= self.max_bytes:
            return
        for index in range(self.backups - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))

    def close(self) -> None:
        """Nothing is held open between records."""


def _ends_torn(fd: int) -> bool:
    size = os.fstat(fd).st_size
    return size > 0 and os.pread(fd, 1, size - 1) != b"\n"


def read_jsonl_records(path: str | os.PathLike) -> list[AuditRecord]:
    """Every whole record of a JSONL log. Torn lines (a writer killed mid-record) are skipped with
    a warning; a file in which no line is a record is not an audit log and raises."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as error:
        raise AuditLogError(f"Could not read the audit log {path}: {error.strerror or error}.") from error
    records, torn = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            records.append(AuditRecord.model_validate_json(line))
        except ValidationError:
            torn.append(number)
    if torn and not records:
        raise AuditLogError(f"{path} is not a selfguard audit log: none of its {len(torn)} line(s) is a record "
                            f"(first bad line {torn[0]}).")
    if torn:
        logger.warning("%s: skipped %d torn or unreadable line(s): %s", path, len(torn), torn[:20])
    return records
