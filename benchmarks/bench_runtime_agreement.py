"""Do the llama.cpp and transformers runtimes give the same answers? Measured, per mode.

On the embedded model and the behaviour prompt set (tests/data/behaviour_prompts.json: harmful
and benign prompts the project wrote), greedy, --tokens new tokens: for each mode, the share of
prompts whose refusal verdict (the keyword judge) is the same on both runtimes, the share with
the same gate decision, and how many leading tokens the two answers share (median and the share
identical to the end). The runtimes differ in arithmetic (llama.cpp multiplies the Q4_1 weights
with 8-bit quantized activations; transformers uses the dequantized weights in float32), so
greedy answers may part after a near tie.

    python benchmarks/bench_runtime_agreement.py [--tokens 48] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selfguard_guardrails.engine import SelfGuard  # noqa: E402
from selfguard_guardrails.evaluation.judges import is_refusal  # noqa: E402

MODES = ("plain", "prompt", "steer", "self-guard", "guarded")


def shared_prefix(first: list[int], second: list[int]) -> int:
    count = 0
    for a, b in zip(first, second, strict=False):
        if a != b:
            break
        count += 1
    return count


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    sets = json.loads((ROOT / "tests" / "data" / "behaviour_prompts.json").read_text(encoding="utf-8"))
    prompts = [*sets["harmful"], *sets["benign"]]
    native = SelfGuard.from_pretrained(runtime="llama.cpp", threads=1, progress=False)
    reference = SelfGuard.from_pretrained(threads=1, progress=False)
    tokenizer = reference.runtime.tokenizer
    rows = {}
    for mode in MODES:
        ours = native.batch(prompts, mode=mode, max_new_tokens=args.tokens)
        theirs = reference.batch(prompts, mode=mode, max_new_tokens=args.tokens)
        prefixes, whole = [], 0
        for a, b in zip(ours, theirs, strict=True):
            first = tokenizer(a.reasoning + a.answer, add_special_tokens=False)["input_ids"]
            second = tokenizer(b.reasoning + b.answer, add_special_tokens=False)["input_ids"]
            prefixes.append(shared_prefix(first, second))
            whole += first == second
        rows[mode] = {
            "refusal verdict agrees": sum(is_refusal(a.answer) == is_refusal(b.answer)
                                          for a, b in zip(ours, theirs, strict=True)) / len(prompts),
            "gate decision agrees": sum(a.gate_fired == b.gate_fired for a, b in zip(ours, theirs, strict=True))
            / len(prompts),
            "identical answers": whole / len(prompts),
            "median shared leading tokens": statistics.median(prefixes),
            "refused (llama.cpp / transformers)": f"{sum(is_refusal(r.answer) for r in ours)} / "
                                                  f"{sum(is_refusal(r.answer) for r in theirs)}",
        }
    columns = list(next(iter(rows.values())))
    lines = [f"# Runtime agreement ({date.today()}, embedded model, {len(prompts)} behaviour prompts, "
             f"greedy, {args.tokens} tokens)", "", "| mode | " + " | ".join(columns) + " |",
             "|---|" + "---|" * len(columns)]
    lines += [f"| {mode} | " + " | ".join(f"{v:.2f}" if isinstance(v, float) else str(v) for v in row.values()) + " |"
              for mode, row in rows.items()]
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runtime_agreement.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (args.out / "runtime_agreement.json").write_text(json.dumps({"date": str(date.today()), "tokens": args.tokens,
                                                                  "prompts": len(prompts), "modes": rows}, indent=2)
                                                      + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
