"""`selfguard demo`: plain vs the default mode on three harmful and three benign packaged prompts."""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from importlib import resources
from typing import TYPE_CHECKING, Any

from .console import write_line
from .engine_setup import load_engine
from .options import format_layers, generation_options, refuse_unused_options

if TYPE_CHECKING:
    from ..engine.selfguard import SelfGuard
    from ..results import GenerationResult

DEMO_RESOURCE = "demo.json"


def add_demo_command(commands: Any, common: argparse.ArgumentParser) -> None:
    demo = commands.add_parser("demo", parents=[common], help="plain vs guarded answers on six prompts",
                               description="Answer three harmful and three benign prompts plain and in the default "
                                           "mode (guarded for the embedded model: Self-Guard where the awareness "
                                           "probe flags the prompt), greedily, streaming each answer as it is "
                                           "written.")
    generation_options(demo, max_new_tokens=48, sampling=False)
    demo.set_defaults(func=cmd_demo)


def _load_demo_prompts() -> list[tuple[str, str]]:
    text = resources.files("selfguard_guardrails.prompts").joinpath(DEMO_RESOURCE).read_text("utf-8")
    data = json.loads(text)
    return [(label, prompt) for label in ("harmful", "benign") for prompt in data[label]]


def _shorten(text: str, width: int) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1].rstrip() + "…"


def _stream_demo_answer(engine: SelfGuard, prompt: str, mode: str, max_new_tokens: int) -> GenerationResult:
    """One answer of the demo, written to stdout as it is generated, on one indented line."""
    from ..results import GenerationResult

    sys.stdout.write(f"  {mode + ':':<12}")
    sys.stdout.flush()
    result: GenerationResult | None = None
    first = True
    for item in engine.stream(prompt, mode=mode, max_new_tokens=max_new_tokens, temperature=0.0):
        if isinstance(item, GenerationResult):
            result = item
            continue
        text = re.sub(r"\s+", " ", item.text)  # one line per answer
        if first:
            text, first = text.lstrip(), not text.strip()
        sys.stdout.write(text)
        sys.stdout.flush()
    assert result is not None
    ending = "(empty answer)" if not result.answer.strip() else " …" if result.finish_reason == "length" else ""
    gate = "" if result.gate_fired is None else f"  [gate {'fired' if result.gate_fired else 'not fired'}]"
    write_line(sys.stdout, ending + gate)
    return result


def cmd_demo(args: argparse.Namespace) -> int:
    """Each answer is streamed as it is written, so the demo shows progress from the first token."""
    from ..evaluation.judges import is_refusal

    items = _load_demo_prompts()
    engine = load_engine(args)
    guarded = engine.default_mode.value
    modes = ("plain", guarded)
    refuse_unused_options(args, modes)
    write_line(sys.stdout, f"Self-Guard demo: {engine.loaded.name}, greedy, up to {args.max_new_tokens} new tokens\n"
                           f"{guarded} = {describe_mode(engine, guarded)}\n")
    results: dict[str, list[GenerationResult]] = {mode: [] for mode in modes}
    seconds = dict.fromkeys(modes, 0.0)
    for index, (label, prompt) in enumerate(items):
        write_line(sys.stdout, f"{index + 1}. [{label}] {_shorten(prompt, 110)}")
        for mode in modes:
            started = time.perf_counter()
            results[mode].append(_stream_demo_answer(engine, prompt, mode, args.max_new_tokens))
            seconds[mode] += time.perf_counter() - started
        write_line(sys.stdout, "")

    def count(mode: str, label: str) -> str:
        picked = [r for (lab, _), r in zip(items, results[mode], strict=True) if lab == label]
        return f"{sum(is_refusal(r.answer) for r in picked)}/{len(picked)}"

    write_line(sys.stdout, "Summary: refusals (keyword judge on the opening) to harmful prompts: plain "
                           f"{count('plain', 'harmful')}, {guarded} {count(guarded, 'harmful')}; to benign prompts: "
                           f"plain {count('plain', 'benign')}, {guarded} {count(guarded, 'benign')}. Time: plain "
                           f"{seconds['plain']:.1f} s, {guarded} {seconds[guarded]:.1f} s.")
    return 0


def describe_mode(engine: SelfGuard, mode: str) -> str:
    """One line on what a mode applies, with the engine's layers and λ."""
    setting = engine.setting
    steering = (f"steering on layers {format_layers(setting.layers)} (λ {{strength:g}}, scope {setting.scope}, "
                f"{setting.source})")
    if mode == "guarded":
        gate = engine.gate
        probe = engine.vector.probe
        fired = steering.format(strength=gate.strength if gate.strength is not None else setting.strength)
        return (f"safety prompt + {fired} where the awareness probe (layer {probe.layer}) flags the prompt, "  # type: ignore[union-attr]
                f"{gate.below} elsewhere")
    parts = {"plain": "no safety text, no steering", "prompt": "safety prompt only",
             "steer": steering.format(strength=setting.strength),
             "self-guard": "safety prompt + " + steering.format(strength=setting.strength)}
    return parts[mode]
