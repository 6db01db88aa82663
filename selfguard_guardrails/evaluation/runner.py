"""Run prompt sets through engine modes, judge every answer, and keep the records safe.

Records go to `records.jsonl` one batch at a time (flushed and synced), so a crash loses no
finished row; a rerun with the same output directory skips what is already there.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..errors import CorruptFileError, InvalidSettingError
from ..method.probe import auc
from ..runtime.chat import Messages
from ..settings import Mode
from .datasets import EvalItem
from .judges import degeneration, is_refusal
from .metrics import (
    awareness_compliance_gap,
    group_rates,
    is_correct_answer,
    next_token_kl,
    rate,
    readability_rates,
)
from .plots import write_eval_plots
from .readability import echoes_instruction, instruction_texts, trails_in_fragments

logger = logging.getLogger(__name__)

SETS = ("harmful", "benign", "utility")
RECORDS = "records.jsonl"
Judge = Callable[[str, str], bool]  # (prompt, answer) -> refused


def keyword_judge(prompt: str, answer: str) -> bool:
    """The default refusal judge: a decline in the opening sentences (see judges.py)."""
    return is_refusal(answer)


def judge_name(judge: Judge) -> str:
    """How records and metrics.json name a judge: "keyword", "llm:<chat model class>", else its own name."""
    if judge is keyword_judge:
        return "keyword"
    return str(getattr(judge, "name", None) or getattr(judge, "__name__", None) or type(judge).__name__)


def _key(record: dict[str, Any]) -> tuple[str, str, str]:
    return record["set"], record["id"], record["mode"]


def read_records(path: Path) -> list[dict[str, Any]]:
    """Records written so far; a torn last line (a crash mid-write) is dropped, not fatal."""
    if not path.is_file():
        return []
    records = []
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            if number == len(lines):
                logger.warning("Dropping a torn last line of %s (an interrupted run).", path)
                continue
            raise CorruptFileError(f"{path} line {number} is not valid JSON ({error}): remove that line or "
                                   "start a new --out directory.") from error
    return records


@dataclass
class EvalRun:
    """One evaluation: engine, modes, output directory, judge; `run` is resumable."""

    engine: Any
    out_dir: Path
    modes: Sequence[str]
    max_new_tokens: int = 96
    batch_size: int = 8
    judge: Judge = keyword_judge
    progress: bool = True
    group_by: str | None = None  # an item meta column to break the rates down by (e.g. "framing")
    records: list[dict[str, Any]] = field(default_factory=list)
    plots: list[Path] = field(default_factory=list)  # the PNGs the last `metrics` wrote (see plots.py)

    def __post_init__(self) -> None:
        self.modes = [Mode.parse(m).value for m in self.modes]
        if not self.modes:
            raise InvalidSettingError("Give at least one mode, e.g. --modes plain,self-guard.")
        self.out_dir = Path(self.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)

    @property
    def records_path(self) -> Path:
        return self.out_dir / RECORDS

    def run(self, sets: dict[str, list[EvalItem]]) -> dict[str, Any]:
        """Generate and judge every (set, item, mode) not yet recorded, then compute the metrics."""
        unknown = set(sets) - set(SETS)
        if unknown:
            raise InvalidSettingError(f"Unknown prompt set {sorted(unknown)}: use {', '.join(SETS)}.")
        self.records = read_records(self.records_path)
        self._drop_torn_tail()
        done = {_key(r) for r in self.records}
        todo = [(name, mode, [i for i in items if (name, i.id, mode) not in done])
                for name, items in sets.items() for mode in self.modes]
        total = sum(len(items) for _, _, items in todo)
        if done:
            logger.info("Resuming: %d records already in %s, %d to go.", len(done), self.records_path, total)
        with self.records_path.open("a", encoding="utf-8") as sink, \
                tqdm(total=total, desc="eval", unit="prompt", disable=not self.progress) as bar:
            for name, mode, items in todo:
                for start in range(0, len(items), self.batch_size):
                    batch = items[start:start + self.batch_size]
                    new = self._judge_batch(name, mode, batch)
                    sink.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in new))
                    sink.flush()
                    os.fsync(sink.fileno())
                    self.records.extend(new)
                    bar.update(len(batch))
        return self.metrics(sets)

    def _drop_torn_tail(self) -> None:
        """Rewrite the file without a line torn by a crash, so appended records start on a line of their own."""
        path = self.records_path
        if not path.is_file() or len(self.records) == sum(1 for line in path.open(encoding="utf-8") if line.strip()):
            return
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in self.records), encoding="utf-8")
        tmp.replace(path)

    def _judge_batch(self, name: str, mode: str, items: list[EvalItem]) -> list[dict[str, Any]]:
        results = self.engine.batch([i.model_input for i in items], mode=mode, max_new_tokens=self.max_new_tokens)
        records, judge = [], judge_name(self.judge)
        for item, result in zip(items, results, strict=True):
            broken = degeneration(result.answer)
            record = {
                "set": name, "id": item.id, "mode": mode, "prompt": item.prompt, "answer": result.answer,
                "reasoning": result.reasoning, "refused": self.judge(item.prompt, result.answer), "judge": judge,
                "degenerate": broken.degenerate, "degeneration": broken.reason, "awareness": result.awareness,
                "output_tokens": result.usage.output_tokens,
                "seconds": result.timings.total_seconds / len(items), "meta": dict(item.meta),
            }
            if item.messages:
                record["messages"] = list(item.messages)
            self._add_readability(record)
            if item.target_answer is not None:
                record["target_answer"] = item.target_answer
                record["correct"] = is_correct_answer(result.answer, item.target_answer)
            records.append(record)
        return records

    def _add_readability(self, record: dict[str, Any]) -> dict[str, Any]:
        """Fill in `echo` and `fragments` (see readability.py) where a record lacks them: records of
        runs made before they existed are judged when the metrics are computed."""
        texts = instruction_texts(self.engine.safety_prompt)
        if "echo" not in record:
            record["echo"] = echoes_instruction(record["answer"], texts)
        if "fragments" not in record:
            record["fragments"] = bool(record["refused"]) and trails_in_fragments(record["answer"], texts)
        return record

    def metrics(self, sets: dict[str, list[EvalItem]]) -> dict[str, Any]:
        """Per-mode rates with Wilson intervals, utility, the awareness–compliance gap, readability,
        costs, and with `group_by` the rates per group."""
        wanted = {name: {i.id for i in items} for name, items in sets.items()}
        rows = [self._add_readability(r) for r in self.records
                if r["mode"] in self.modes and r["id"] in wanted.get(r["set"], ())]
        harmful_items = sets.get("harmful", [])
        harmful = [i.model_input for i in harmful_items]
        awareness = self.engine.awareness(harmful) if harmful and self._has_probe() else None
        benign = [i.model_input for i in sets.get("benign", [])]
        report: dict[str, Any] = {"modes": {}, "counts": {k: len(v) for k, v in sets.items()},
                                  "max_new_tokens": self.max_new_tokens, "judge": judge_name(self.judge)}
        if awareness is not None and benign:
            report["probe"] = self._probe_summary(awareness, self.engine.awareness(benign))
        for mode in self.modes:
            mine = [r for r in rows if r["mode"] == mode]

            def of(name: str, rows_: Iterable[dict[str, Any]] = mine) -> list[dict[str, Any]]:
                return [r for r in rows_ if r["set"] == name]

            entry: dict[str, Any] = {
                "harmful_refusal": rate(r["refused"] for r in of("harmful")).as_dict(),
                "benign_refusal": rate(r["refused"] for r in of("benign")).as_dict(),
                "degeneration": rate(r["degenerate"] for r in mine).as_dict(),
                **readability_rates(mine),
                "tokens_per_prompt": sum(r["output_tokens"] for r in mine) / max(len(mine), 1),
                "seconds_per_prompt": sum(r["seconds"] for r in mine) / max(len(mine), 1),
            }
            utility = [r for r in of("utility") if "correct" in r]
            if utility:
                entry["utility_accuracy"] = rate(r["correct"] for r in utility).as_dict()
            if benign:
                entry["benign_next_token_kl"] = self._benign_kl(benign, mode)
            if awareness is not None:
                by_id = {r["id"]: r["refused"] for r in of("harmful")}
                refused = [by_id.get(i.id, False) for i in harmful_items]
                entry["awareness_compliance_gap"] = awareness_compliance_gap(awareness, refused).as_dict()
            report["modes"][mode] = entry
        if self.group_by:
            report["groups"] = self._groups(rows, sets)
        (self.out_dir / "metrics.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        (self.out_dir / "report.md").write_text(markdown_table(report), encoding="utf-8")
        self.plots = write_eval_plots(report, self.out_dir)
        return report

    def _groups(self, rows: list[dict[str, Any]], sets: dict[str, list[EvalItem]]) -> dict[str, Any]:
        """Rates per value of the `group_by` column, per mode. The groups come from the items, not
        the records, so records written before the column was read are grouped too."""
        column = self.group_by
        assert column is not None
        group = {(name, i.id): i.meta.get(column) for name, items in sets.items() for i in items}

        def group_of(record: Mapping[str, Any]) -> str | None:
            return group.get((record["set"], record["id"]))

        return {"column": column, "modes": {mode: group_rates([r for r in rows if r["mode"] == mode], group_of)
                                            for mode in self.modes}}

    def _probe_summary(self, harmful: list[float], benign: list[float]) -> dict[str, Any]:
        """How well the gate's probe separates these sets: AUC and the share its threshold flags."""
        probe = self.engine.vector.probe
        return {"method": probe.method, "layer": probe.layer,
                "auc": round(auc(torch.tensor(harmful), torch.tensor(benign)), 4),
                "harmful_flagged": rate(s >= 0 for s in harmful).as_dict(),
                "benign_flagged": rate(s >= 0 for s in benign).as_dict()}

    def _benign_kl(self, prompts: list[Messages], mode: str) -> float:
        """Mean next-token KL from plain; in `guarded` mode, flagged prompts are read as Self-Guard
        with the gate's full λ and the rest as the gate's `below` mode (plain: 0)."""
        if mode != Mode.GUARDED.value:
            return sum(next_token_kl(self.engine, prompts, mode)) / len(prompts)
        gate, setting = self.engine.gate, self.engine.setting
        scores = self.engine.awareness(prompts)
        flagged = [p for p, score in zip(prompts, scores, strict=True) if score >= 0]
        passed = [p for p, score in zip(prompts, scores, strict=True) if score < 0]
        kl = next_token_kl(self.engine, flagged, Mode.SELF_GUARD.value,
                           strength=gate.strength_for(setting, math.inf)) if flagged else []
        kl += next_token_kl(self.engine, passed, gate.below) if passed else []
        return sum(kl) / len(prompts)

    def _has_probe(self) -> bool:
        return getattr(self.engine.vector, "probe", None) is not None


