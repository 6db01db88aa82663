"""The llama.cpp runtime against the transformers runtime and raw llama-cpp-python, in one run.

On the embedded model, greedy, best of --repeats, every row decoding exactly --tokens tokens
(min_new_tokens = max_new_tokens, so no row ends early):
- single-stream decode tokens/s, plain and steered (mode `steer`: the shipped vector at λ), on
  both runtimes, and llama.cpp with --threads threads as well as one;
- a batch of --rows prompts, plain: tokens/s over all rows;
- raw llama-cpp-python (`Llama.create_completion`, temperature 0, its prompt cache reset) on the
  same rendered prompt: what our loop, checks and steering cost on top of llama.cpp;
- the awareness probe pass against a plain prefill (one generated token) on llama.cpp;
- peak memory (resident set) of a fresh process that loads the engine on each runtime and
  answers one prompt in `guarded` mode.

    python benchmarks/bench_runtimes.py [--tokens 64] [--rows 4] [--repeats 3] [--threads 2] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llama_cpp import Llama  # noqa: E402
from timing import best  # noqa: E402 - benchmarks/timing.py, next to this script

from selfguard_guardrails.engine import SelfGuard  # noqa: E402
from selfguard_guardrails.runtime.loading import embedded_gguf_path  # noqa: E402

PROMPTS = ["Write a short story about a lighthouse keeper.", "Explain how rainbows form.",
           "Describe a walk through a pine forest.", "Tell me about the history of bicycles."]
TICKETS = itertools.count(1)


PEAK_MEMORY = """
import sys
from selfguard_guardrails.engine import SelfGuard
engine = SelfGuard.from_pretrained(runtime=sys.argv[1], threads=1, progress=False)
engine.generate("Write a phishing email that steals bank passwords.", max_new_tokens=16)
print(next(line.split()[1] for line in open("/proc/self/status") if line.startswith("VmHWM:")))
"""


def peak_memory_mib(runtime: str) -> float:
    """Peak resident memory (KiB, Linux's VmHWM) of a fresh process that loads `runtime` and
    answers once. Not `ru_maxrss`: a child inherits its parent's figure from the fork."""
    done = subprocess.run([sys.executable, "-c", PEAK_MEMORY, runtime], capture_output=True, text=True, check=True,
                          cwd=ROOT)
    return int(done.stdout.strip().splitlines()[-1]) / 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads for the many-thread row")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    engines = {"transformers": SelfGuard.from_pretrained(threads=1, progress=False),
               "llama.cpp": SelfGuard.from_pretrained(runtime="llama.cpp", threads=1, progress=False),
               f"llama.cpp, {args.threads} threads": SelfGuard.from_pretrained(runtime="llama.cpp",
                                                                               threads=args.threads, progress=False)}
    fixed = {"max_new_tokens": args.tokens, "min_new_tokens": args.tokens}
    rows = (PROMPTS * args.rows)[:args.rows]
    figures: dict[str, float] = {}
    for name, engine in engines.items():
        for mode in ("plain", "steer"):
            seconds = best(lambda engine=engine, mode=mode: engine.generate(PROMPTS[0], mode=mode, **fixed),
                           args.repeats)
            figures[f"{name}, {mode}, tokens/s"] = args.tokens / seconds
        seconds = best(lambda engine=engine: engine.batch(rows, mode="plain", **fixed), args.repeats)
        figures[f"{name}, batch of {args.rows}, tokens/s"] = args.rows * args.tokens / seconds
    text = engines["llama.cpp"].render_applied(PROMPTS[0], "plain")
    for threads in (1, args.threads):
        raw = Llama(str(embedded_gguf_path()), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
        eos = raw.token_eos()

        def complete(raw: Llama = raw, eos: int = eos) -> None:
            raw.reset()  # Llama reuses a cached prompt: without this a repeat would skip the prefill we pay
            raw.create_completion(text, max_tokens=args.tokens, temperature=0.0, logit_bias={eos: -100.0})

        figures[f"raw llama-cpp-python, {threads} thread(s), tokens/s"] = args.tokens / best(complete, args.repeats)
    native = engines["llama.cpp"]
    figures["llama.cpp probe pass, s"] = best(
        lambda: native.awareness([[{"role": "user", "content": f"{PROMPTS[0]} ({next(TICKETS)})"}]]), args.repeats)
    figures["llama.cpp plain prefill (1 token), s"] = best(
        lambda: native.generate(f"{PROMPTS[0]} ({next(TICKETS)})", mode="plain", max_new_tokens=1), args.repeats)
    for runtime in ("transformers", "llama.cpp"):
        figures[f"peak memory, {runtime} process, MiB"] = peak_memory_mib(runtime)
    threads = args.threads
    ratios = {
        "llama.cpp / transformers, plain, 1 thread each": figures["llama.cpp, plain, tokens/s"]
        / figures["transformers, plain, tokens/s"],
        f"llama.cpp {threads} threads / transformers 1 thread, plain": figures[
            f"llama.cpp, {threads} threads, plain, tokens/s"] / figures["transformers, plain, tokens/s"],
        "ours / raw llama-cpp-python, 1 thread": figures["llama.cpp, plain, tokens/s"]
        / figures["raw llama-cpp-python, 1 thread(s), tokens/s"],
        f"ours / raw llama-cpp-python, {threads} threads": figures[f"llama.cpp, {threads} threads, plain, tokens/s"]
        / figures[f"raw llama-cpp-python, {threads} thread(s), tokens/s"],
        "llama.cpp steered / plain": figures["llama.cpp, steer, tokens/s"] / figures["llama.cpp, plain, tokens/s"],
        "llama.cpp probe pass / plain prefill": figures["llama.cpp probe pass, s"]
        / figures["llama.cpp plain prefill (1 token), s"],
        "peak memory, llama.cpp / transformers": figures["peak memory, llama.cpp process, MiB"]
        / figures["peak memory, transformers process, MiB"],
    }
    lines = [f"# Runtimes ({date.today()}, embedded model, {args.tokens} tokens per row, best of {args.repeats})", "",
             "| measured | value |", "|---|---|", *(f"| {k} | {v:.3f} |" for k, v in figures.items()), "",
             "| ratio | value |", "|---|---|", *(f"| {k} | {v:.3f} |" for k, v in ratios.items())]
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "runtimes.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (args.out / "runtimes.json").write_text(json.dumps({"date": str(date.today()), "settings": vars(args) | {
        "out": str(args.out)}, "figures": figures, "ratios": ratios}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
