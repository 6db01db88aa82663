"""Read evaluation sets (HarmBench, StrongREJECT, XSTest, JailbreakBench, GSM8K-style, plain prompts,
whole conversations).

Benchmarks ship as CSV, JSON or JSONL with their own column names. This module turns any of them
into one list of `EvalItem`, so a runner needs no per-benchmark code: the layout is told from the
columns, or the user names the prompt column (`--column`) when it cannot be. A `messages` column
holds a whole conversation (earlier turns, then the latest user turn), which is what the model
then reads: the gate has to be measured on multi-turn and retrieved-text framings too.
"""

from __future__ import annotations

import csv
import io
import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..errors import CorruptFileError, InvalidMessagesError, InvalidSettingError
from ..runtime.chat import Messages, normalize_messages

logger = logging.getLogger(__name__)

LAYOUTS = ("harmbench", "strongreject", "xstest", "jailbreakbench", "gsm8k", "prompt", "text", "messages")
SUFFIXES = (".csv", ".json", ".jsonl")

_PROMPT_COLUMN = {"harmbench": "Behavior", "strongreject": "forbidden_prompt", "xstest": "prompt",
                  "jailbreakbench": "Goal", "prompt": "prompt", "text": "text"}
_META_COLUMNS = {"harmbench": ("FunctionalCategory", "SemanticCategory"), "strongreject": ("category",),
                 "xstest": ("type",), "jailbreakbench": ("Category", "Behavior"), "gsm8k": (),
                 "prompt": ("category",), "text": ("category",), "messages": ("category",)}
_ID_COLUMNS = ("BehaviorID", "id", "ID", "Index", "behavior_id", "question_id")
_LABELS = {"unsafe": "harmful", "harmful": "harmful", "safe": "benign", "benign": "benign"}
_WRAPPER_KEYS = ("data", "rows", "examples", "items", "records")
MESSAGES_COLUMN = "messages"
DEFAULT_GROUP = "framing"  # the column `selfguard eval` groups by when every row has it

Row = dict[str, str]


@dataclass(frozen=True)
class EvalItem:
    """One prompt of an evaluation set, with what a runner needs to score the answer."""

    id: str
    prompt: str
    label: str | None = None
    target_answer: str | None = None
    meta: dict[str, str] = field(default_factory=dict, hash=False)
    messages: tuple[dict[str, str], ...] | None = field(default=None, hash=False)  # then `prompt` is its last user turn

    @property
    def model_input(self) -> Messages:
        """What the model reads: the conversation when the row has one, else the prompt."""
        return list(self.messages) if self.messages else self.prompt


def _has_layout(layout: str, columns: set[str]) -> bool:
    if layout == "gsm8k":
        return "target_answer" in columns and bool({"text_clean", "question"} & columns)
    if layout == "xstest":
        return {"prompt", "label"} <= columns
    if layout == "messages":
        return MESSAGES_COLUMN in columns
    return _PROMPT_COLUMN[layout] in columns


def detect_layout(columns: Sequence[str]) -> str:
    """The first layout whose columns are all present; JailbreakBench also has `Behavior`, so
    HarmBench is only chosen when there is no `Goal`."""
    found = set(columns)
    for layout in LAYOUTS:
        if layout == "harmbench" and "Goal" in found:
            continue
        if _has_layout(layout, found):
            return layout
    raise InvalidSettingError(
        f"Could not tell the evaluation layout from the columns {list(columns)}: expected one of "
        "Behavior, forbidden_prompt, prompt+label, Goal, text_clean/question+target_answer, prompt, text or "
        "messages. "
        "Name the prompt column with --column."
    )