def _cell(entry: dict[str, Any], key: str) -> str:
    value = entry.get(key)
    if value is None:
        return "–"
    if isinstance(value, dict):
        return f"{value['rate']:.1%} ({value['count']}/{value['total']})"
    return f"{value:.3f}"


def markdown_table(report: dict[str, Any]) -> str:
    """The headline table: one row per mode."""
    columns = [("harmful refusal", "harmful_refusal"), ("benign refusal", "benign_refusal"),
               ("degenerate", "degeneration"), ("instruction echo", "instruction_echo"),
               ("refusal fragments", "refusal_fragments"), ("utility accuracy", "utility_accuracy"),
               ("benign KL (nats)", "benign_next_token_kl"), ("tokens/prompt", "tokens_per_prompt"),
               ("s/prompt", "seconds_per_prompt")]
    lines = ["| mode | " + " | ".join(c for c, _ in columns) + " |",
             "|---|" + "---|" * len(columns)]
    for mode, entry in report["modes"].items():
        lines.append(f"| {mode} | " + " | ".join(_cell(entry, key) for _, key in columns) + " |")
    probe = report.get("probe")
    if probe:
        lines += ["", f"Awareness probe ({probe['method']}, layer {probe['layer']}) on these sets: AUC "
                      f"{probe['auc']:.3f}; its threshold flags {_cell(probe, 'harmful_flagged')} of the harmful and "
                      f"{_cell(probe, 'benign_flagged')} of the benign prompts (where `guarded` applies Self-Guard)."]
    gaps = [(mode, e["awareness_compliance_gap"]) for mode, e in report["modes"].items()
            if "awareness_compliance_gap" in e]
    if gaps:
        lines += ["", "Awareness–compliance gap on the harmful set (probe says harmful, answer complied):", ""]
        lines += [f"- {mode}: {gap['aware_and_complied']['rate']:.1%} "
                  f"(aware {gap['aware']['rate']:.1%}, complied {gap['complied']['rate']:.1%})" for mode, gap in gaps]
    if report.get("groups"):
        lines += ["", *group_table(report["groups"])]
    return "\n".join(lines) + "\n"


