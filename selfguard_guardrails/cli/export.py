"""`selfguard export VECTOR --format llama.cpp --out FILE.gguf`: a steering vector for another
tool, with the options that apply it there."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .console import write_line
from .options import format_layers, parse_layers


def add_export_command(commands: Any, output: argparse.ArgumentParser) -> None:
    export = commands.add_parser("export", parents=[output], help="write a steering vector for llama.cpp's tools")
    export.add_argument("vector", metavar="VECTOR", help="steering vector file (shipped, or from `selfguard extract`)")
    export.add_argument("--format", choices=("llama.cpp",), required=True,
                        help="llama.cpp: a control-vector GGUF for llama-server / llama-cli")
    export.add_argument("--out", "-o", required=True, metavar="FILE.gguf", help="where to write it")
    export.add_argument("--layers", type=parse_layers, metavar="LIST",
                        help="layers to export (default: the setting recorded in the vector file)")
    export.add_argument("--strength", type=float, metavar="λ",
                        help="the scale to print for llama.cpp (default: the recorded setting's λ)")
    export.add_argument("--model-hint", default="llama", help="llama.cpp architecture name stored in the file")
    export.set_defaults(func=cmd_export)


def cmd_export(args: argparse.Namespace) -> int:
    from ..errors import InvalidSettingError
    from ..method.llama_cpp_export import export_control_vector
    from ..method.prompting import SafetyPrompt
    from ..method.vector import SteeringVector, recorded_setting

    vector = SteeringVector.load(args.vector)
    recorded = recorded_setting(vector)
    layers = tuple(args.layers) if args.layers else (recorded.layers if recorded else ())
    strength = args.strength if args.strength is not None else (recorded.strength if recorded else None)
    if not layers or strength is None:
        raise InvalidSettingError(f"{args.vector} records no steering setting: give --layers and --strength.")
    exported = export_control_vector(vector, args.out, layers=layers, strength=strength, model_hint=args.model_hint)
    out = sys.stdout
    write_line(out, f"wrote {exported.path}: layers {format_layers(list(exported.layers))}, λ {strength:g}")
    write_line(out, "llama.cpp options: " + " ".join(exported.options()))
    write_line(out, "for example:       " + exported.command_line())
    write_line(out, "send this system message with every request (the paper's safety prompt):")
    write_line(out, "  " + SafetyPrompt().system)
    write_line(out, "and append the reminder to each user turn: " + SafetyPrompt().reminder)
    write_line(out, "note: llama.cpp applies the vector to every request and every token (the paper's self-guard on "
                    "all prompts, scope all): no awareness gate and no per-request modes, which need this library "
                    "(`runtime='llama.cpp'`).")
    return 0
