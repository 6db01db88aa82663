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
# old path -> the modules that now hold its names, searched in order
MOVED: dict[str, tuple[str, ...]] = {
    "audit_command": ("cli.audit",),
    "audit_jsonl": ("audit.jsonl",),
    "audit_sqlite": ("audit.sqlite",),
    "awareness": ("method.probe_fitting",),
    "config": ("settings",),
    "decoding": ("runtime.decoding", "settings"),
    "evaluation.llm_judge": ("integrations.langchain.llm_judge",),
    "extraction": ("method.extraction", "runtime.activations"),
    "integrations.langchain_audit": ("integrations.langchain.audit",),
    "integrations.llama_index_audit": ("integrations.llama_index.audit",),
    "integrations.llama_index_rag": ("integrations.llama_index.rag",),
    "layers": ("runtime.layers",),
    "locking": ("runtime.locking",),
    "model": ("runtime.loading",),
    "probe": ("method.probe", "settings"),
    "prompt_files": ("method.prompt_sets",),
    "prompting": ("method.prompting", "runtime.chat"),
    "reasoning": ("runtime.reasoning",),
    "steering": ("method.steering", "method.vector", "settings"),
    "tools": ("tooling.definitions", "tooling.parsing", "tooling.choice", "tooling.history", "runtime.chat"),
}


class _MovedLoader(importlib.abc.Loader):
    def __init__(self, targets: tuple[str, ...]) -> None:
        self.targets = targets

    def create_module(self, spec: Any) -> ModuleType:
        warnings.warn(f"{spec.name} moved to {', '.join(self.targets)}; the old path goes in the next release.",
                      DeprecationWarning, stacklevel=2)
        return ModuleType(spec.name)

    def exec_module(self, module: ModuleType) -> None:
        homes = [importlib.import_module(target) for target in self.targets]

        def find(name: str) -> Any:
            for home in homes:
                if hasattr(home, name):
                    return getattr(home, name)
            raise AttributeError(f"module {module.__name__!r} has no attribute {name!r} (it moved to "
                                 f"{', '.join(self.targets)})")

        module.__getattr__ = find  # type: ignore[method-assign]


class MovedModuleFinder(importlib.abc.MetaPathFinder):
    """Resolves an old module path to a module that reads its names from the modules that now hold them."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if not fullname.startswith(_PACKAGE + "."):
            return None
        targets = MOVED.get(fullname[len(_PACKAGE) + 1:])
        if targets is None:
            return None
        return importlib.util.spec_from_loader(fullname, _MovedLoader(tuple(f"{_PACKAGE}.{t}" for t in targets)))


def install() -> None:
    if not any(isinstance(finder, MovedModuleFinder) for finder in sys.meta_path):
        sys.meta_path.append(MovedModuleFinder())
