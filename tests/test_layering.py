"""The package's layers import downwards only (docs/architecture.md draws them).

Every module of `selfguard_guardrails/` is parsed (never imported) and its imports listed:
relative imports resolved, imports inside functions included, `from pkg import submodule`
counted as an import of the submodule, an import of a package as an import of its
`__init__`. Imports under `if TYPE_CHECKING:` never run, so the cycle and arrow checks skip
them. Imports by computed name (`import_module(f".{name}")`) are not seen.

The same checking functions run on small synthetic packages below, so each rule is shown to
catch what it forbids.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "selfguard_guardrails"

# The rules. Layers, bottom to top: base modules (settings, errors, results), runtime/, method/,
# tooling/, the guards (leakage/, audit/), engine/, the faces (evaluation/, calibration/, cli/),
# integrations/. An arrow points down only, so that each layer can be used, tested and replaced
# without what sits above it: a runtime knows how to run a model and nothing about safety (a
# llama.cpp runtime must not need the method or the engine); the method and the guards work on
# any model with or without the engine; the libraries under the faces do not depend on the
# command line or on a framework.
#
# Layer (a folder of the package) -> the folders and modules it must not import.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "runtime": ("method", "tooling", "leakage", "audit", "engine", "evaluation", "calibration", "cli",
                "integrations", "serving"),
    "method": ("leakage", "audit", "engine", "evaluation", "calibration", "cli", "integrations", "serving"),
    "tooling": ("engine", "evaluation", "calibration", "cli", "integrations", "serving"),  # engine: type hints only
    "leakage": ("method", "audit", "engine", "evaluation", "calibration", "cli", "integrations", "serving"),
    "audit": ("method", "engine", "evaluation", "calibration", "cli", "integrations", "serving"),
    "engine": ("evaluation", "calibration", "cli", "integrations", "serving"),
    "evaluation": ("cli", "integrations", "serving"),
    "calibration": ("cli", "integrations", "serving"),
    "serving": ("evaluation", "calibration", "cli", "integrations"),
}
# Exceptions to FORBIDDEN: the leakage guard reads the method's prompting texts, to recognise a
# copied safety prompt in an answer.
ALLOWED: dict[str, tuple[str, ...]] = {
    "leakage": ("method.prompting",),
}
# The base modules hold types every layer shares; they may import only each other and a few
# modules of plain data types.
BASE = ("settings", "errors", "results")
BASE_MAY_IMPORT = ("settings", "errors", "results", "runtime.reasoning", "leakage.findings", "leakage.report")
# Only the adapters under integrations/ import LangChain or LlamaIndex (any top-level name
# starting with one of these).
FRAMEWORKS = ("langchain", "llama_index")
FRAMEWORK_USERS = ("integrations",)
# Only the server imports its HTTP stack (the serve extra).
SERVER_STACK = ("fastapi", "starlette", "uvicorn", "prometheus_client")
SERVER_STACK_USERS = ("serving",)
# `selfguard --help` and the setting types answer without loading a model: these never import
# torch or transformers in a module-level statement.
HEAVY = ("torch", "transformers")
LIGHT = ("settings", "cli")


@dataclass(frozen=True)
class Import:
    """One imported module, as one statement of one module names it."""

    source: str  # the importing module's dotted name (a package: its __init__)
    target: str  # the imported module's dotted name (resolved; outside the package: as written)
    names: tuple[str, ...]  # the names a `from` import takes (empty for `import x`)
    file: str  # the importing file, relative to the repository root
    line: int
    type_checking: bool  # under `if TYPE_CHECKING:`: never runs
    module_level: bool  # runs when the module is imported (not inside a function)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"


def module_name(path: str) -> tuple[str, bool]:
    """The dotted module name of a file path relative to the root, and whether it is a package."""
    parts = path.removesuffix(".py").split("/")
    if parts[-1] == "__init__":
        return ".".join(parts[:-1]), True
    return ".".join(parts), False


def _is_type_checking(test: ast.expr) -> bool:
    return ((isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
            or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


class _ImportVisitor(ast.NodeVisitor):
    def __init__(self, module: str, is_package: bool, file: str, modules: set[str]) -> None:
        self.module, self.file, self.modules = module, file, modules
        self.package = module if is_package else module.rpartition(".")[0]
        self.imports: list[Import] = []
        self.functions = 0
        self.type_checking = 0

    def _add(self, target: str, names: tuple[str, ...], node: ast.stmt) -> None:
        self.imports.append(Import(self.module, target, names, self.file, node.lineno,
                                   self.type_checking > 0, self.functions == 0))

    def _function(self, node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> None:
        self.functions += 1
        self.generic_visit(node)
        self.functions -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_If(self, node: ast.If) -> None:
        if not _is_type_checking(node.test):
            self.generic_visit(node)
            return
        self.type_checking += 1
        for statement in node.body:
            self.visit(statement)
        self.type_checking -= 1
        for statement in node.orelse:
            self.visit(statement)

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, (), node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            base = self.package.split(".")
            if node.level - 1 >= len(base):
                return  # beyond the top-level package: Python refuses it anyway
            base = base[:len(base) - (node.level - 1)]
            origin = ".".join(base + ([node.module] if node.module else []))
        else:
            origin = node.module or ""
        plain = []
        for alias in node.names:
            submodule = f"{origin}.{alias.name}"
            if submodule in self.modules:  # `from pkg import submodule`: an import of the submodule
                self._add(submodule, (alias.name,), node)
            else:
                plain.append(alias.name)
        if plain:
            self._add(origin, tuple(plain), node)


def scan(files: Mapping[str, str]) -> list[Import]:
    """Every import of every module in `files` (path relative to the root -> source text)."""
    modules = {module_name(path)[0] for path in files}
    imports = []
    for path, source in sorted(files.items()):
        module, is_package = module_name(path)
        visitor = _ImportVisitor(module, is_package, path, modules)
        visitor.visit(ast.parse(source, filename=path))
        imports.extend(visitor.imports)
    return imports


@cache
def package_imports() -> tuple[Import, ...]:
    files = {path.relative_to(ROOT).as_posix(): path.read_text(encoding="utf-8")
             for path in sorted((ROOT / PACKAGE).rglob("*.py"))}
    return tuple(scan(files))


def _relative(module: str) -> str | None:
    """`selfguard_guardrails.runtime.layers` -> `runtime.layers`; None outside the package."""
    if module == PACKAGE:
        return ""
    return module.removeprefix(PACKAGE + ".") if module.startswith(PACKAGE + ".") else None


def _under(name: str, prefix: str) -> bool:
    return name == prefix or name.startswith(prefix + ".")


def _runs(imports: Iterable[Import]) -> list[Import]:
    return [i for i in imports if not i.type_checking]


# ------------------------------------------------------------------------------ the checks


def cycles(imports: Iterable[Import]) -> list[list[Import]]:
    """The imports that close a cycle: for each strongly connected component of the graph of
    modules of the package (imports that run only), the imports between its members."""
    edges: dict[str, list[Import]] = {}
    for found in _runs(imports):
        if _relative(found.source) is not None and _relative(found.target) is not None:
            edges.setdefault(found.source, []).append(found)
            edges.setdefault(found.target, [])
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[set[str]] = []

    def connect(node: str) -> None:  # Tarjan's algorithm
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for edge in edges[node]:
            if edge.target not in index:
                connect(edge.target)
                low[node] = min(low[node], low[edge.target])
            elif edge.target in on_stack:
                low[node] = min(low[node], index[edge.target])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.add(member)
                if member == node:
                    break
            components.append(component)

    for node in sorted(edges):
        if node not in index:
            connect(node)
    found = []
    for component in components:
        inside = [e for m in sorted(component) for e in edges[m] if e.target in component]
        if len(component) > 1 or inside:  # a module importing itself is a cycle of one
            found.append(inside)
    return found


def private_imports(imports: Iterable[Import]) -> list[Import]:
    """`from x import _name` (dunder names such as `__version__` are public); each with its private names only."""
    found = []
    for i in imports:
        private = tuple(n for n in i.names if n.startswith("_") and not (n.startswith("__") and n.endswith("__")))
        if private:
            found.append(replace(i, names=private))
    return found


def forbidden_arrows(imports: Iterable[Import]) -> list[tuple[Import, str]]:
    """Imports that run and point up a layer, or into a framework outside integrations/; each
    with the rule it breaks."""
    broken = []
    for found in _runs(imports):
        source, target = _relative(found.source), _relative(found.target)
        if source is None:
            continue
        top = found.target.split(".")[0]
        if top.startswith(FRAMEWORKS) and not any(_under(source, u) for u in FRAMEWORK_USERS):
            broken.append((found, f"only {'/'.join(FRAMEWORK_USERS)}/ imports {' or '.join(FRAMEWORKS)}"))
        if top.startswith(SERVER_STACK) and not any(_under(source, u) for u in SERVER_STACK_USERS):
            broken.append((found, f"only {'/'.join(SERVER_STACK_USERS)}/ imports {', '.join(SERVER_STACK)}"))
        if target is None:
            continue
        if source in BASE:
            if target and not any(_under(target, allowed) for allowed in BASE_MAY_IMPORT):
                broken.append((found, f"base module {source} imports only {', '.join(BASE_MAY_IMPORT)}"))
            continue
        layer = next((layer for layer in FORBIDDEN if _under(source, layer)), None)
        if layer is None:
            continue
        if any(_under(target, allowed) for allowed in ALLOWED.get(layer, ())):
            continue
        for forbidden in FORBIDDEN[layer]:
            if _under(target, forbidden):
                broken.append((found, f"{layer} must not import {forbidden}"))
    return broken


def heavy_module_level_imports(imports: Iterable[Import]) -> list[Import]:
    """torch or transformers imported by a module-level statement of a module that must stay light."""
    return [i for i in _runs(imports)
            if i.module_level and i.target.split(".")[0] in HEAVY
            and any(_under(_relative(i.source) or "", light) for light in LIGHT)
            and _relative(i.source) is not None]


def _listing(lines: Sequence[str]) -> str:
    return "\n  " + "\n  ".join(lines)


def _describe(found: Import) -> str:
    names = f" ({', '.join(found.names)})" if found.names else ""
    return f"{found.where}: {found.source} -> {found.target}{names}"


# ------------------------------------------------------------------------- on the package


def test_the_package_is_scanned():
    modules = {i.source for i in package_imports()}
    assert len(modules) > 40
    for expected in ("selfguard_guardrails", "selfguard_guardrails.engine", "selfguard_guardrails.cli"):
        assert expected in modules


def test_no_import_cycle():
    found = cycles(package_imports())
    if found:
        pytest.fail("Import cycles (each block: the imports between the modules of one cycle):" + "".join(
            _listing([_describe(i) for i in cycle]) + "\n" for cycle in found), pytrace=False)


def test_no_private_name_is_imported_from_another_module():
    found = private_imports(package_imports())
    if found:
        pytest.fail("Private names imported from another module (make them public, or move them where they "
                    "are used):" + _listing([_describe(i) for i in found]), pytrace=False)


def test_imports_point_down_the_layers():
    found = forbidden_arrows(package_imports())
    if found:
        pytest.fail("Imports against the layering (docs/architecture.md):" + _listing(
            [f"{_describe(i)}  [{rule}]" for i, rule in found]), pytrace=False)


def test_settings_and_the_cli_import_no_torch_at_module_level():
    found = heavy_module_level_imports(package_imports())
    if found:
        pytest.fail(f"{' or '.join(HEAVY)} imported at module level by {', '.join(LIGHT)} (import it inside the "
                    "function that needs it):" + _listing([_describe(i) for i in found]), pytrace=False)


def import_chains(importtime: str, modules: Iterable[str] = HEAVY) -> dict[str, list[str]]:
    """From the `-X importtime` report of a run: each of `modules` it loaded, with the chain of
    imports that first brought it in (outermost first)."""
    entries = []  # (depth, module), in the order importtime prints them: a module after its imports
    for line in importtime.splitlines():
        if line.startswith("import time:") and line.count("|") == 2 and not line.endswith("imported package"):
            name = line.rsplit("|", 1)[1]
            entries.append(((len(name) - len(name.lstrip())) // 2, name.strip()))
    chains = {}
    for wanted in modules:
        first = next((n for n, (_, module) in enumerate(entries) if module == wanted), None)
        if first is None:
            continue
        depth, chain = entries[first][0], [wanted]
        for level, module in entries[first + 1:]:
            if level < depth:
                chain.append(module)
                depth = level
        chains[wanted] = chain[::-1]
    return chains


def heavy_modules_loaded_by(code: str) -> dict[str, list[str]]:
    """Run `code` in a fresh interpreter; the heavy modules it loaded, each with its import chain."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return import_chains(done.stderr)