def _text(value: object) -> str:
    """Cell values as strings: JSON numbers stay readable (18, not 18.0 unless written so)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _row(record: dict[str, object]) -> Row:
    return {str(key): _text(value) for key, value in record.items()}


def _json_rows(data: object, path: Path) -> list[Row]:
    if isinstance(data, dict):
        lists = [key for key, value in data.items() if isinstance(value, list)]
        preferred = [key for key in lists if key in _WRAPPER_KEYS]
        if len(lists) != 1 and len(preferred) != 1:
            raise CorruptFileError(
                f"{path}: a JSON object must hold exactly one list of rows (such as 'data'); "
                f"found list keys {lists}. Use a list of objects instead."
            )
        data = data[lists[0] if len(lists) == 1 else preferred[0]]
    if not isinstance(data, list):
        raise CorruptFileError(f"{path}: expected a list of objects, got {type(data).__name__}.")
    rows = []
    for index, record in enumerate(data):
        if not isinstance(record, dict):
            raise CorruptFileError(f"{path} item {index}: expected an object, got {record!r:.80}.")
        rows.append(_row(record))
    return rows


def _read_rows(path: Path) -> tuple[list[str], list[Row]]:
    """Columns (in first-seen order) and rows of a file, or a CorruptFileError saying where it broke."""
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise CorruptFileError(f"Unsupported evaluation file type {suffix!r} for {path}: use .csv, .json or .jsonl.")
    if not path.is_file():
        raise CorruptFileError(f"Evaluation file {path} does not exist: check the path.")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise CorruptFileError(f"Could not read {path}: {error}. Save it as UTF-8.") from error
    if suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text, newline=""), strict=True)
        try:
            rows = []
            for row in reader:
                if None in row:
                    raise CorruptFileError(f"{path} line {reader.line_num}: more fields than the header has; "
                                           "quote cells that contain commas.")
                rows.append({key: value or "" for key, value in row.items()})
        except csv.Error as error:
            raise CorruptFileError(f"{path} line {reader.reader.line_num} is not valid CSV: {error}.") from error
        columns = list(reader.fieldnames or [])
    elif suffix == ".json":
        try:
            rows = _json_rows(json.loads(text), path) if text.strip() else []
        except json.JSONDecodeError as error:
            raise CorruptFileError(f"{path} line {error.lineno} column {error.colno} is not valid JSON: "
                                   f"{error.msg}.") from error
    else:
        rows = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise CorruptFileError(f"{path} line {number} column {error.colno} is not valid JSON: "
                                       f"{error.msg}.") from error
            if not isinstance(record, dict):
                raise CorruptFileError(f"{path} line {number}: expected an object, got {record!r:.80}.")
            rows.append(_row(record))
    if suffix != ".csv":
        columns = list(dict.fromkeys(key for row in rows for key in row))
    if not rows:
        raise CorruptFileError(f"{path} has no rows: add at least one prompt.")
    return columns, rows


def _latest_user_turn(messages: Sequence[Mapping[str, str]]) -> str:
    return next(m["content"] for m in reversed(messages) if m["role"] == "user").strip()


def _prompt(layout: str | None, row: Row, column: str | None) -> str:
    if column is not None:
        return row.get(column, "").strip()
    if layout == "messages":
        return ""  # a row of a conversation file without its conversation has nothing to send
    if layout == "gsm8k":
        return (row.get("text_clean", "").strip() or row.get("question", "")).strip()
    prompt = row.get(_PROMPT_COLUMN[layout or "prompt"], "").strip()
    context = row.get("ContextString", "").strip() if layout == "harmbench" else ""
    return f"{context}\n\n{prompt}" if context and prompt else prompt


def _messages(row: Row, path: Path, index: int) -> tuple[dict[str, str], ...] | None:
    """The row's conversation (None without one), checked as the engine will check it, so a bad
    row stops the run before the model loads instead of halfway through."""
    cell = row.get(MESSAGES_COLUMN, "").strip()
    if not cell:
        return None
    fix = ('give "messages" as a list of {"role": "user"|"assistant"|"system", "content": "text"} objects '
           "with the latest user turn last")
    try:
        parsed = json.loads(cell)  # JSON rows arrive re-serialised by `_text`; a CSV cell holds JSON text
    except json.JSONDecodeError:
        parsed = cell
    if not isinstance(parsed, list):
        raise CorruptFileError(f"{path} row index {index}: the messages cell is not a list ({cell!r:.60}); {fix}.")
    try:
        messages = normalize_messages(parsed)
    except InvalidMessagesError as error:
        raise CorruptFileError(f"{path} row index {index}: malformed messages ({error}); {fix}.") from None
    if messages[-1]["role"] != "user":
        raise CorruptFileError(f"{path} row index {index}: the conversation ends with a {messages[-1]['role']} "
                               f"turn, so there is nothing to answer; {fix}.")
    return tuple({"role": m["role"], "content": m["content"]} for m in messages)


def _item(layout: str | None, row: Row, index: int, stem: str, prompt: str,
          messages: tuple[dict[str, str], ...] | None, group_by: str) -> EvalItem:
    item_id = next((row[key].strip() for key in _ID_COLUMNS if row.get(key, "").strip()), f"{stem}-{index}")
    kept = (*_META_COLUMNS.get(layout or "", ()), group_by)
    meta = {key: row[key] for key in kept if row.get(key, "").strip()}
    meta["layout"] = layout or "column"
    target = row.get("target_answer", "").strip() or None
    return EvalItem(id=item_id, prompt=prompt, label=_LABELS.get(row.get("label", "").strip().lower()),
                    target_answer=target, meta=meta, messages=messages)


def read_eval_file(path: str | Path, *, column: str | None = None, layout: str | None = None,
                   limit: int | None = None, where: Mapping[str, str] | None = None,
                   group_by: str | None = None) -> list[EvalItem]:
    """Items of an evaluation file, filtered by `where` (column == value) and cut to `limit`.

    `column` names the prompt column and wins over the layout's own; a row's `messages`, when it
    has them, win over both (its prompt is then the latest user turn). Rows with an empty prompt
    are skipped with a warning so one blank cell does not stop a long run. `group_by` (default
    `framing`) is a column copied into each item's `meta`, for per-group metrics.
    """
    path = Path(path)
    if limit is not None and limit < 1:
        raise InvalidSettingError(f"limit must be a positive number of rows, got {limit}.")
    if layout is not None and layout not in LAYOUTS:
        raise InvalidSettingError(f"Unknown evaluation layout {layout!r}: use one of {', '.join(LAYOUTS)}.")
    columns, rows = _read_rows(path)
    found = set(columns)
    for name in [column, group_by, *(where or {})]:
        if name is not None and name not in found:
            raise InvalidSettingError(f"{path} has no column {name!r}; its columns are {columns}.")
    if layout is not None and not _has_layout(layout, found):
        raise InvalidSettingError(f"{path} does not look like {layout} (columns {columns}): "
                                  "drop --layout or name the prompt column with --column.")
    if layout is None:
        try:
            layout = detect_layout(columns)
        except InvalidSettingError:
            if column is None:
                raise InvalidSettingError(
                    f"Could not tell the layout of {path} from its columns {columns}: "
                    "name the prompt column with --column."
                ) from None
    kept = [(index, row) for index, row in enumerate(rows)
            if all(row.get(key, "") == value for key, value in (where or {}).items())]
    if not kept:
        raise InvalidSettingError(f"No row of {path} matches {dict(where or {})}: check the values.")
    items: list[EvalItem] = []
    seen: set[str] = set()
    skipped: list[int] = []
    for index, row in kept:
        messages = _messages(row, path, index)
        prompt = _latest_user_turn(messages) if messages else _prompt(layout, row, column)
        if not prompt:
            skipped.append(index)
            continue
        item = _item(layout, row, index, path.stem, prompt, messages, group_by or DEFAULT_GROUP)
        if item.id in seen:  # duplicate ids in the file would merge results; keep each row apart
            item = replace(item, id=f"{item.id}-{index}")
        seen.add(item.id)
        items.append(item)
        if limit is not None and len(items) >= limit:
            break
    if skipped:
        logger.warning("%s: skipped %d row(s) with an empty prompt (row indexes %s).", path, len(skipped), skipped)
    if not items:
        raise CorruptFileError(f"{path}: every selected row has an empty prompt, so it has no rows to evaluate.")
    return items


def file_columns(path: str | Path) -> list[str]:
    """The columns of an evaluation file, so a caller can choose an optional one before reading it."""
    return _read_rows(Path(path))[0]


def split_by_label(items: Sequence[EvalItem], path: str | Path) -> dict[str, list[EvalItem]]:
    """The harmful and benign sets of one labelled file (`label` harmful/benign or unsafe/safe), so a
    set built with both labels side by side, framing by framing, can be run as it is."""
    unlabelled = [item.id for item in items if item.label is None]
    if unlabelled:
        raise InvalidSettingError(
            f"{path}: {len(unlabelled)} row(s) have no label harmful/benign (or unsafe/safe), e.g. {unlabelled[:3]}: "
            "fill in the label column, drop those rows with --where, or pass the file as --harmful or --benign."
        )
    return {name: chosen for name in ("harmful", "benign") if (chosen := [i for i in items if i.label == name])}


def default_group(sets: Mapping[str, Sequence[EvalItem]]) -> str | None:
    """`framing` when every harmful and benign item has one (the framing set does), else None:
    a partial grouping would hide rows in a group of their own."""
    items = [item for name, chosen in sets.items() if name in ("harmful", "benign") for item in chosen]
    return DEFAULT_GROUP if items and all(DEFAULT_GROUP in item.meta for item in items) else None
