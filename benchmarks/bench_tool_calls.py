"""Tool calls on the embedded model: how often each strategy gives a call that is valid and right.

Tasks (benchmarks/data/tool_calls.jsonl, written for this benchmark): 8 single-tool calls with
flat arguments, 12 choices among 3-4 tools, 10 extractions into nested schemas (objects in
objects, lists of strings, lists of objects). Strategies, all through `ChatSelfGuard`:
- auto: tools bound, `tool_choice="auto"`; the model decides and writes the call;
- forced + parse: the call is started for the model, generated whole and parsed, no retry;
- forced + parse + retries: the same, tried again (sampled, through tenacity) up to 2 times;
- guided (the default): the JSON is ours, the model writes only the values.
A call is *valid* when it parses and its arguments validate against the tool's pydantic
model; *right* when it is valid, names the expected tool and its arguments hold the expected
values (case-insensitive substrings). Tool choice among several tools is also scored on its
own: the model writing the name vs the noisy-channel choice `ChatSelfGuard` uses.

    python benchmarks/bench_tool_calls.py [--out benchmarks/results]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import date
from pathlib import Path

from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import BaseModel, Field, ValidationError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selfguard_guardrails.integrations.langchain import ChatSelfGuard  # noqa: E402
from selfguard_guardrails.tooling.choice import choose_tool  # noqa: E402

TASKS = ROOT / "benchmarks" / "data" / "tool_calls.jsonl"


class GetWeather(BaseModel):
    """Current weather in a city."""

    city: str


class Calculator(BaseModel):
    """Evaluate an arithmetic expression such as 17 * 23."""

    expression: str


class SearchDocs(BaseModel):
    """Search the company handbook and internal documents."""

    query: str


class BookHotel(BaseModel):
    """Book a hotel room."""

    city: str
    nights: int
    breakfast: bool


class SendEmail(BaseModel):
    """Send an email."""

    to: str
    subject: str


class ConvertCurrency(BaseModel):
    """Convert an amount of money between currencies (ISO codes such as EUR, USD)."""

    amount: float
    from_currency: str = Field(description="ISO code")
    to_currency: str = Field(description="ISO code")


class Address(BaseModel):
    city: str
    country: str


class Person(BaseModel):
    """A person described in the text."""

    name: str
    age: int
    address: Address
    hobbies: list[str]


class Item(BaseModel):
    name: str
    quantity: int


class Order(BaseModel):
    """An order: who placed it and what it holds."""

    customer: str
    items: list[Item]


class Location(BaseModel):
    city: str
    venue: str


class Event(BaseModel):
    """An event with its date and place."""

    title: str
    date: str
    location: Location


CATALOGUE = {cls.__name__: cls for cls in (GetWeather, Calculator, SearchDocs, BookHotel, SendEmail,
                                           ConvertCurrency, Person, Order, Event)}
STRATEGIES = {
    "auto": {"tool_choice": None, "guided": False, "retries": 0},
    "forced + parse": {"tool_choice": "any", "guided": False, "retries": 0},
    "forced + parse + 2 retries": {"tool_choice": "any", "guided": False, "retries": 2},
    "guided (default)": {"tool_choice": "any", "guided": True, "retries": 2},
}


def score(reply, task: dict) -> tuple[bool, bool]:
    """(valid, right) for the first tool call of a reply."""
    if not reply.tool_calls:
        return False, False
    call = reply.tool_calls[0]
    schema = CATALOGUE.get(call["name"])
    try:
        schema.model_validate(call["args"]) if schema else None
    except ValidationError:
        return False, False
    text = json.dumps(call["args"], ensure_ascii=False).lower()
    right = call["name"] == task["expect_tool"] and all(e.lower() in text for e in task["expect"])
    return schema is not None, right


def kind(task: dict) -> str:
    if task["expect_tool"] in ("Person", "Order", "Event"):
        return "nested"
    return "flat, one tool" if len(task["tools"]) == 1 else "flat, choose a tool"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    tasks = [json.loads(line) for line in TASKS.read_text(encoding="utf-8").splitlines() if line.strip()]
    base = ChatSelfGuard(max_tokens=96)
    engine = base.engine
    rows = []
    for name, strategy in STRATEGIES.items():
        model = ChatSelfGuard(engine=engine, max_tokens=96, guided_tool_calls=strategy["guided"],
                              tool_call_retries=strategy["retries"])
        for task in tasks:
            bound = model.bind_tools([CATALOGUE[t] for t in task["tools"]], tool_choice=strategy["tool_choice"])
            started = time.perf_counter()
            reply = bound.invoke(task["question"])
            seconds = time.perf_counter() - started
            valid, right = score(reply, task)
            rows.append({"strategy": name, "kind": kind(task), "valid": valid, "right": right, "seconds": seconds})
        done = [r for r in rows if r["strategy"] == name]
        mean_seconds = sum(r["seconds"] for r in done) / len(done)
        print(f"{name:28s} valid {sum(r['valid'] for r in done):2d}/{len(done)}  right "
              f"{sum(r['right'] for r in done):2d}/{len(done)}  {mean_seconds:.2f} s/call", flush=True)
    choice = {"model writes the name": 0, "noisy channel": 0}
    several = [t for t in tasks if len(t["tools"]) > 1]
    for task in several:
        tools = [convert_to_openai_tool(CATALOGUE[t]) for t in task["tools"]]
        written = engine.generate(task["question"], tools=tools, prefix='<tool_call>{"name": "', stop=['"'],
                                  max_new_tokens=12).answer.split('"name": "')[-1]
        choice["model writes the name"] += written.strip() == task["expect_tool"]
        choice["noisy channel"] += choose_tool(task["question"], tools, engine.score_texts) == task["expect_tool"]
    summary = {"date": date.today().isoformat(), "tasks": len(tasks), "model": engine.loaded.name,
               "strategies": {}, "tool_choice": {k: f"{v}/{len(several)}" for k, v in choice.items()}}
    kinds = sorted({r["kind"] for r in rows})
    lines = ["| strategy | valid | right | " + " | ".join(f"right: {k}" for k in kinds) + " | s/call |",
             "|---|---|---|" + "---|" * len(kinds) + "---|"]
    for name in STRATEGIES:
        done = [r for r in rows if r["strategy"] == name]
        per_kind = {k: [r for r in done if r["kind"] == k] for k in kinds}
        entry = {"valid": sum(r["valid"] for r in done), "right": sum(r["right"] for r in done), "of": len(done),
                 "seconds_per_call": round(sum(r["seconds"] for r in done) / len(done), 3),
                 "right_by_kind": {k: f"{sum(r['right'] for r in v)}/{len(v)}" for k, v in per_kind.items()}}
        summary["strategies"][name] = entry
        lines.append(f"| {name} | {entry['valid']}/{len(done)} | {entry['right']}/{len(done)} | "
                     + " | ".join(entry["right_by_kind"][k] for k in kinds) + f" | {entry['seconds_per_call']:.2f} |")
    lines.append("")
    lines.append(f"Tool choice among several tools ({len(several)} tasks): "
                 + ", ".join(f"{k} {v}/{len(several)}" for k, v in choice.items()))
    table = "\n".join(lines)
    print("\n" + table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "tool_calls.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    (args.out / "tool_calls.md").write_text(table + "\n", encoding="utf-8")
    print(f"\nsaved {args.out / 'tool_calls.json'} and tool_calls.md")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
