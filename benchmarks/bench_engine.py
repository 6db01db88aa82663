"""Engine benchmark: decode tokens/s plain vs steered, load, extraction, memory and threads.

Everything is measured in one run and compared against a baseline from the same run, so the
ratios stay meaningful on any machine. Progress goes to stderr, the table to stdout, and the
numbers to ``<out>/engine-<date>.json`` plus ``<out>/latest.json`` (``-quick`` names with --quick).

    python benchmarks/bench_engine.py [--quick] [--pairs 5] [--tokens 64] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
import transformers

import selfguard_guardrails
from selfguard_guardrails.engine import SelfGuard
from selfguard_guardrails.method.extraction import extract_steering_vector
from selfguard_guardrails.method.prompt_sets import calibration_prompts
from selfguard_guardrails.method.vector import SteeringVector
from selfguard_guardrails.runtime.layers import decoder_layers
from selfguard_guardrails.runtime.loading import LoadedModel, set_torch_threads
from selfguard_guardrails.settings import SteeringSetting

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
STRENGTH = 0.05  # small, so the steered text stays ordinary; only the cost of the hooks matters
LAYER_SETS: dict[str, tuple[int, ...]] = {"3 layers (18-20)": (18, 19, 20), "30 layers (0-29)": tuple(range(30))}
TARGET_RATIO_30 = 0.985
EXTRACTION_BATCH = 16
CHILD_LOAD = """
import json, resource, sys, time
from selfguard_guardrails.runtime.loading import load_model
started = time.perf_counter()
load_model(None, cache_dir=sys.argv[1], progress=False)
seconds = time.perf_counter() - started
print(json.dumps({"seconds": seconds, "peak_rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (ru_maxrss is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def child_load(cache_dir: Path) -> dict[str, float]:
    """Time `load_model(None, cache_dir=...)` inside a fresh interpreter (imports not counted)."""
    done = subprocess.run([sys.executable, "-c", CHILD_LOAD, str(cache_dir)], capture_output=True, text=True,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"The load subprocess failed ({done.returncode}):\n{done.stderr[-2000:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    return {"seconds": measured["seconds"], "peak_rss_mib": measured["peak_rss_kib"] / 1024}


def bench_load(cache_dir: Path) -> dict[str, Any]:
    log("load: cold (dequantizes the GGUF into a fresh cache dir, in a subprocess)...")
    cold = child_load(cache_dir)
    log(f"load: cold {cold['seconds']:.2f} s; cached (same dir, fresh subprocess)...")
    cached = child_load(cache_dir)
    log(f"load: cached {cached['seconds']:.2f} s")
    return {"cold_seconds": cold["seconds"], "cached_seconds": cached["seconds"],
            "cached_vs_cold": cached["seconds"] / cold["seconds"],
            "cold_child_peak_rss_mib": cold["peak_rss_mib"], "cached_child_peak_rss_mib": cached["peak_rss_mib"]}


def bench_extraction(loaded: LoadedModel, count: int) -> dict[str, Any]:
    prompts = calibration_prompts()[:count]
    log(f"extraction: {len(prompts)} calibration prompts, batch size {EXTRACTION_BATCH}...")
    started = time.perf_counter()
    extract_steering_vector(loaded.model, loaded.tokenizer, prompts, batch_size=EXTRACTION_BATCH,
                            model_fingerprint=loaded.fingerprint, model_name=loaded.name, progress=False)
    seconds = time.perf_counter() - started
    log(f"extraction: {seconds:.2f} s")
    return {"prompts": len(prompts), "batch_size": EXTRACTION_BATCH, "seconds": seconds,
            "prompts_per_second": len(prompts) / seconds}


def unit_vector(loaded: LoadedModel) -> SteeringVector:
    """A seeded random unit direction per layer: the cost of steering does not depend on its values,
    and a vector of our own keeps the decode runs (and their memory peak) apart from extraction."""
    layers = len(decoder_layers(loaded.model))
    hidden = int(loaded.model.config.hidden_size)
    generator = torch.Generator().manual_seed(0)
    directions = {i: torch.nn.functional.normalize(torch.randn(hidden, generator=generator), dim=0)
                  for i in range(layers)}
    return SteeringVector(directions=directions, model_fingerprint=loaded.fingerprint, num_layers=layers,
                          hidden_size=hidden, method="benchmark-random-unit", model_name=loaded.name)


def decode_rate(engine: SelfGuard, mode: str, tokens: int) -> float:
    """Decode tokens/s of one greedy batch-1 generation of exactly `tokens` tokens (prefill excluded)."""
    result = engine.generate(PROMPT, mode=mode, max_new_tokens=tokens, min_new_tokens=tokens)
    if result.usage.output_tokens != tokens:
        raise RuntimeError(f"Expected {tokens} output tokens, got {result.usage.output_tokens}.")
    # The first token comes out of the prefill pass; decode_seconds times the other tokens - 1.
    return (result.usage.output_tokens - 1) / result.timings.decode_seconds


def alternating_pairs(engine: SelfGuard, pairs: int, tokens: int, label: str) -> dict[str, Any]:
    """(plain, steered) pairs in strict alternation on one engine: only the steering hooks differ."""
    plain: list[float] = []
    steered: list[float] = []
    for index in range(pairs):
        plain.append(decode_rate(engine, "plain", tokens))
        steered.append(decode_rate(engine, "steer", tokens))
        log(f"decode {label}: pair {index + 1}/{pairs} plain {plain[-1]:.1f} tok/s, "
            f"steered {steered[-1]:.1f} tok/s, ratio {steered[-1] / plain[-1]:.3f}")
    ratios = [s / p for p, s in zip(plain, steered, strict=True)]
    return {"plain_tokens_per_second": plain, "steered_tokens_per_second": steered, "ratios": ratios,
            "median_plain_tokens_per_second": statistics.median(plain),
            "median_steered_tokens_per_second": statistics.median(steered),
            "median_ratio": statistics.median(ratios)}


def steered_engine(loaded: LoadedModel, vector: SteeringVector, layers: tuple[int, ...]) -> SelfGuard:
    return SelfGuard(loaded, vector=vector, setting=SteeringSetting(layers=layers, strength=STRENGTH),
                     progress=False)


def bench_decode(loaded: LoadedModel, vector: SteeringVector, pairs: int, tokens: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for label, layers in LAYER_SETS.items():
        results[label] = alternating_pairs(steered_engine(loaded, vector, layers), pairs, tokens, label)
    last = results[list(LAYER_SETS)[-1]]
    last["target_ratio"] = TARGET_RATIO_30
    last["meets_target"] = last["median_ratio"] >= TARGET_RATIO_30
    return results


def bench_gate(engine: SelfGuard, pairs: int, tokens: int) -> dict[str, Any]:
    """What the awareness gate adds to a call: one forward pass over the prompt, against a whole
    plain generation of `tokens` tokens, alternating."""
    probe: list[float] = []
    generation: list[float] = []
    for _ in range(pairs):
        started = time.perf_counter()
        engine.awareness([PROMPT])
        probe.append(time.perf_counter() - started)
        result = engine.generate(PROMPT, mode="plain", max_new_tokens=tokens, min_new_tokens=tokens)
        generation.append(result.timings.total_seconds)
    return {"probe_seconds": probe, "generation_seconds": generation,
            "median_probe_seconds": statistics.median(probe),
            "median_generation_seconds": statistics.median(generation),
            "probe_vs_generation": statistics.median(probe) / statistics.median(generation)}


def bench_threads(loaded: LoadedModel, vector: SteeringVector, pairs: int, tokens: int) -> dict[str, Any]:
    engine = steered_engine(loaded, vector, LAYER_SETS["30 layers (0-29)"])
    original = torch.get_num_threads()
    results: dict[str, Any] = {}
    try:
        for threads in (1, 2):
            set_torch_threads(threads)
            decode_rate(engine, "plain", tokens)  # settle the new thread pool before timing
            results[f"{threads} thread{'s' if threads > 1 else ''}"] = alternating_pairs(
                engine, pairs, tokens, f"{threads} thread(s), 30 layers")
    finally:
        set_torch_threads(original)
    one, two = results["1 thread"], results["2 threads"]
    results["two_vs_one_plain"] = two["median_plain_tokens_per_second"] / one["median_plain_tokens_per_second"]
    results["two_vs_one_steered"] = two["median_steered_tokens_per_second"] / one["median_steered_tokens_per_second"]
    return results


def environment() -> dict[str, Any]:
    return {"date": datetime.now().isoformat(timespec="seconds"), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "selfguard_guardrails": selfguard_guardrails.__version__, "machine": platform.machine(),
            "platform": platform.platform(), "cpu_count": os.cpu_count(),
            "torch_threads_default": torch.get_num_threads(), "load_average_1min_start": load_average()}


def table(report: dict[str, Any]) -> str:
    env, settings, load = report["environment"], report["settings"], report["load"]
    lines = [f"selfguard-guardrails {env['selfguard_guardrails']} engine benchmark, {env['date']}"
             f"{' (QUICK: tiny sizes, not for comparison)' if settings['quick'] else ''}",
             f"python {env['python']}, torch {env['torch']}, transformers {env['transformers']}, {env['machine']}, "
             f"{env['cpu_count']} CPUs, torch threads {env['torch_threads_default']}, load avg 1 min "
             f"{env['load_average_1min_start']} -> {env['load_average_1min_end']}",
             f"decode: {settings['pairs']} alternating pairs, {settings['tokens']} tokens, batch 1, greedy, "
             f"strength {settings['strength']}", "",
             f"{'measurement':<52}{'value':>10}  {'ratio':>8}",
             "-" * 72]

    def row(name: str, value: str, ratio: str = "") -> None:
        lines.append(f"{name:<52}{value:>10}  {ratio:>8}")

    def decode_rows(prefix: str, result: dict[str, Any]) -> None:
        row(f"{prefix} plain tok/s (median)", f"{result['median_plain_tokens_per_second']:.1f}")
        row(f"{prefix} steered tok/s (median)", f"{result['median_steered_tokens_per_second']:.1f}",
            f"{result['median_ratio']:.3f}")
        lines.append("    steered/plain per pair: " + ", ".join(f"{r:.3f}" for r in result["ratios"]))

    for label, result in report["decode"].items():
        decode_rows(f"decode {label}:", result)
    verdict = "meets" if report["decode"]["30 layers (0-29)"]["meets_target"] else "MISSES"
    lines.append(f"    30-layer median ratio {verdict} the target >= {TARGET_RATIO_30}")
    row("load cold (dequantize), s", f"{load['cold_seconds']:.2f}")
    row("load cached (fresh process), s", f"{load['cached_seconds']:.2f}", f"{load['cached_vs_cold']:.3f}")
    row("load cached (this process, engine), s", f"{report['engine_load_seconds']:.2f}")
    extraction = report["extraction"]
    row(f"extraction ({extraction['prompts']} prompts, batch {extraction['batch_size']}), prompts/s",
        f"{extraction['prompts_per_second']:.2f}")
    memory = report["memory"]
    row("peak RSS after load, MiB", f"{memory['peak_rss_after_load_mib']:.0f}")
    row("peak RSS after decode, MiB", f"{memory['peak_rss_after_decode_mib']:.0f}")
    row("peak RSS after extraction, MiB", f"{memory['peak_rss_after_extraction_mib']:.0f}")
    row("peak RSS, cold-load child, MiB", f"{load['cold_child_peak_rss_mib']:.0f}")
    row("peak RSS, cached-load child, MiB", f"{load['cached_child_peak_rss_mib']:.0f}")
    gate = report["gate"]
    row(f"awareness gate (probe pass), s vs {report['settings']['tokens']}-token generation",
        f"{gate['median_probe_seconds']:.3f}", f"{gate['probe_vs_generation']:.3f}")
    threads = report["threads"]
    for name in ("1 thread", "2 threads"):
        decode_rows(f"{name}, 30 layers:", threads[name])
    row("2 vs 1 thread, plain tok/s", "", f"{threads['two_vs_one_plain']:.3f}")
    row("2 vs 1 thread, steered tok/s", "", f"{threads['two_vs_one_steered']:.3f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes to check the script works (2 pairs, "
                        "8 tokens, 8 extraction prompts unless given)")
    parser.add_argument("--pairs", type=int, default=None, help="alternating plain/steered pairs (default 5)")
    parser.add_argument("--tokens", type=int, default=None, help="new tokens per generation (default 64)")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results",
                        help="where the JSON goes (default benchmarks/results)")
    args = parser.parse_args(argv)
    pairs = args.pairs or (2 if args.quick else 5)
    tokens = args.tokens or (8 if args.quick else 64)
    prompts = 8 if args.quick else 64
    if pairs < 1 or tokens < 2:
        parser.error("--pairs must be >= 1 and --tokens >= 2 (decode time excludes the first token)")

    report: dict[str, Any] = {"environment": environment(), "settings": {
        "quick": args.quick, "pairs": pairs, "tokens": tokens, "strength": STRENGTH, "prompt": PROMPT,
        "layer_sets": {k: list(v) for k, v in LAYER_SETS.items()}, "extraction_prompts": prompts}}
    with tempfile.TemporaryDirectory(prefix="selfguard-bench-") as cache:
        report["load"] = bench_load(Path(cache))
        log("engine: loading from the warm cache in this process...")
        started = time.perf_counter()
        engine = SelfGuard.from_pretrained(cache_dir=cache, progress=False)
        report["engine_load_seconds"] = time.perf_counter() - started
        memory = {"peak_rss_after_load_mib": peak_rss_mib()}
        loaded, vector = engine.loaded, unit_vector(engine.loaded)
        log("decode: warm-up (plain and 30-layer steered)...")
        warm = steered_engine(loaded, vector, LAYER_SETS["30 layers (0-29)"])
        decode_rate(warm, "plain", tokens)
        decode_rate(warm, "steer", tokens)
        report["decode"] = bench_decode(loaded, vector, pairs, tokens)
        report["threads"] = bench_threads(loaded, vector, pairs, tokens)
        log("gate: probe pass vs plain generation...")
        report["gate"] = bench_gate(engine, pairs, tokens)
        memory["peak_rss_after_decode_mib"] = peak_rss_mib()
        report["extraction"] = bench_extraction(loaded, prompts)
        memory["peak_rss_after_extraction_mib"] = peak_rss_mib()
        report["memory"] = memory
    report["environment"]["load_average_1min_end"] = load_average()

    args.out.mkdir(parents=True, exist_ok=True)
    suffix = "-quick" if args.quick else ""
    text = json.dumps(report, indent=2) + "\n"
    dated = args.out / f"engine-{datetime.now():%Y-%m-%d}{suffix}.json"
    for path in (dated, args.out / f"latest{suffix}.json"):
        path.write_text(text, encoding="utf-8")
    print(table(report))
    log(f"wrote {dated} and {args.out / f'latest{suffix}.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
