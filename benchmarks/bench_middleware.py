"""What `SelfGuardMiddleware` adds to an agent's model call, and what routing costs.

Measured in one run, best of --repeats, ratios against a baseline from the same run:
- a `create_agent` call on an instant fake hosted model that replies with a reasoning trace of
  about --trace-words words, without middleware, with `SelfGuardMiddleware()` (leak checks of
  trace and answer, redaction, audit record) and with `route="guarded"` (plus the embedded
  model's awareness probe on the user's requests);
- the probe pass alone on a one-turn request and a four-turn conversation, against the local
  steered answer a flagged request gets (`ChatSelfGuard`, self-guard, --tokens tokens).

    python benchmarks/bench_middleware.py [--repeats 5] [--tokens 48] [--trace-words 300] [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import tempfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from langchain.agents import create_agent  # noqa: E402
from langchain_core.language_models import GenericFakeChatModel  # noqa: E402
from langchain_core.messages import AIMessage  # noqa: E402
from timing import best  # noqa: E402 - benchmarks/timing.py, next to this script

from selfguard_guardrails.engine import SelfGuard  # noqa: E402
from selfguard_guardrails.integrations.langchain import ChatSelfGuard, SelfGuardMiddleware  # noqa: E402

REQUEST = "Can you summarise what changed in our deployment last week?"
CONVERSATION = [{"role": "user", "content": "We moved the billing service to a new cluster."},
                {"role": "assistant", "content": "Noted. What would you like to know?"},
                {"role": "user", "content": "Which steps did the migration need?"},
                {"role": "assistant", "content": "It needed a database copy and a DNS switch."},
                {"role": "user", "content": REQUEST}]
TICKETS = itertools.count(1)


def hosted_reply(words: int) -> AIMessage:
    """A hosted reasoning model's reply: a trace in `reasoning_content`, a short answer."""
    sentence = "the user asks about the deployment so I should list the services that moved and when"
    trace = " ".join(itertools.islice(itertools.cycle(sentence.split(" ")), words))
    return AIMessage(content="The billing service moved to the new cluster on Tuesday.",
                     additional_kwargs={"reasoning_content": trace})


def fresh(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """The conversation with a new number in its last turn: the engine caches probe scores per
    text, and a repeated request would time the cache, not the probe."""
    *earlier, last = messages
    return [*earlier, {**last, "content": f"{last['content']} (ticket {next(TICKETS)})"}]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--tokens", type=int, default=48)
    parser.add_argument("--trace-words", type=int, default=300)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    engine = SelfGuard.from_pretrained(progress=False)
    reply = hosted_reply(args.trace_words)
    audit = Path(tempfile.mkdtemp()) / "audit.jsonl"

    def agent(*middleware: SelfGuardMiddleware):  # a fresh fake model: its replies are an iterator
        model = GenericFakeChatModel(messages=itertools.repeat(reply))
        return create_agent(model=model, tools=[], middleware=list(middleware))

    bare = agent()
    guarded = agent(SelfGuardMiddleware(audit=audit))
    routed = agent(SelfGuardMiddleware(audit=audit, route="guarded", engine=engine))
    steered = ChatSelfGuard(engine=engine, mode="self-guard", max_tokens=args.tokens)
    request = [{"role": "user", "content": REQUEST}]
    figures = {
        "agent call, no middleware": best(lambda: bare.invoke({"messages": fresh(request)}), args.repeats),
        "agent call, SelfGuardMiddleware()": best(lambda: guarded.invoke({"messages": fresh(request)}), args.repeats),
        "agent call, route='guarded'": best(lambda: routed.invoke({"messages": fresh(request)}), args.repeats),
        "probe pass, 1 turn": best(lambda: engine.awareness([fresh(request)]), args.repeats),
        "probe pass, 5-message conversation": best(lambda: engine.awareness([fresh(CONVERSATION)]), args.repeats),
        f"steered local answer, {args.tokens} tokens": best(lambda: steered.invoke(REQUEST), args.repeats),
    }
    baseline = figures["agent call, no middleware"]
    added = {
        "checks + audit per call (s)": figures["agent call, SelfGuardMiddleware()"] - baseline,
        "routing per call (s)": figures["agent call, route='guarded'"] - figures["agent call, SelfGuardMiddleware()"],
        "probe pass / steered local answer": figures["probe pass, 1 turn"]
        / figures[f"steered local answer, {args.tokens} tokens"],
    }
    lines = [f"# SelfGuardMiddleware cost ({date.today()}, trace of {args.trace_words} words)", "",
             "| measured | seconds |", "|---|---|", *(f"| {k} | {v:.4f} |" for k, v in figures.items()), "",
             "| derived | value |", "|---|---|", *(f"| {k} | {v:.4f} |" for k, v in added.items())]
    print("\n".join(lines))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "middleware.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (args.out / "middleware.json").write_text(json.dumps({"date": str(date.today()), "settings": vars(args) | {
        "out": str(args.out)}, "figures": figures, "derived": added}, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
