"""Where the awareness gate fires, per framing: the baseline for the framings issue.

Reads the framing set built by ``benchmarks/data/framings/make_framing_set.py`` (in
``benchmarks/runs/``, since it holds HarmBench rows read by path) and asks the embedded model's
awareness probe about every conversation (no generation: one partial forward pass each). Prints
and saves, per framing and label, the share of conversations the gate fires on, for each split.

    python benchmarks/data/framings/make_framing_set.py && python benchmarks/bench_framing_gate.py
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

from selfguard_guardrails import SelfGuard

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", type=Path, default=HERE / "runs" / "framing_set.jsonl")
    parser.add_argument("--out", type=Path, default=HERE / "results")
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args(argv)
    if not args.set.is_file():
        print(f"No framing set at {args.set}: run benchmarks/data/framings/make_framing_set.py first.",
              file=sys.stderr)
        return 2
    rows = [json.loads(line) for line in args.set.read_text(encoding="utf-8").splitlines() if line.strip()]
    engine = SelfGuard.from_pretrained(progress=False)
    fired: dict[tuple[str, str, str], list[bool]] = defaultdict(list)
    for start in range(0, len(rows), args.batch):
        batch = rows[start:start + args.batch]
        scores = engine.awareness([row["messages"] for row in batch])
        for row, score in zip(batch, scores, strict=True):
            framing = row["framing"] if row["language"] == "en" else f"{row['framing']} ({row['language']})"
            fired[(row["split"], framing, row["label"])].append(score >= 0)
        print(f"\r{start + len(batch)}/{len(rows)}", end="", file=sys.stderr)
    print(file=sys.stderr)
    table = {f"{split}|{framing}|{label}": {"n": len(values), "fired": sum(values) / len(values)}
             for (split, framing, label), values in sorted(fired.items())}
    lines = ["| split | framing | harmful: gate fired | benign: gate fired |", "| --- | --- | --- | --- |"]
    for split, framing in sorted({(s, f) for s, f, _ in fired}):
        cells = []
        for label in ("harmful", "benign"):
            entry = table.get(f"{split}|{framing}|{label}")
            cells.append("" if entry is None else f"{entry['fired']:.2f} ({entry['n']})")
        lines.append(f"| {split} | {framing} | {cells[0]} | {cells[1]} |")
    report = "\n".join(lines)
    print(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "framing_gate.json").write_text(json.dumps(table, indent=1) + "\n", encoding="utf-8")
    (args.out / "framing_gate.md").write_text("# Awareness gate per framing (embedded model, shipped probe)\n\n"
                                              + report + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
