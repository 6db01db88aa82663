"""Argument types, the option groups several commands share, and the checks on which options apply.

Torch-free, like every module the parser is built from, so that ``--help`` and argument errors
answer at once.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import SelfGuardError
from ..settings import SCOPES, Mode


class CliError(SelfGuardError):
    """A problem with what was asked on the command line (file not writable, bad combination)."""


# --------------------------------------------------------------------------- argument types


def parse_layers(text: str) -> list[int]:
    """``"18,19,20"``, ``"18-20"`` or a mix (``"5,18-20"``) -> sorted unique layer indices."""
    problem = (f"invalid layer list {text!r}: give decoder-layer indices separated by commas, "
               "with ranges as FIRST-LAST, e.g. 18,19,20 or 18-20")
    layers: set[int] = set()
    parts = [part.strip() for part in text.split(",")]
    if not text.strip() or any(not part for part in parts):
        raise argparse.ArgumentTypeError(problem)
    for part in parts:
        first, dash, last = part.partition("-")
        try:
            start = int(first)
            end = int(last) if dash else start
        except ValueError:
            raise argparse.ArgumentTypeError(problem) from None
        if start < 0 or end < 0:
            raise argparse.ArgumentTypeError(f"{problem} (indices start at 0)")
        if end < start:
            raise argparse.ArgumentTypeError(f"invalid layer range {part!r} in {text!r}: the first layer must not "
                                             f"be above the last, e.g. {end}-{start}")
        layers.update(range(start, end + 1))
    return sorted(layers)


def finite_float(what: str, *, minimum: float | None = None) -> Callable[[str], float]:
    """An argparse type for option `what`: a finite number, at least `minimum` if given."""
    def convert(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a number, got {text!r}") from None
        if not math.isfinite(value):
            raise argparse.ArgumentTypeError(f"{what} must be a finite number, got {text!r} (e.g. 0.6)")
        if minimum is not None and value < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be at least {minimum:g}, got {text!r}")
        return value

    return convert


def int_at_least(what: str, minimum: int) -> Callable[[str], int]:
    """An argparse type for option `what`: a whole number >= `minimum`."""
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be at least {minimum}, got {value}")
        return value

    return convert


def threads(text: str) -> int | str:
    """`auto` (the library's choice) or a whole number >= 1."""
    return text if text == "auto" else int_at_least("--threads", 1)(text)


def format_layers(layers: Iterable[int]) -> str:
    """[18, 19, 20, 25] -> "18-20,25"."""
    ordered = sorted(set(layers))
    runs: list[str] = []
    start = prev = None
    for layer in [*ordered, None]:
        if start is not None and prev is not None and (layer is None or layer != prev + 1):
            runs.append(str(start) if start == prev else f"{start}-{prev}")
            start = None
        if layer is not None and start is None:
            start = layer
        prev = layer
    return ",".join(runs)


# --------------------------------------------------------------------------- option groups


def output_options() -> argparse.ArgumentParser:
    """-v / -q, shared by every command, including those that load no model."""
    output = argparse.ArgumentParser(add_help=False)
    out = output.add_argument_group("output")
    out.add_argument("-v", "--verbose", action="count", default=0, help="log more to stderr (-vv for debug)")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return output


def common_options() -> argparse.ArgumentParser:
    """The model and steering options of every command that loads a model (read by `load_engine`)."""
    common = argparse.ArgumentParser(add_help=False, parents=[output_options()])

    model = common.add_argument_group("model")
    model.add_argument("--model", metavar="SOURCE",
                       help="hub id, local model directory or .gguf file (default: the embedded SmolLM2-135M)")
    model.add_argument("--allow-download", action="store_true",
                       help="let a hub id be downloaded (otherwise only the local HF cache is used)")
    model.add_argument("--runtime", choices=("transformers", "llama.cpp"), default="transformers",
                       help="transformers (default: PyTorch, any model) or llama.cpp (a .gguf file as it is, "
                            "faster on a CPU; needs the llamacpp extra)")
    model.add_argument("--dtype", default="float32", help="float32 (default), bfloat16, float16 or auto")
    model.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:1, mps ...")
    model.add_argument("--threads", type=threads, metavar="N", default="auto",
                       help="torch CPU threads (default: 1 for models under 1B parameters on the CPU, "
                       "unless OMP_NUM_THREADS is set; else torch's own choice)")
    model.add_argument("--cache-dir", metavar="DIR",
                       help="cache for dequantized models and vectors (default: $SELFGUARD_CACHE_DIR or "
                            "~/.cache/selfguard-guardrails)")

    steering = common.add_argument_group("steering")
    steering.add_argument("--vector", metavar="PATH", help="steering vector file (from `selfguard extract`)")
    steering.add_argument("--layers", type=parse_layers, metavar="LIST",
                          help="decoder layers to steer, e.g. 18,19,20 or 18-20")
    steering.add_argument("--strength", type=finite_float("--strength"), metavar="LAMBDA",
                          help="steering strength λ, e.g. 0.6")
    steering.add_argument("--gate-strength", type=finite_float("--gate-strength"), metavar="LAMBDA",
                          help="guarded mode: λ when the awareness gate fires (default: the vector file's, else "
                               "the steering λ)")
    steering.add_argument("--below-gate", choices=("plain", "prompt"),
                          help="guarded mode: how prompts the gate does not flag run (default: the vector file's, "
                               "else plain)")
    steering.add_argument("--gate-threshold", type=finite_float("--gate-threshold"), metavar="SCORE",
                          help="guarded mode: fire the gate at this probe score instead of the probe's own "
                               "threshold (see `selfguard info`)")
    steering.add_argument("--soft-gate", type=finite_float("--soft-gate", minimum=0), metavar="WIDTH",
                          help="guarded mode: λ grows from 0 at the threshold to full at WIDTH probe units above "
                               "it (default: a hard gate)")
    steering.add_argument("--scope", choices=SCOPES, help="steer all positions, generated tokens only, or the "
                          "last prompt token and the generated ones (answer); default: the setting in the vector "
                          "file, else generated")
    steering.add_argument("--steer-tokens", type=int_at_least("--steer-tokens", 1), metavar="N",
                          help="steer only the first N generated tokens (scopes generated and answer; default: "
                               "the vector file's setting, else all)")
    steering.add_argument("--repetition-penalty", type=finite_float("--repetition-penalty", minimum=1),
                          metavar="X", help="penalise tokens a steered answer already used, e.g. 1.15 (1: off; "
                                            "default: the vector file's setting, else 1)")
    steering.add_argument("--refusal-stop", choices=("on", "off"),
                          help="end a steered answer after its first sentence when that sentence is a refusal "
                               "(default on; off keeps decoding, e.g. to measure what it prevents)")
    steering.add_argument("--allow-negative-strength", action="store_true",
                          help="research only: accept a negative --strength/--gate-strength, which steers away from "
                               "safety (the model complies with harmful requests)")
    steering.add_argument("--thinking", choices=("on", "off"),
                          help="switch the chat template's thinking on/off (default: the template's own)")
    steering.add_argument("--think-in-tags", action="store_true",
                          help="ask the model to reason inside <think> tags (models without native thinking)")
    return common


def generation_options(parser: argparse.ArgumentParser, *, max_new_tokens: int, sampling: bool = True) -> None:
    """The token budget, and unless `sampling` is False the sampling options, of a command that generates."""
    group = parser.add_argument_group("generation")
    group.add_argument("--max-new-tokens", type=int_at_least("--max-new-tokens", 1), default=max_new_tokens,
                       metavar="N", help=f"token budget per answer (default {max_new_tokens})")
    if not sampling:
        return
    group.add_argument("--min-new-tokens", type=int_at_least("--min-new-tokens", 0), default=0, metavar="N",
                       help="do not stop before this many tokens")
    group.add_argument("--temperature", type=finite_float("--temperature", minimum=0.0), default=0.0,
                       help="sampling temperature; 0 = greedy (default)")
    group.add_argument("--top-p", type=finite_float("--top-p"), default=1.0, help="nucleus sampling (default 1)")
    group.add_argument("--seed", type=int, help="random seed for sampling")
    group.add_argument("--stop", action="append", default=[], metavar="TEXT",
                       help="stop when this text appears (repeatable)")


def generation_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """The options of `generation_options` as the engine's generate/stream/batch keywords."""
    return {"max_new_tokens": args.max_new_tokens, "min_new_tokens": args.min_new_tokens,
            "temperature": args.temperature, "top_p": args.top_p, "stop": args.stop or None, "seed": args.seed}


# --------------------------------------------------------------------------- which options apply

MODE_NAMES: tuple[str, ...] = tuple(m.value for m in Mode)  # the --mode choices, in the library's order
STEERING_FLAGS = {"layers": "--layers", "strength": "--strength", "scope": "--scope", "steer_tokens": "--steer-tokens",
                  "repetition_penalty": "--repetition-penalty", "refusal_stop": "--refusal-stop"}
GATE_FLAGS = {"gate_strength": "--gate-strength", "below_gate": "--below-gate", "gate_threshold": "--gate-threshold",
              "soft_gate": "--soft-gate"}
STEERED_MODES = ("steer", "self-guard", "guarded")


def given_flags(args: argparse.Namespace, flags: dict[str, str]) -> list[str]:
    """The flags of `flags` (attribute -> flag) that were given on the command line."""
    return [flag for name, flag in flags.items() if getattr(args, name, None) is not None]


def listed_flags(flags: list[str]) -> str:
    """The subject of a sentence about `flags`: "--a is" or "--a, --b are"."""
    return f"{flags[0]} is" if len(flags) == 1 else f"{', '.join(flags)} are"


def refuse_unused_options(args: argparse.Namespace, modes: Iterable[str]) -> None:
    """Every steering or gate option given must change what runs in `modes`: one that would
    change nothing is refused, naming it and the mode, instead of being silently ignored."""
    modes = sorted(set(modes))
    named = f"mode {', '.join(modes)}" if len(modes) == 1 else f"modes {', '.join(modes)}"
    steering = given_flags(args, STEERING_FLAGS) + (["--vector"] if getattr(args, "vector", None) else [])
    if steering and not set(modes) & set(STEERED_MODES):
        raise CliError(f"{listed_flags(steering)} not used in {named}, which does not steer: drop it, or choose a "
                       f"steered mode (--mode {', '.join(STEERED_MODES)}).")
    gate = given_flags(args, GATE_FLAGS)
    if gate and "guarded" not in modes:
        raise CliError(f"{listed_flags(gate)} for the awareness gate of mode guarded, not used in {named}: drop it, "
                       "or use --mode guarded.")
    if modes == ["guarded"] and args.strength is not None and args.gate_strength is not None:
        raise CliError("In mode guarded, --strength sets the λ a fired gate applies unless --gate-strength does; "
                       "both were given, so --strength would change nothing: drop one of them.")
