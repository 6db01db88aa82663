"""Adapters: what a LangChain batch and a LlamaIndex call cost against the engine they wrap.

Measured in one run on the embedded model, greedy, best of --repeats, ratios against a baseline
from the same run:
- LangChain `ChatSelfGuard.batch(N prompts)` (one padded engine batch) against N `invoke`s
  in a loop (what LangChain's default batch does, serialised by the engine's lock);
- `ChatSelfGuard.invoke` and `SelfGuardLLM.chat` against `SelfGuard.generate` on the same
  prompt (the adapters' own overhead: message conversion, callbacks, events, audit context).

    python benchmarks/bench_adapters.py [--prompts 4] [--tokens 32] [--repeats 3] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from llama_index.core.base.llms.types import ChatMessage  # noqa: E402
from timing import best  # noqa: E402 - benchmarks/timing.py, next to this script

from selfguard_guardrails.engine import SelfGuard  # noqa: E402
from selfguard_guardrails.integrations.langchain import ChatSelfGuard  # noqa: E402
from selfguard_guardrails.integrations.llama_index import SelfGuardLLM  # noqa: E402

PROMPTS = ["Name a colour.", "What is the capital of Italy?", "Say hello in French.", "Name a fruit.",
           "What is two plus two?", "Name an ocean.", "Give me a synonym of happy.", "Name a planet."]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    engine = SelfGuard.from_pretrained(progress=False)
    chat = ChatSelfGuard(engine=engine, max_tokens=args.tokens)
    llm = SelfGuardLLM(engine=engine, max_new_tokens=args.tokens)
    prompts = (PROMPTS * 4)[:args.prompts]
    figures = {
        "langchain batch": best(lambda: chat.batch(prompts), args.repeats),
        "langchain invoke loop": best(lambda: [chat.invoke(p) for p in prompts], args.repeats),
        "engine generate": best(lambda: engine.generate(prompts[0], max_new_tokens=args.tokens), args.repeats),
        "langchain invoke": best(lambda: chat.invoke(prompts[0]), args.repeats),
        "llama_index chat": best(lambda: llm.chat([ChatMessage(role="user", content=prompts[0])]), args.repeats),
    }
    ratios = {
        f"batch of {len(prompts)} / invoke loop": figures["langchain batch"] / figures["langchain invoke loop"],
        "ChatSelfGuard.invoke / engine.generate": figures["langchain invoke"] / figures["engine generate"],
        "SelfGuardLLM.chat / engine.generate": figures["llama_index chat"] / figures["engine generate"],
    }
    lines = ["| measured | seconds |", "|---|---|", *(f"| {k} | {v:.3f} |" for k, v in figures.items()), "",
             "| ratio | value |", "|---|---|", *(f"| {k} | {v:.3f} |" for k, v in ratios.items())]
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    summary = {"date": date.today().isoformat(), "prompts": len(prompts), "max_new_tokens": args.tokens,
               "repeats": args.repeats, "seconds": figures, "ratios": ratios}
    (args.out / "adapters.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (args.out / "adapters.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"saved {args.out / 'adapters.json'} and adapters.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
