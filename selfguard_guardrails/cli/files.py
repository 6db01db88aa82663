"""Prompt files read and result files written by the commands, with errors that say what to fix."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from ..errors import InvalidMessagesError
from ..method.prompt_sets import read_prompts
from .options import CliError


def read_prompt_file(path: str, *, minimum: int = 1) -> list[str]:
    """The prompts of a .txt/.jsonl/.json file; fewer than `minimum` is an error before any model loads."""
    prompts = read_prompts(path)
    if len(prompts) < minimum:
        need = "a prompt" if minimum == 1 else f"at least {minimum} prompts"
        raise InvalidMessagesError(f"The prompt file {path} has {len(prompts) or 'no'} prompts; it needs {need} "
                                   "(one per line in .txt, or a 'prompt' field per line in .jsonl).")
    return prompts


def open_output(path: str) -> IO[str]:
    """Open `path` for writing (its folder made if needed), before the model loads, so a bad path fails fast."""
    try:
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return open(Path(path).expanduser(), "w", encoding="utf-8")
    except OSError as error:
        raise CliError(f"Cannot write {path}: {error.strerror or error}. Choose a writable path.") from error
