"""`selfguard scan` and `selfguard audit` treat a file with no records alike: exit 2, naming the file."""

from __future__ import annotations

import pytest

from selfguard_guardrails.audit import AuditRecord, open_audit_sink
from selfguard_guardrails.audit.sqlite import SqliteAuditSink
from selfguard_guardrails.cli import main


@pytest.mark.parametrize("content", ["", "\n  \n"])
def test_scan_and_audit_on_an_empty_file_exit_alike_naming_the_file(tmp_path, capsys, content):
    empty = tmp_path / "empty.jsonl"
    empty.write_text(content)
    statuses, errors = [], []
    for command in ("scan", "audit"):
        statuses.append(main([command, str(empty)]))
        captured = capsys.readouterr()
        errors.append(captured.err)
        assert captured.out == ""
    assert statuses == [2, 2]
    for err in errors:
        assert f"{empty} has no records:" in err


def test_audit_on_a_new_sqlite_log_with_no_records_exits_2(tmp_path, capsys):
    path = tmp_path / "audit.db"
    SqliteAuditSink(path).close()  # the schema, no records
    assert main(["audit", str(path), "--json"]) == 2
    assert f"{path} has no records:" in capsys.readouterr().err
    assert main(["audit", str(path), "--model", "x"]) == 2


@pytest.mark.parametrize("name", ["audit.jsonl", "audit.db"])
def test_audit_filters_that_match_nothing_are_not_an_error(tmp_path, capsys, name):
    path = tmp_path / name
    sink = open_audit_sink(path)
    sink.write(AuditRecord(model="a", mode="plain", prompt_hash="1"))
    sink.close()
    assert main(["audit", str(path), "--model", "nobody"]) == 0
    assert "records:   0" in capsys.readouterr().out
    assert main(["audit", str(path), "--kind", "pii", "--json"]) == 0
    assert '"records": 0' in capsys.readouterr().out