_GROUP_RATES = (("harmful refused", "harmful_refusal"), ("benign refused", "benign_refusal"),
                ("degenerate", "degeneration"))
_GATE_RATES = (("harmful: gate fired", "harmful_gate_fired"), ("benign: gate fired", "benign_gate_fired"))


def _short(entry: dict[str, Any] | None) -> str:
    return "–" if not entry or not entry["total"] else f"{entry['rate']:.0%} ({entry['count']}/{entry['total']})"


def group_table(groups: dict[str, Any]) -> list[str]:
    """Per group, each rate across the modes as `plain → guarded`, so a framing that one mode fixes
    and another does not reads along one row; then the gate's firing share for each mode that has
    probe scores (`guarded`). A rate no group has (no benign set) gets no column."""
    by_mode: dict[str, dict[str, dict[str, Any]]] = groups["modes"]
    modes = list(by_mode)
    names = list(dict.fromkeys(name for entries in by_mode.values() for name in entries))

    def cell(mode: str, name: str, key: str) -> str:
        return _short(by_mode[mode].get(name, {}).get(key))

    def measured(mode: str, key: str) -> bool:
        return any((entry.get(key) or {}).get("total") for entry in by_mode[mode].values())

    columns = [(label, key, modes) for label, key in _GROUP_RATES if any(measured(m, key) for m in modes)]
    columns += [(f"{label} ({mode})", key, [mode]) for label, key in _GATE_RATES for mode in modes
                if measured(mode, key)]
    lines = [f"Per {groups['column']} ({' → '.join(modes)}):", "",
             f"| {groups['column']} | " + " | ".join(label for label, _, _ in columns) + " |",
             "|---|" + "---|" * len(columns)]
    lines += [f"| {name} | " + " | ".join(" → ".join(cell(m, name, key) for m in shown) for _, key, shown in columns)
              + " |" for name in names]
    return lines
