"""The 0.1 module paths the docs named still import for one release, warn, and give the same objects."""

from __future__ import annotations

import importlib
import sys

import pytest

from selfguard_guardrails.moved_modules import MOVED

# names the 0.1 docs and examples imported from the old paths, and where they live now
DOCUMENTED = [
    ("audit_command", "summarise", "selfguard_guardrails.cli.audit"),
    ("audit_jsonl", "JsonlAuditSink", "selfguard_guardrails.audit.jsonl"),
    ("audit_sqlite", "SqliteAuditSink", "selfguard_guardrails.audit.sqlite"),
    ("awareness", "fit_awareness_probe", "selfguard_guardrails.method.probe_fitting"),
    ("prompting", "NEUTRAL_BASELINE", "selfguard_guardrails.method.prompting"),
    ("prompting", "normalize_messages", "selfguard_guardrails.runtime.chat"),
    ("reasoning", "ReasoningSplitter", "selfguard_guardrails.runtime.reasoning"),
    ("probe", "AwarenessProbe", "selfguard_guardrails.method.probe"),
    ("steering", "SteeringVector", "selfguard_guardrails.method.vector"),
    ("steering", "steer", "selfguard_guardrails.method.steering"),
    ("steering", "check_strength", "selfguard_guardrails.settings"),
    ("extraction", "last_token_activations", "selfguard_guardrails.runtime.activations"),
    ("model", "load_model", "selfguard_guardrails.runtime.loading"),
    ("config", "SteeringSetting", "selfguard_guardrails.settings"),
    ("locking", "hold_model", "selfguard_guardrails.runtime.locking"),
    ("tools", "parse_tool_calls", "selfguard_guardrails.tooling.parsing"),
    ("integrations.langchain_audit", "SelfGuardAuditHandler", "selfguard_guardrails.integrations.langchain.audit"),
    ("integrations.llama_index_audit", "SelfGuardAuditEventHandler",
     "selfguard_guardrails.integrations.llama_index.audit"),
    ("integrations.llama_index_rag", "PrivateContextPostprocessor",
     "selfguard_guardrails.integrations.llama_index.rag"),
]


def _fresh_import(old: str):
    sys.modules.pop(f"selfguard_guardrails.{old}", None)
    return importlib.import_module(f"selfguard_guardrails.{old}")


@pytest.mark.parametrize(("old", "name", "home"), DOCUMENTED)
def test_an_old_path_gives_the_object_that_moved_and_warns(old, name, home):
    with pytest.warns(DeprecationWarning, match="moved to"):
        module = _fresh_import(old)
    assert getattr(module, name) is getattr(importlib.import_module(home), name)


def test_every_old_path_imports_and_an_unknown_name_says_where_it_went():
    for old in MOVED:
        with pytest.warns(DeprecationWarning):
            module = _fresh_import(old)
        with pytest.raises(AttributeError, match="moved to"):
            module.no_such_name  # noqa: B018


def test_paths_that_never_existed_are_still_missing():
    with pytest.raises(ModuleNotFoundError):
        importlib.import_module("selfguard_guardrails.no_such_module")
