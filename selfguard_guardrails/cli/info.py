"""`selfguard info`: what is loaded, how it is steered and gated, as a table or JSON."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from .console import write_line
from .engine_setup import load_engine
from .options import format_layers


def add_info_command(commands: Any, common: argparse.ArgumentParser) -> None:
    info = commands.add_parser("info", parents=[common], help="what is loaded and how it is steered")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=cmd_info)


def cmd_info(args: argparse.Namespace) -> int:
    engine = load_engine(args)
    info = engine.info()
    if args.json:
        write_line(sys.stdout, json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    vector, steering = info["vector"], info["steering"]
    norms = "  ".join(f"{layer}: {value:.2f}" for layer, value in vector["norms"].items())
    rows = [
        ("model", info["model"]),
        ("source", info["source"]),
        ("fingerprint", info["fingerprint"]),
        ("architecture", info["architecture"]),
        ("layers", info["layers"]),
        ("hidden size", info["hidden_size"]),
        ("context window", f"{info['context_window']} tokens"),
        ("default mode", info["default_mode"]),
        ("vector", f"{vector['method']} against the {vector['baseline']} baseline, from {vector['prompts']} prompts"
                   + (f" (library {vector['library_version']})" if vector.get("library_version") else "")),
        ("steering", f"layers {format_layers(steering['layers'])}, λ {steering['strength']:g}, "
                     f"scope {steering['scope']}"
                     + (f" (first {steering['max_tokens']} tokens)" if steering.get("max_tokens") else "")
                     + (f", repetition penalty {steering['repetition_penalty']:g}"
                        if steering.get("repetition_penalty", 1) != 1 else "")
                     + ("" if steering.get("stop_after_refusal", True) else ", refusals not cut")
                     + f" ({steering['source']})"),
        ("vector norms", norms or "-"),
        ("awareness gate", (f"{gate['probe_method']} probe at layer {gate['probe_layer']} "
                            f"(held-out AUC {gate['probe_auc']}); guarded: λ {gate['strength']:g} when it fires, "
                            f"{gate['below']} below"
                            + (f", soft over {gate['soft_width']:g}" if gate["soft_width"] else "")
                            + f" ({gate['source']})"
                            if (gate := info["gate"])["probe"] else "none (no probe: guarded mode unavailable)")),
        ("leak checks", (", ".join(f"{kind} {action}" for kind, action in info["leakage"]["policy"].items())
                         if info["leakage"]["checks"] else "off")),
        ("torch threads", info["torch_threads"]),
    ]
    width = max(len(name) for name, _ in rows) + 2
    sys.stdout.write("".join(f"{name + ':':<{width}}{value}\n" for name, value in rows))
    return 0
