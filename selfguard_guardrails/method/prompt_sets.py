"""Read prompt files (.txt one per line, .jsonl/.json with a `prompt` field) and our packaged sets."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from ..errors import CorruptFileError

CALIBRATION_RESOURCE = "calibration.jsonl"


def _prompt_of(record: object, where: str) -> str:
    if isinstance(record, str):
        return record
    if isinstance(record, dict):
        for key in ("prompt", "text"):
            if isinstance(record.get(key), str):
                return record[key]
    raise CorruptFileError(f"{where}: expected a string or an object with a 'prompt' field, got {record!r:.80}.")


def read_prompts(path: str | Path) -> list[str]:
    """Prompts from a file: `.txt` (one per line, blanks skipped), `.jsonl`, or `.json` (a list)."""
    path = Path(path)
    if not path.is_file():
        raise CorruptFileError(f"Prompt file {path} does not exist: check the path.")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise CorruptFileError(f"Could not read prompt file {path}: {error}. Save it as UTF-8 text.") from error
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return [line.strip() for line in text.splitlines() if line.strip()]
    if suffix not in (".jsonl", ".json"):
        raise CorruptFileError(f"Unsupported prompt file type {suffix!r} for {path}: use .txt, .jsonl or .json.")
    try:
        if suffix == ".json":
            records = json.loads(text)
            if not isinstance(records, list):
                raise CorruptFileError(f"{path}: a .json prompt file must hold a list.")
            return [_prompt_of(r, f"{path} item {i}") for i, r in enumerate(records)]
        return [_prompt_of(json.loads(line), f"{path} line {n}")
                for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    except json.JSONDecodeError as error:
        raise CorruptFileError(f"{path} is not valid JSON ({error}); fix that line or use a .txt file.") from error


def calibration_records() -> list[dict[str, str]]:
    """Our own calibration set (harmful-sounding and benign requests), shipped in the package."""
    text = resources.files("selfguard_guardrails.prompts").joinpath(CALIBRATION_RESOURCE).read_text("utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def calibration_prompts() -> list[str]:
    return [record["prompt"] for record in calibration_records()]
