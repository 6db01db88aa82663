"""Old module paths (before the layered layout of 0.2) that the 0.1 docs named, kept for one release.

Importing one still works and warns once, naming the new path. Only `selfguard_guardrails/__init__`
installs this; nothing in the package imports an old path.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from types import ModuleType
from typing import Any

_PACKAGE = "selfguard_guardrails"
MOVED = {
    "audit_command": "cli.audit",
    "audit_jsonl": "audit.jsonl",
    "audit_sqlite": "audit.sqlite",
    "awareness": "method.probe_fitting",
    "config": "settings",
    "decoding": "runtime.decoding",
    "evaluation.llm_judge": "integrations.langchain.llm_judge",
    "extraction": "method.extraction",
    "integrations.langchain_audit": "integrations.langchain.audit",
    "integrations.llama_index_audit": "integrations.llama_index.audit",
    "integrations.llama_index_rag": "integrations.llama_index.rag",
    "layers": "runtime.layers",
    "locking": "runtime.locking",
    "model": "runtime.loading",
    "probe": "method.probe",
    "prompt_files": "method.prompt_sets",
    "prompting": "method.prompting",
    "reasoning": "runtime.reasoning",
    "steering": "method.steering",
    "tools": "tooling.parsing",
}


class _MovedLoader(importlib.abc.Loader):
    def __init__(self, new_name: str) -> None:
        self.new_name = new_name

    def create_module(self, spec: Any) -> ModuleType:
        warnings.warn(f"{spec.name} moved to {self.new_name}; the old path goes in the next release.",
                      DeprecationWarning, stacklevel=2)
        return importlib.import_module(self.new_name)

    def exec_module(self, module: ModuleType) -> None:
        """The new module is already executed."""


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Resolves an old module path to the module that now holds its code (the same module object)."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if not fullname.startswith(_PACKAGE + "."):
            return None
        new = MOVED.get(fullname[len(_PACKAGE) + 1:])
        if new is None:
            return None
        return importlib.util.spec_from_loader(fullname, _MovedLoader(f"{_PACKAGE}.{new}"))


def install() -> None:
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