@pytest.mark.parametrize(("what", "code"), [
    ("selfguard --help", "import contextlib, io\n"
                         "from selfguard_guardrails.cli import main\n"
                         "with contextlib.redirect_stdout(io.StringIO()):\n"
                         "    status = main(['--help'])\n"
                         "assert status == 0, status\n"),
    ("import selfguard_guardrails.settings", "import selfguard_guardrails.settings\n"),
], ids=["cli-help", "settings"])
def test_help_and_the_setting_types_load_no_torch(what, code):
    chains = heavy_modules_loaded_by(code)
    if chains:
        pytest.fail(f"{what} imports {', '.join(chains)}:" + _listing(
            [f"{heavy}: {' -> '.join(chain)}" for heavy, chain in chains.items()]), pytrace=False)


# ---------------------------------------------------------------- the rules can fail at all


def _synthetic(files: Mapping[str, str]) -> list[Import]:
    return scan({f"{PACKAGE}/{path}": source for path, source in {"__init__.py": "", **files}.items()})


def test_relative_imports_resolve_and_submodules_count_as_modules():
    imports = _synthetic({
        "runtime/__init__.py": "",
        "runtime/a.py": "",
        "method/__init__.py": "from . import b\nfrom .b import thing\n",
        "method/b.py": "from ..runtime import a\nfrom .. import __version__\nimport json\n"
                       "def f():\n    from ..runtime.a import x\n",
    })
    seen = {(i.source, i.target, i.names, i.module_level) for i in imports}
    assert seen == {
        ("selfguard_guardrails.method", "selfguard_guardrails.method.b", ("b",), True),
        ("selfguard_guardrails.method", "selfguard_guardrails.method.b", ("thing",), True),
        ("selfguard_guardrails.method.b", "selfguard_guardrails.runtime.a", ("a",), True),
        ("selfguard_guardrails.method.b", "selfguard_guardrails", ("__version__",), True),
        ("selfguard_guardrails.method.b", "json", (), True),
        ("selfguard_guardrails.method.b", "selfguard_guardrails.runtime.a", ("x",), False),
    }


