"""What the safe default leak policy costs a stream, against `log` (nothing held back), in one run.

    python benchmarks/bench_stream_policy.py [--tokens 64] [--repeats 3] [--out benchmarks/results]

The default policy redacts, so a stream holds back a tail until it is checked (docs/leakage.md#streams).
On the embedded model, plain mode, greedy, every answer exactly `--tokens` tokens long (EOS banned
until then), each prompt is streamed under both policies in strict alternation after a warm-up:
total time, time to the first answer piece, and the number of pieces, as ratios default/log.
Two contexts: a chat without documents (a short tail: the last clause) and a question with a
private document (a 256-character tail, since a copy grows word by word).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from selfguard_guardrails import GenerationResult, SelfGuard

CHAT = ["Tell me about the Moon.", "How do I change a flat tire on my bicycle?",
        "What are three fun facts about dolphins?", "Explain what a compiler does."]
DOCUMENT = ("Acme Payments runbook: when the nightly settlement job fails, restart the worker on host "
            "pay-batch-02 and re-run the job for the failed date. Escalate to the on-call lead if it fails twice.")
RAG = [f"Context: {DOCUMENT}\n\nWhat should I do when the nightly settlement job fails?"]


def stream_once(engine: SelfGuard, prompt: str, tokens: int, private: list[str] | None) -> tuple[float, float, int]:
    """(total seconds, seconds to the first answer piece, answer pieces) of one streamed answer."""
    started = time.perf_counter()
    first, pieces = None, 0
    for item in engine.stream(prompt, mode="plain", max_new_tokens=tokens, min_new_tokens=tokens,
                              private_context=private):
        if isinstance(item, GenerationResult):
            continue
        if item.channel == "answer":
            pieces += 1
            first = first if first is not None else time.perf_counter() - started
    total = time.perf_counter() - started
    return total, first if first is not None else total, pieces


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    safe = SelfGuard.from_pretrained(threads=1, progress=False)  # the default policy: redact every kind
    logging = SelfGuard(safe.loaded, leak_policy="log", progress=False)
    engines = {"default": safe, "log": logging}
    rows = []
    for context, prompts, private in (("chat", CHAT, None), ("private document", RAG, [DOCUMENT])):
        for prompt in prompts:
            for engine in engines.values():
                stream_once(engine, prompt, args.tokens, private)  # warm-up
            runs: dict[str, list[tuple[float, float, int]]] = {name: [] for name in engines}
            for _ in range(args.repeats):
                for name, engine in engines.items():
                    runs[name].append(stream_once(engine, prompt, args.tokens, private))
            median = {name: [statistics.median(r[i] for r in runs[name]) for i in range(3)] for name in engines}
            rows.append({"context": context, "prompt": prompt[:48], "tokens": args.tokens,
                         "total_s": {n: round(m[0], 3) for n, m in median.items()},
                         "first_piece_s": {n: round(m[1], 3) for n, m in median.items()},
                         "pieces": {n: int(m[2]) for n, m in median.items()},
                         "total_ratio": round(median["default"][0] / median["log"][0], 3),
                         "first_piece_ratio": round(median["default"][1] / median["log"][1], 2)})
            print(f"{context:>16} | {prompt[:40]:<40} | total default/log {rows[-1]['total_ratio']:.3f} | first "
                  f"piece {rows[-1]['first_piece_s']['default']:.2f} s vs {rows[-1]['first_piece_s']['log']:.2f} s"
                  f" | pieces {rows[-1]['pieces']['default']} vs {rows[-1]['pieces']['log']}", file=sys.stderr)
    result = {"model": safe.loaded.name, "tokens": args.tokens, "repeats": args.repeats, "cpu_count": os.cpu_count(),
              "load_avg_1min": os.getloadavg()[0], "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "stream_policy.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    lines = ["| context | prompt | total default/log | first answer piece (default, log) | pieces (default, log) |",
             "|---|---|---|---|---|"]
    lines += [f"| {r['context']} | {r['prompt']} | {r['total_ratio']:.3f} | {r['first_piece_s']['default']:.2f} s, "
              f"{r['first_piece_s']['log']:.2f} s | {r['pieces']['default']}, {r['pieces']['log']} |" for r in rows]
    table = "\n".join(lines)
    (out / "stream_policy.md").write_text(f"# Stream cost of the default leak policy ({args.tokens} tokens, "
                                          f"median of {args.repeats})\n\n{table}\n", encoding="utf-8")
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
