"""What the awareness gate costs: `guarded` against `self-guard` and `plain`, and the probe pass
against the alternatives to it.

Measured in one run on the embedded model, greedy, best of --repeats, on a mix of harmful
(HarmBench test) and benign (benign_edgy_80) prompts from ../shared/data, decoded in batches:
- seconds per prompt of `plain`, `self-guard` and `guarded` generation, and their ratios;
- the gate's own cost per prompt: the probe pass as shipped (the request read alone up to the
  probe's layer, no KV cache), the same pass through every layer, and the prefills it sits next
  to (plain and self-guard renders, with the KV cache). The alternative to a separate probe pass
  is to read the probe during a plain prefill and keep its cache for prompts the gate lets
  through; a fired gate then needs a second (self-guard) prefill. The figures give the extra
  cost per prompt of each strategy at the measured share of fired gates.

    python benchmarks/bench_guarded.py [--prompts 16] [--tokens 32] [--batch-size 8] [--repeats 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT))

from timing import best  # noqa: E402 - benchmarks/timing.py, next to this script

from selfguard_guardrails.engine import SelfGuard  # noqa: E402
from selfguard_guardrails.method.probe_fitting import probe_texts  # noqa: E402
from selfguard_guardrails.runtime.activations import last_token_activations  # noqa: E402
from selfguard_guardrails.settings import Mode  # noqa: E402


def prompt_mix(count: int) -> list[str]:
    """Half harmful, half benign, alternating, so every batch mixes fired and passed gates."""
    with (DATA / "harmbench_behaviors_text_test.csv").open(encoding="utf-8") as handle:
        harmful = [r["Behavior"] for r in csv.DictReader(handle) if r["FunctionalCategory"] == "standard"]
    benign = [r["text"] for r in json.loads((DATA / "benign_edgy_80.json").read_text(encoding="utf-8"))]
    half = count // 2
    return [p for pair in zip(harmful[:half], benign[:half], strict=True) for p in pair]


def in_batches(run: Callable[[list[str]], object], prompts: list[str], size: int) -> Callable[[], None]:
    def all_batches() -> None:
        for start in range(0, len(prompts), size):
            run(prompts[start:start + size])
    return all_batches


@torch.inference_mode()
def prefill(engine: SelfGuard, mode: Mode) -> Callable[[list[str]], object]:
    """One forward pass over the rendered prompts with the KV cache, as a decode's first step."""
    def run(batch: list[str]) -> object:
        prepared = engine.runtime.encode([engine.render_applied(messages, mode) for messages in batch])
        positions = (prepared.attention_mask.cumsum(-1) - 1).clamp(min=0)
        return engine.loaded.model(input_ids=prepared.input_ids, attention_mask=prepared.attention_mask,
                                   position_ids=positions, use_cache=True)
    return run


def probe_pass(engine: SelfGuard, up_to_layer: int | None) -> Callable[[list[str]], object]:
    def run(batch: list[str]) -> object:
        texts = probe_texts(engine._renderer, batch)
        return last_token_activations(engine.loaded.model, engine.loaded.tokenizer, texts, progress=False,
                                      up_to_layer=up_to_layer)
    return run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    engine = SelfGuard.from_pretrained(progress=False)
    prompts = prompt_mix(args.prompts)
    probe = engine.vector.probe
    fired = sum(score >= 0 for score in engine.awareness(prompts)) / len(prompts)

    def generate(mode: str) -> Callable[[], None]:
        return in_batches(lambda b: engine.batch(b, mode=mode, max_new_tokens=args.tokens), prompts, args.batch_size)

    seconds = {f"generate {mode}": best(generate(mode), args.repeats) for mode in ("plain", "self-guard", "guarded")}
    seconds |= {
        "probe pass (to the probe layer)": best(in_batches(probe_pass(engine, probe.layer), prompts, args.batch_size),
                                                args.repeats),
        "probe pass (every layer)": best(in_batches(probe_pass(engine, None), prompts, args.batch_size), args.repeats),
        "prefill plain": best(in_batches(prefill(engine, Mode.PLAIN), prompts, args.batch_size), args.repeats),
        "prefill self-guard": best(in_batches(prefill(engine, Mode.SELF_GUARD), prompts, args.batch_size),
                                   args.repeats),
    }
    per_prompt = {name: value / len(prompts) for name, value in seconds.items()}
    strategies = {  # extra seconds per prompt over ungated Self-Guard's own work
        "separate probe pass to the probe layer (shipped)": per_prompt["probe pass (to the probe layer)"],
        "separate probe pass through every layer": per_prompt["probe pass (every layer)"],
        # a fired row throws its plain prefill away and prefills again as self-guard
        "probe in a cached plain prefill, second prefill when fired": fired * per_prompt["prefill plain"],
    }
    figures = {
        "date": date.today().isoformat(), "model": engine.loaded.name, "prompts": len(prompts),
        "tokens": args.tokens, "batch_size": args.batch_size, "repeats": args.repeats,
        "probe_layer": probe.layer, "layers": engine.num_layers, "gate_fired_share": round(fired, 3),
        "seconds_per_prompt": {k: round(v, 4) for k, v in per_prompt.items()},
        "ratios": {
            "guarded / self-guard": round(seconds["generate guarded"] / seconds["generate self-guard"], 3),
            "guarded / plain": round(seconds["generate guarded"] / seconds["generate plain"], 3),
            "probe pass / plain prefill": round(
                seconds["probe pass (to the probe layer)"] / seconds["prefill plain"], 3),
            "probe pass to its layer / through every layer": round(
                seconds["probe pass (to the probe layer)"] / seconds["probe pass (every layer)"], 3),
        },
        "gate_extra_seconds_per_prompt": {k: round(v, 4) for k, v in strategies.items()},
        "gate_extra_share_of_guarded_generation": {
            k: round(v / per_prompt["generate guarded"], 4) for k, v in strategies.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "guarded.json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    lines = [f"# Cost of the awareness gate ({figures['date']}, {engine.loaded.name}, {len(prompts)} prompts, "
             f"{args.tokens} tokens, batches of {args.batch_size}, gate fired on {fired:.0%})", "",
             "| measured | s/prompt |", "|---|---|"]
    lines += [f"| {name} | {value:.4f} |" for name, value in per_prompt.items()]
    lines += ["", "| ratio | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in figures["ratios"].items()]
    lines += ["", "| gate strategy | extra s/prompt | share of a guarded generation |", "|---|---|---|"]
    lines += [f"| {name} | {value:.4f} | {figures['gate_extra_share_of_guarded_generation'][name]:.1%} |"
              for name, value in strategies.items()]
    (args.out / "guarded.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