def test_the_cycle_check_finds_cycles_also_through_functions_but_not_through_type_hints():
    found = cycles(_synthetic({
        "a.py": "from . import b\n",
        "b.py": "from .a import thing\n",
        "c.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .d import X\n",
        "d.py": "from .c import Y\n",
        "e.py": "def f():\n    from .f import z\n",
        "f.py": "import selfguard_guardrails.e\n",
        "g.py": "from .g import itself\n",
    }))
    pairs = sorted(sorted((i.source.rsplit(".")[-1], i.target.rsplit(".")[-1]) for i in cycle) for cycle in found)
    assert pairs == [[("a", "b"), ("b", "a")], [("e", "f"), ("f", "e")], [("g", "g")]]
    assert any(i.where == "selfguard_guardrails/e.py:2" for cycle in found for i in cycle)


def test_the_private_name_check_finds_private_names_only():
    found = private_imports(_synthetic({
        "a.py": "_helper = 1\n",
        "b.py": "from .a import _helper, public\nfrom . import __version__\nfrom os import path\n",
    }))
    assert [(i.where, i.names) for i in found] == [("selfguard_guardrails/b.py:1", ("_helper",))]


def test_the_arrow_check_finds_upward_imports_and_frameworks_outside_the_adapters():
    found = forbidden_arrows(_synthetic({
        "settings.py": "from .runtime.reasoning import Channel\nfrom .errors import E\n"
                       "from .runtime.decoding import Decoder\n",
        "errors.py": "",
        "runtime/__init__.py": "",
        "runtime/reasoning.py": "",
        "runtime/decoding.py": "def f():\n    from ..method.steering import steer\n",
        "method/__init__.py": "",
        "method/prompting.py": "",
        "method/steering.py": "from ..runtime.decoding import Decoder\n",
        "leakage/__init__.py": "",
        "leakage/guard.py": "from ..method.prompting import SafetyPrompt\nfrom ..method import steering\n"
                            "from ..audit import AuditLog\n",
        "audit/__init__.py": "from ..leakage.guard import LeakGuard\nfrom ..method.prompting import SafetyPrompt\n",
        "tooling/__init__.py": "from typing import TYPE_CHECKING\n"
                               "if TYPE_CHECKING:\n    from ..engine import SelfGuard\n",
        "engine/__init__.py": "from ..cli import main\n",
        "cli/__init__.py": "",
        "evaluation/__init__.py": "def judge():\n    import langchain_core\n",
        "integrations/__init__.py": "import langchain_core\nimport llama_index.core\n",
    }))
    assert sorted((i.where, rule) for i, rule in found) == [
        ("selfguard_guardrails/audit/__init__.py:2", "audit must not import method"),
        ("selfguard_guardrails/engine/__init__.py:1", "engine must not import cli"),
        ("selfguard_guardrails/evaluation/__init__.py:2", "only integrations/ imports langchain or llama_index"),
        ("selfguard_guardrails/leakage/guard.py:2", "leakage must not import method"),
        ("selfguard_guardrails/leakage/guard.py:3", "leakage must not import audit"),
        ("selfguard_guardrails/runtime/decoding.py:2", "runtime must not import method"),
        ("selfguard_guardrails/settings.py:3", "base module settings imports only " + ", ".join(BASE_MAY_IMPORT)),
    ]


