"""Leakage checks: precision and recall per kind and subtype, and latency per 1,000 tokens.

Corpora: the labelled test corpus (tests/data/leakage/corpus.jsonl), the provider-format and
PII development set (tests/data/leakage/formats/formats.jsonl) and, when present, the held-out
one (benchmarks/data/leakage_heldout.jsonl), written by a helper that saw neither the
detectors nor the test corpus. Tokens are counted with the embedded model's tokenizer.

Latency is measured three ways, best of --repeats runs, as ms per 1,000 tokens:
- per case: every corpus text scanned on its own (short, dense with leaks: the worst case for
  fixed costs);
- traces: the corpus texts joined into ~1,000-token generations with ordinary text between them;
- clean: ~1,000-token generations with no leak at all (the common case).
`detect-secrets` (if installed) is measured on the same texts as a baseline, secrets only.

    python benchmarks/bench_leakage.py [--repeats 5] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selfguard_guardrails.leakage.evaluate import context_of, read_corpus, score_corpus  # noqa: E402
from selfguard_guardrails.leakage.scanner import LeakContext, LeakScanner  # noqa: E402

CORPORA = {"test corpus": ROOT / "tests" / "data" / "leakage" / "corpus.jsonl",
           "formats set": ROOT / "tests" / "data" / "leakage" / "formats" / "formats.jsonl",
           "held-out corpus": ROOT / "benchmarks" / "data" / "leakage_heldout.jsonl"}
FILLER = ("The user asked how to configure the service, so I will walk through the settings one by one and "
          "explain what each of them changes, then suggest a safe default for a small deployment. ")


def tokenizer():
    try:
        from selfguard_guardrails.runtime.loading import load_model

        return load_model(None, progress=False).tokenizer
    except Exception as error:  # the embedded model is optional here: fall back to a rough count
        print(f"(no embedded tokenizer: {error}; counting 1 token per 4 characters)", file=sys.stderr)
        return None


def count_tokens(tok, texts: list[str]) -> int:
    if tok is None:
        return sum(len(t) for t in texts) // 4
    return sum(len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts)


def best_time(run, repeats: int) -> float:
    run()  # warm-up: compiled patterns and cached sources
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        run()
        best = min(best, time.perf_counter() - started)
    return best


def traces(texts: list[str], tok, target_tokens: int = 1000) -> list[str]:
    """Corpus texts joined, with ordinary text between them, into generations of ~target tokens."""
    out, current = [], ""
    for text in texts:
        current += FILLER + text + "\n\n"
        if count_tokens(tok, [current]) >= target_tokens:
            out.append(current)
            current = ""
    return out + ([current] if current else [])


def clean_generations(tok, count: int = 10) -> list[str]:
    base = FILLER * 40
    return [base[:len(base) * (i + 5) // (count + 5)] for i in range(count)]


def detect_secrets_scan():
    try:
        from detect_secrets.core.scan import scan_line
        from detect_secrets.settings import default_settings
    except ImportError:
        return None

    def scan(text: str) -> int:
        with default_settings():
            return sum(1 for line in text.splitlines() for _ in scan_line(line))
    return scan


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    args = parser.parse_args()
    scanner, tok = LeakScanner(), tokenizer()
    results: dict = {"date": date.today().isoformat(), "cpu_count": os.cpu_count(),
                     "load_avg_start": os.getloadavg()[0], "corpora": {}, "latency_ms_per_1k_tokens": {}}
    lines = []
    for name, path in CORPORA.items():
        if not path.is_file():
            print(f"({name} not found at {path}: skipped)", file=sys.stderr)
            continue
        cases = read_corpus(path)
        score = score_corpus(cases, scanner).as_dict()
        results["corpora"][name] = {"cases": len(cases), **score}
        lines += [f"## {name} ({len(cases)} cases, {path.relative_to(ROOT)})", "",
                  "| kind | precision | recall | tp | fn | fp | tn |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {k} | {v['precision']:.3f} | {v['recall']:.3f} | {v['tp']} | {v['fn']} | {v['fp']} | {v['tn']} |"
                  for k, v in score["by_kind"].items()]
        lines += ["", "| subtype | precision | recall | tp | fn | fp | tn |", "|---|---|---|---|---|---|---|"]
        lines += [f"| {k} | {v['precision']:.3f} | {v['recall']:.3f} | {v['tp']} | {v['fn']} | {v['fp']} | {v['tn']} |"
                  for k, v in score["by_subtype"].items()]
        lines += ["", f"Findings of another kind than the case's: {score['other_kind_findings']}. "
                  f"Misjudged cases: {', '.join(score['misses']) or 'none'}.", ""]
        baseline_scan = detect_secrets_scan()
        if baseline_scan is not None:
            secret_cases = [c for c in cases if c["kind"] == "secret"]
            flagged = [(c["label"] == "leak", baseline_scan(c["text"]) > 0) for c in secret_cases]
            tp = sum(1 for leak, hit in flagged if leak and hit)
            fp = sum(1 for leak, hit in flagged if not leak and hit)
            fn = sum(1 for leak, hit in flagged if leak and not hit)
            baseline = {"precision": round(tp / max(1, tp + fp), 4), "recall": round(tp / max(1, tp + fn), 4),
                        "tp": tp, "fp": fp, "fn": fn}
            results["corpora"][name]["detect_secrets_on_secret_cases"] = baseline
            lines += [f"Baseline, detect-secrets 1.5 (default plugins) on the secret cases: precision "
                      f"{baseline['precision']:.3f}, recall {baseline['recall']:.3f} (tp {tp}, fp {fp}, fn {fn}).", ""]

    cases = read_corpus(CORPORA["test corpus"])
    texts = [c["text"] for c in cases]
    contexts = [context_of(c) for c in cases]
    sets = {"per case": (texts, contexts), "traces": (traces(texts, tok), None),
            "clean": (clean_generations(tok), None)}
    shared = LeakContext(system_prompt=next(c["system_prompt"] for c in cases if c.get("system_prompt")),
                         private_context=tuple(next(c["private_context"] for c in cases if c.get("private_context"))),
                         canaries=("CANARY-0000-benchmark",))
    baseline = detect_secrets_scan()
    lines += ["## Latency", "", "| texts | tokens | selfguard ms / 1k tokens | detect-secrets ms / 1k tokens |",
              "|---|---|---|---|"]
    for label, (group, group_contexts) in sets.items():
        tokens = count_tokens(tok, group)
        ctxs = group_contexts or [shared] * len(group)
        ours = best_time(lambda g=group, c=ctxs: [scanner.scan(t, "", x) for t, x in zip(g, c, strict=True)],
                         args.repeats) * 1000 / tokens * 1000
        theirs = (best_time(lambda g=group: [baseline(t) for t in g], max(1, args.repeats // 2)) * 1000 / tokens
                  * 1000) if baseline else None
        results["latency_ms_per_1k_tokens"][label] = {"tokens": tokens, "texts": len(group),
                                                      "selfguard": round(ours, 3),
                                                      "detect_secrets": None if theirs is None else round(theirs, 3)}
        lines.append(f"| {label} ({len(group)}) | {tokens} | {ours:.3f} | "
                     f"{'not installed' if theirs is None else f'{theirs:.3f}'} |")
    results["load_avg_end"] = os.getloadavg()[0]
    lines += ["", f"CPU count {results['cpu_count']}, load average {results['load_avg_start']:.2f} -> "
              f"{results['load_avg_end']:.2f} (numbers are suspect if near the CPU count)."]
    report = "\n".join(lines) + "\n"
    print(report)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    for name in (f"leakage-{results['date']}.json", "leakage-latest.json"):
        (out / name).write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    (out / "leakage-latest.md").write_text(report, encoding="utf-8")
    print(f"wrote {out / 'leakage-latest.json'} and leakage-latest.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