def test_the_torch_check_looks_at_module_level_statements_of_light_modules_only():
    found = heavy_module_level_imports(_synthetic({
        "settings.py": "import torch\n",
        "cli/__init__.py": "from transformers import AutoTokenizer\ndef run():\n    import torch\n",
        "cli/eval.py": "try:\n    import torch\nexcept ImportError:\n    torch = None\n",
        "runtime/decoding.py": "import torch\n",
        "cli/info.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import torch\n",
    }))
    assert [i.where for i in found] == ["selfguard_guardrails/cli/__init__.py:1", "selfguard_guardrails/cli/eval.py:2",
                                        "selfguard_guardrails/settings.py:1"]


def test_the_import_chain_is_read_from_importtime():
    report = "\n".join([
        "import time: self [us] | cumulative | imported package",
        "import time:       100 |        100 |       torch._C",
        "import time:       900 |       1000 |     torch",
        "import time:        10 |         10 |     json",
        "import time:        50 |       1060 |   selfguard_guardrails.runtime.decoding",
        "import time:        20 |       1080 | selfguard_guardrails.cli",
        "import time:        20 |         20 | transformersish",
    ])
    assert import_chains(report) == {"torch": ["selfguard_guardrails.cli", "selfguard_guardrails.runtime.decoding",
                                               "torch"]}
    assert heavy_modules_loaded_by("import json\n") == {}
