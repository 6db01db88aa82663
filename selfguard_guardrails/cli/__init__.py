"""The `selfguard` command: demo, generate, chat, extract, info, eval, calibrate.

stdout carries only results (answers, JSON records, reports); logs, progress bars and the
reasoning trace of a streamed answer go to stderr. A `SelfGuardError` prints
``error: <message>`` and exits 2, as argparse does for bad arguments; Ctrl-C exits 130.
Heavy modules (torch, transformers) are imported only once a command needs the model, so
argument errors and ``--help`` answer at once.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
import sys
import time
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from importlib import resources
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .. import __version__
from ..errors import InvalidMessagesError, SelfGuardError
from ..evaluation.judges import is_refusal
from ..method.prompt_sets import calibration_prompts, read_prompts

if TYPE_CHECKING:
    from ..engine.selfguard import SelfGuard
    from ..results import GenerationResult

logger = logging.getLogger("selfguard_guardrails.cli")

# Kept literal so that parsing arguments does not import torch; tests check it against `Mode`.
MODES = ("plain", "prompt", "steer", "self-guard", "guarded")
SCOPES = ("all", "generated", "answer")
PROBE_METHODS = ("logistic", "mean_difference")
METHODS = ("mean_difference", "pca")
BASELINE_NAMES = ("neutral", "bare")  # prompting.BASELINES, named here so --help needs no heavy import
DEMO_RESOURCE = "demo.json"

_DIM, _RESET = "\033[2m", "\033[0m"


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


def _finite_float(what: str, *, minimum: float | None = None):
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


def _int_at_least(what: str, minimum: int):
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{what} must be a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{what} must be at least {minimum}, got {value}")
        return value

    return convert


def _threads(text: str) -> int | str:
    """`auto` (the library's choice) or a whole number >= 1."""
    return text if text == "auto" else _int_at_least("--threads", 1)(text)


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


# --------------------------------------------------------------------------- parser


def _output_options() -> argparse.ArgumentParser:
    """-v / -q, shared by every command, including those that load no model."""
    output = argparse.ArgumentParser(add_help=False)
    out = output.add_argument_group("output")
    out.add_argument("-v", "--verbose", action="count", default=0, help="log more to stderr (-vv for debug)")
    out.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    return output


def _common_options() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, parents=[_output_options()])

    model = common.add_argument_group("model")
    model.add_argument("--model", metavar="SOURCE",
                       help="hub id, local model directory or .gguf file (default: the embedded SmolLM2-135M)")
    model.add_argument("--allow-download", action="store_true",
                       help="let a hub id be downloaded (otherwise only the local HF cache is used)")
    model.add_argument("--dtype", default="float32", help="float32 (default), bfloat16, float16 or auto")
    model.add_argument("--device", default="cpu", help="torch device: cpu (default), cuda, cuda:1, mps ...")
    model.add_argument("--threads", type=_threads, metavar="N", default="auto",
                       help="torch CPU threads (default: 1 for models under 1B parameters on the CPU, "
                       "unless OMP_NUM_THREADS is set; else torch's own choice)")
    model.add_argument("--cache-dir", metavar="DIR",
                       help="cache for dequantized models and vectors (default: $SELFGUARD_CACHE_DIR or "
                            "~/.cache/selfguard-guardrails)")

    steering = common.add_argument_group("steering")
    steering.add_argument("--vector", metavar="PATH", help="steering vector file (from `selfguard extract`)")
    steering.add_argument("--layers", type=parse_layers, metavar="LIST",
                          help="decoder layers to steer, e.g. 18,19,20 or 18-20")
    steering.add_argument("--strength", type=_finite_float("--strength"), metavar="LAMBDA",
                          help="steering strength λ, e.g. 0.6")
    steering.add_argument("--gate-strength", type=_finite_float("--gate-strength"), metavar="LAMBDA",
                          help="guarded mode: λ when the awareness gate fires (default: the vector file's, else "
                               "the steering λ)")
    steering.add_argument("--below-gate", choices=("plain", "prompt"),
                          help="guarded mode: how prompts the gate does not flag run (default: the vector file's, "
                               "else plain)")
    steering.add_argument("--gate-threshold", type=_finite_float("--gate-threshold"), metavar="SCORE",
                          help="guarded mode: fire the gate at this probe score instead of the probe's own "
                               "threshold (see `selfguard info`)")
    steering.add_argument("--soft-gate", type=_finite_float("--soft-gate", minimum=0), metavar="WIDTH",
                          help="guarded mode: λ grows from 0 at the threshold to full at WIDTH probe units above "
                               "it (default: a hard gate)")
    steering.add_argument("--scope", choices=SCOPES, help="steer all positions, generated tokens only, or the "
                          "last prompt token and the generated ones (answer); default: the setting in the vector "
                          "file, else generated")
    steering.add_argument("--steer-tokens", type=_int_at_least("--steer-tokens", 1), metavar="N",
                          help="steer only the first N generated tokens (scopes generated and answer; default: "
                               "the vector file's setting, else all)")
    steering.add_argument("--repetition-penalty", type=_finite_float("--repetition-penalty", minimum=1),
                          metavar="X", help="penalise tokens a steered answer already used, e.g. 1.15 (1: off; "
                                            "default: the vector file's setting, else 1)")
    steering.add_argument("--allow-negative-strength", action="store_true",
                          help="research only: accept a negative --strength/--gate-strength, which steers away from "
                               "safety (the model complies with harmful requests)")
    steering.add_argument("--thinking", choices=("on", "off"),
                          help="switch the chat template's thinking on/off (default: the template's own)")
    steering.add_argument("--think-in-tags", action="store_true",
                          help="ask the model to reason inside <think> tags (models without native thinking)")
    return common


def _generation_options(parser: argparse.ArgumentParser, *, max_new_tokens: int, sampling: bool = True) -> None:
    group = parser.add_argument_group("generation")
    group.add_argument("--max-new-tokens", type=_int_at_least("--max-new-tokens", 1), default=max_new_tokens,
                       metavar="N", help=f"token budget per answer (default {max_new_tokens})")
    if not sampling:
        return
    group.add_argument("--min-new-tokens", type=_int_at_least("--min-new-tokens", 0), default=0, metavar="N",
                       help="do not stop before this many tokens")
    group.add_argument("--temperature", type=_finite_float("--temperature", minimum=0.0), default=0.0,
                       help="sampling temperature; 0 = greedy (default)")
    group.add_argument("--top-p", type=_finite_float("--top-p"), default=1.0, help="nucleus sampling (default 1)")
    group.add_argument("--seed", type=int, help="random seed for sampling")
    group.add_argument("--stop", action="append", default=[], metavar="TEXT",
                       help="stop when this text appears (repeatable)")


def build_parser() -> argparse.ArgumentParser:
    common = _common_options()
    parser = argparse.ArgumentParser(
        prog="selfguard",
        description="Self-Guard for local Hugging Face models: safety prompting + safety activation steering.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser("demo", parents=[common], help="plain vs guarded answers on six prompts",
                               description="Answer three harmful and three benign prompts plain and in the default "
                                           "mode (guarded for the embedded model: Self-Guard where the awareness "
                                           "probe flags the prompt), greedily, streaming each answer as it is "
                                           "written.")
    _generation_options(demo, max_new_tokens=48, sampling=False)
    demo.set_defaults(func=cmd_demo)

    generate = commands.add_parser("generate", parents=[common], help="answer a prompt or a file of prompts",
                                   description="Answer one prompt (streamed) or every prompt of a file "
                                               "(batched). Use - as the prompt to read it from stdin.")
    generate.add_argument("prompt", nargs="?", help="the prompt (or - for stdin)")
    generate.add_argument("--input", "-i", metavar="FILE",
                          help="prompt file: .txt (one per line), .jsonl or .json with a 'prompt' field")
    generate.add_argument("--mode", choices=MODES,
                          help="plain, prompt (safety prompt only), steer (vector only), self-guard (both), guarded "
                               "(both, where the awareness probe flags the prompt); default: the vector file's "
                               "calibrated mode, else guarded with a probe and self-guard without")
    _generation_options(generate, max_new_tokens=256)
    generate.add_argument("--batch-size", type=_int_at_least("--batch-size", 1), default=8, metavar="N",
                          help="prompts per batch for a file (default 8)")
    generate.add_argument("--json", action="store_true", help="print one JSON object per result")
    generate.add_argument("--out", metavar="FILE.jsonl", help="write one JSON record per prompt to this file")
    generate.set_defaults(func=cmd_generate)

    chat = commands.add_parser("chat", parents=[common], help="interactive chat (/reset, /mode NAME, /quit)",
                               description="Chat with the model; the conversation is kept until /reset. "
                                           "Commands: /reset, /mode NAME, /help, /quit (or Ctrl-D).")
    chat.add_argument("--mode", choices=MODES, help="starting mode (default: as for generate)")
    chat.add_argument("--system", metavar="TEXT", help="your own system message (comes after the safety text)")
    _generation_options(chat, max_new_tokens=256)
    chat.set_defaults(func=cmd_chat)

    extract = commands.add_parser("extract", parents=[common], help="build a steering vector for the model",
                                  description="Measure how the safety prompt shifts every layer and save the "
                                              "mean difference (or first principal direction) as a vector. "
                                              "--layers/--strength/--scope are recorded as its recommended "
                                              "setting.")
    extract.add_argument("--prompts", metavar="FILE", help="calibration prompts (default: the packaged set)")
    extract.add_argument("--method", choices=METHODS, default="mean_difference")
    extract.add_argument("--baseline", choices=BASELINE_NAMES, default="neutral",
                         help="what the safety prompt's shift is measured against: the same system message and "
                              "reminder slots with neutral text (default), or the bare prompt (the paper's)")
    extract.add_argument("--probe-method", choices=PROBE_METHODS, default="logistic",
                         help="how the awareness probe is fitted (default logistic; mean_difference also "
                              "learns how harmful and benign prompts happen to be phrased)")
    extract.add_argument("--batch-size", type=_int_at_least("--batch-size", 1), default=16, metavar="N")
    extract.add_argument("--output", "-o", required=True, metavar="PATH", help="where to save the vector")
    extract.set_defaults(func=cmd_extract)

    info = commands.add_parser("info", parents=[common], help="what is loaded and how it is steered")
    info.add_argument("--json", action="store_true", help="machine-readable output")
    info.set_defaults(func=cmd_info)

    from .audit import add_audit_command
    from .calibrate import add_calibrate_command
    from .eval import add_eval_command
    from .scan import add_scan_command

    add_eval_command(commands, common)
    add_calibrate_command(commands, common)
    add_scan_command(commands, _output_options())
    add_audit_command(commands, _output_options())
    return parser


# --------------------------------------------------------------------------- set-up helpers


class _StderrHandler(logging.StreamHandler):
    """A handler that always writes to the current sys.stderr (which tests and tools may swap)."""

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    package = logging.getLogger("selfguard_guardrails")
    handler = next((h for h in package.handlers if isinstance(h, _StderrHandler)), None)
    if handler is None:
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        package.addHandler(handler)
    handler.setLevel(level)
    package.setLevel(level)


def _thinking(args: argparse.Namespace) -> bool | None:
    return None if args.thinking is None else args.thinking == "on"


STEERING_FLAGS = {"layers": "--layers", "strength": "--strength", "scope": "--scope", "steer_tokens": "--steer-tokens",
                  "repetition_penalty": "--repetition-penalty"}
GATE_FLAGS = {"gate_strength": "--gate-strength", "below_gate": "--below-gate", "gate_threshold": "--gate-threshold",
              "soft_gate": "--soft-gate"}
STEERED_MODES = ("steer", "self-guard", "guarded")


def given_flags(args: argparse.Namespace, flags: dict[str, str]) -> list[str]:
    return [flag for name, flag in flags.items() if getattr(args, name, None) is not None]


def _listed(flags: list[str]) -> str:
    return f"{flags[0]} is" if len(flags) == 1 else f"{', '.join(flags)} are"


def refuse_unused_options(args: argparse.Namespace, modes: Iterable[str]) -> None:
    """Every steering or gate option given must change what runs in `modes`: one that would
    change nothing is refused, naming it and the mode, instead of being silently ignored."""
    modes = sorted(set(modes))
    named = f"mode {', '.join(modes)}" if len(modes) == 1 else f"modes {', '.join(modes)}"
    steering = given_flags(args, STEERING_FLAGS) + (["--vector"] if getattr(args, "vector", None) else [])
    if steering and not set(modes) & set(STEERED_MODES):
        raise CliError(f"{_listed(steering)} not used in {named}, which does not steer: drop it, or choose a "
                       f"steered mode (--mode {', '.join(STEERED_MODES)}).")
    gate = given_flags(args, GATE_FLAGS)
    if gate and "guarded" not in modes:
        raise CliError(f"{_listed(gate)} for the awareness gate of mode guarded, not used in {named}: drop it, or "
                       "use --mode guarded.")
    if modes == ["guarded"] and args.strength is not None and args.gate_strength is not None:
        raise CliError("In mode guarded, --strength sets the λ a fired gate applies unless --gate-strength does; "
                       "both were given, so --strength would change nothing: drop one of them.")


def _steering_overrides(args: argparse.Namespace) -> bool:
    return any(value is not None for value in (args.layers, args.strength, args.scope, args.steer_tokens,
                                               args.repetition_penalty))


def load_engine(args: argparse.Namespace, *, mode: str | None = None) -> SelfGuard:
    """Load the model named by the common options and wrap it in an engine with the steering asked for."""
    from ..engine.selfguard import SelfGuard
    from ..method.steering import SteeringVector
    from ..runtime.layers import validate_layers
    from ..runtime.loading import load_model
    from ..settings import GateSetting, SteeringSetting

    vector = SteeringVector.load(args.vector) if args.vector else None  # a bad path fails before the model loads
    loaded = load_model(args.model, dtype=args.dtype, device=args.device, threads=args.threads,
                        cache_dir=args.cache_dir, allow_download=args.allow_download, progress=not args.quiet)
    options: dict[str, Any] = {"mode": mode, "thinking": _thinking(args), "think_in_tags": args.think_in_tags,
                               "cache_dir": args.cache_dir, "progress": not args.quiet}
    engine = SelfGuard(loaded, vector=vector, **options)
    if vector is not None:
        engine.vector  # noqa: B018 - checks now that the vector fits this model
    if any(value is not None for value in (args.gate_strength, args.below_gate, args.soft_gate, args.gate_threshold)):
        recorded = engine.gate
        options["gate"] = GateSetting(
            strength=args.gate_strength if args.gate_strength is not None else recorded.strength,
            below=args.below_gate or recorded.below,
            soft_width=args.soft_gate if args.soft_gate is not None else recorded.soft_width,
            threshold=args.gate_threshold if args.gate_threshold is not None else recorded.threshold,
            source="command line", allow_negative_strength=args.allow_negative_strength)
        engine.use_gate(options["gate"])
    if args.layers is not None:
        validate_layers(args.layers, engine.num_layers)
    if not _steering_overrides(args):
        return engine
    base = None if args.layers is not None and args.strength is not None else engine.setting
    scope = args.scope or (base.scope if base is not None else "generated")
    kept_tokens = base.max_tokens if base is not None and scope != "all" else None
    setting = SteeringSetting(
        layers=tuple(args.layers if args.layers is not None else engine.setting.layers),  # base is engine.setting here
        strength=args.strength if args.strength is not None else engine.setting.strength,
        scope=scope, source="command line",
        max_tokens=args.steer_tokens if args.steer_tokens is not None else kept_tokens,
        repetition_penalty=(args.repetition_penalty if args.repetition_penalty is not None
                            else base.repetition_penalty if base is not None else 1.0),
        allow_negative_strength=args.allow_negative_strength,
    )
    return SelfGuard(loaded, vector=engine.vector if base is not None else vector, setting=setting, **options)


def _generation_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    return {"max_new_tokens": args.max_new_tokens, "min_new_tokens": args.min_new_tokens,
            "temperature": args.temperature, "top_p": args.top_p, "stop": args.stop or None, "seed": args.seed}


def _record(prompt: str, result: GenerationResult) -> dict[str, Any]:
    return {"prompt": prompt, **result.model_dump(mode="json")}


def _write_line(stream: IO[str], text: str) -> None:
    stream.write(text + "\n")
    stream.flush()


class _ReasoningEcho:
    """Shows a reasoning trace on stderr, dimmed on a terminal and prefixed otherwise."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        isatty = getattr(stream, "isatty", None)
        self.dim = bool(isatty and isatty()) and "NO_COLOR" not in os.environ
        self.open = False

    def write(self, text: str) -> None:
        if not self.open:
            self.stream.write((_DIM if self.dim else "") + "[reasoning] ")
            self.open = True
        self.stream.write(text)
        self.stream.flush()

    def close(self) -> None:
        if self.open:
            self.stream.write((_RESET if self.dim else "") + "\n")
            self.stream.flush()
            self.open = False


def _stream_answer(engine: SelfGuard, messages: Any, *, mode: str, options: dict[str, Any]) -> GenerationResult:
    """Stream one answer to stdout (reasoning to stderr) and return the final result."""
    from ..results import GenerationResult
    from ..runtime.reasoning import Channel

    echo = _ReasoningEcho(sys.stderr)
    result: GenerationResult | None = None
    stream = engine.stream(messages, mode=mode, **options)
    try:
        for item in stream:
            if isinstance(item, GenerationResult):
                result = item
            elif item.channel == Channel.REASONING:
                echo.write(item.text)
            else:
                echo.close()
                sys.stdout.write(item.text)
                sys.stdout.flush()
    finally:
        stream.close()  # type: ignore[attr-defined]  # releases the engine at once on Ctrl-C
        echo.close()
    _write_line(sys.stdout, "")
    assert result is not None
    logger.info("%d tokens (%s) in %.2f s, %.1f tokens/s", result.usage.output_tokens, result.finish_reason,
                result.timings.total_seconds, result.timings.tokens_per_second(result.usage.output_tokens))
    return result


# --------------------------------------------------------------------------- commands


def _read_prompt_file(path: str, *, minimum: int = 1) -> list[str]:
    prompts = read_prompts(path)
    if len(prompts) < minimum:
        need = "a prompt" if minimum == 1 else f"at least {minimum} prompts"
        raise InvalidMessagesError(f"The prompt file {path} has {len(prompts) or 'no'} prompts; it needs {need} "
                                   "(one per line in .txt, or a 'prompt' field per line in .jsonl).")
    return prompts


def _open_output(path: str) -> IO[str]:
    try:
        Path(path).expanduser().parent.mkdir(parents=True, exist_ok=True)
        return open(Path(path).expanduser(), "w", encoding="utf-8")
    except OSError as error:
        raise CliError(f"Cannot write {path}: {error.strerror or error}. Choose a writable path.") from error


def cmd_generate(args: argparse.Namespace) -> int:
    if (args.prompt is None) == (args.input is None):
        raise CliError("Give either a prompt or --input FILE (exactly one of them).")
    if args.input is not None:
        prompts = _read_prompt_file(args.input)
    else:
        prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
        if not prompt.strip():
            raise InvalidMessagesError("The prompt is empty: give some text to answer.")
        prompts = [prompt.strip() if args.prompt == "-" else prompt]
    options = _generation_kwargs(args)

    with ExitStack() as stack:
        out = stack.enter_context(_open_output(args.out)) if args.out else None
        engine = load_engine(args, mode=args.mode)
        args.mode = args.mode or engine.default_mode.value
        refuse_unused_options(args, [args.mode])
        if args.input is None and not args.json and out is None:
            _stream_answer(engine, prompts[0], mode=args.mode, options=options)
            return 0

        from tqdm.auto import tqdm

        show_bar = args.input is not None and not args.quiet
        bar = stack.enter_context(tqdm(total=len(prompts), unit="prompt", desc=args.mode, file=sys.stderr,
                                       disable=not show_bar, dynamic_ncols=True))
        plain_text = not args.json and out is None
        for start in range(0, len(prompts), args.batch_size):
            chunk = prompts[start:start + args.batch_size]
            results = engine.batch(chunk, mode=args.mode, **options)
            for offset, (prompt, result) in enumerate(zip(chunk, results, strict=True)):
                record = _record(prompt, result)
                if out is not None:
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                if args.json:
                    _write_line(sys.stdout, json.dumps(record, ensure_ascii=False))
                elif plain_text:
                    if result.reasoning:
                        echo = _ReasoningEcho(sys.stderr)
                        echo.write(result.reasoning)
                        echo.close()
                    _write_line(sys.stdout, f"[{start + offset + 1}] {prompt}\n{result.answer.strip()}\n")
            if out is not None:
                out.flush()
            bar.update(len(chunk))
    if args.out:
        logger.info("Wrote %d records to %s", len(prompts), args.out)
    return 0


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
    _write_line(sys.stdout, ending + gate)
    return result


def cmd_demo(args: argparse.Namespace) -> int:
    """Each answer is streamed as it is written, so the demo shows progress from the first token."""
    items = _load_demo_prompts()
    engine = load_engine(args)
    guarded = engine.default_mode.value
    modes = ("plain", guarded)
    refuse_unused_options(args, modes)
    _write_line(sys.stdout, f"Self-Guard demo: {engine.loaded.name}, greedy, up to {args.max_new_tokens} new tokens\n"
                            f"{guarded} = {describe_mode(engine, guarded)}\n")
    results: dict[str, list[GenerationResult]] = {mode: [] for mode in modes}
    seconds = dict.fromkeys(modes, 0.0)
    for index, (label, prompt) in enumerate(items):
        _write_line(sys.stdout, f"{index + 1}. [{label}] {_shorten(prompt, 110)}")
        for mode in modes:
            started = time.perf_counter()
            results[mode].append(_stream_demo_answer(engine, prompt, mode, args.max_new_tokens))
            seconds[mode] += time.perf_counter() - started
        _write_line(sys.stdout, "")

    def count(mode: str, label: str) -> str:
        picked = [r for (lab, _), r in zip(items, results[mode], strict=True) if lab == label]
        return f"{sum(is_refusal(r.answer) for r in picked)}/{len(picked)}"

    _write_line(sys.stdout, "Summary: refusals (keyword judge on the opening) to harmful prompts: plain "
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


def _note_options_for_other_modes(args: argparse.Namespace, mode: str) -> None:
    """A chat can switch modes, so steering and gate options are kept for the modes that use
    them; say so when the starting mode is not one of those."""
    try:
        refuse_unused_options(args, [mode])
    except CliError:
        kept = given_flags(args, STEERING_FLAGS) + given_flags(args, GATE_FLAGS) + (["--vector"] if args.vector else [])
        _write_line(sys.stderr, f"note: mode {mode} does not use all of {', '.join(kept)}; they are kept and apply "
                                "once /mode switches to a mode that uses them.")


_CHAT_HELP = "commands: /reset (forget the conversation), /mode NAME (" + ", ".join(MODES) + "), /help, /quit"


def cmd_chat(args: argparse.Namespace) -> int:
    from ..settings import Mode

    engine = load_engine(args, mode=args.mode)
    mode = args.mode or engine.default_mode.value
    _note_options_for_other_modes(args, mode)
    options = _generation_kwargs(args)
    system = [{"role": "system", "content": args.system}] if args.system else []
    history: list[dict[str, str]] = []
    _write_line(sys.stderr, f"Chatting with {engine.loaded.name} in {mode} mode; {_CHAT_HELP}.")
    while True:
        sys.stderr.write(f"[{mode}] you> ")
        sys.stderr.flush()
        try:
            line = input()
        except EOFError:
            _write_line(sys.stderr, "")
            return 0
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            command, _, rest = text.partition(" ")
            if command in ("/quit", "/exit", "/q"):
                return 0
            if command == "/reset":
                history.clear()
                _write_line(sys.stderr, "(conversation cleared)")
            elif command == "/mode":
                try:
                    mode = Mode.parse(rest.strip()).value
                    _write_line(sys.stderr, f"(mode: {mode})")
                except SelfGuardError as error:
                    _write_line(sys.stderr, f"error: {error}")
            elif command == "/help":
                _write_line(sys.stderr, _CHAT_HELP)
            else:
                _write_line(sys.stderr, f"error: unknown command {command!r}; {_CHAT_HELP}")
            continue
        history.append({"role": "user", "content": line})
        try:
            result = _stream_answer(engine, system + history, mode=mode, options=options)
        except KeyboardInterrupt:
            history.pop()
            _write_line(sys.stdout, "")
            _write_line(sys.stderr, "(interrupted; that turn was dropped)")
            continue
        except SelfGuardError as error:
            history.pop()
            _write_line(sys.stderr, f"error: {error}")
            continue
        history.append({"role": "assistant", "content": result.answer})


def _norms_table(norms: dict[int, float], per_row: int = 6) -> list[str]:
    cells = [f"{layer:>3}: {value:8.3f}" for layer, value in sorted(norms.items())]
    return ["    " + "   ".join(cells[i:i + per_row]) for i in range(0, len(cells), per_row)]


def cmd_extract(args: argparse.Namespace) -> int:
    from ..engine.selfguard import SelfGuard
    from ..method.extraction import extract_steering_vector
    from ..method.prompting import BASELINES
    from ..method.resolve import calibration_vector
    from ..runtime.layers import validate_layers
    from ..runtime.loading import load_model
    from ..settings import SteeringSetting, provisional_setting

    if args.vector:
        raise CliError("extract builds a new vector, so --vector would change nothing: drop it (use --output for "
                       "where the new one goes).")
    gate = given_flags(args, GATE_FLAGS)
    if gate:
        raise CliError(f"{_listed(gate)} not recorded by extract (only the steering setting is): drop it, and pass "
                       "it to the commands that generate, or choose the gate with `selfguard calibrate`.")
    if args.prompts is not None:
        prompts, origin = _read_prompt_file(args.prompts, minimum=2), args.prompts
    else:
        prompts, origin = calibration_prompts(), "packaged calibration prompts"
    output = Path(args.output).expanduser()
    if output.is_dir():
        raise CliError(f"--output {args.output} is a directory: give a file path such as vector.safetensors.")
    loaded = load_model(args.model, dtype=args.dtype, device=args.device, threads=args.threads,
                        cache_dir=args.cache_dir, allow_download=args.allow_download, progress=not args.quiet)
    engine = SelfGuard(loaded, cache_dir=args.cache_dir, progress=not args.quiet)
    setting = None
    if _steering_overrides(args):
        if args.layers is not None:
            validate_layers(args.layers, engine.num_layers)
        base = provisional_setting(engine.num_layers)
        setting = SteeringSetting(layers=tuple(args.layers if args.layers is not None else base.layers),
                                  strength=args.strength if args.strength is not None else base.strength,
                                  scope=args.scope or base.scope, source="vector file", max_tokens=args.steer_tokens,
                                  repetition_penalty=args.repetition_penalty or 1.0,
                                  allow_negative_strength=args.allow_negative_strength)
    baseline = BASELINES[args.baseline]
    started = time.perf_counter()
    if args.prompts is None:  # our labelled set: fit the awareness probe too
        vector = calibration_vector(loaded, engine.safety_prompt, baseline=baseline, method=args.method,
                                    probe_method=args.probe_method, batch_size=args.batch_size,
                                    progress=not args.quiet)
    else:
        vector = extract_steering_vector(loaded.model, loaded.tokenizer, prompts, safety=engine.safety_prompt,
                                         baseline=baseline, method=args.method,
                                         batch_size=args.batch_size,
                                         model_fingerprint=loaded.fingerprint, model_name=loaded.name,
                                         progress=not args.quiet)
    if setting is not None:
        vector.extra["setting"] = json.dumps({"layers": list(setting.layers), "strength": setting.strength,
                                              "scope": setting.scope, "max_tokens": setting.max_tokens,
                                              "repetition_penalty": setting.repetition_penalty})
    try:
        path = vector.save(output)
    except OSError as error:
        raise CliError(f"Cannot write the vector to {args.output}: {error.strerror or error}.") from error

    lines = [
        f"Saved steering vector to {path}",
        f"  model:    {loaded.name} (fingerprint {loaded.fingerprint})",
        f"  method:   {vector.method} against the {args.baseline} baseline, {vector.num_prompts} prompts from {origin} "
        f"in {time.perf_counter() - started:.1f} s",
        f"  shape:    {vector.num_layers} layers × {vector.hidden_size}",
        "  setting:  " + (f"layers {format_layers(setting.layers)}, λ {setting.strength:g}, scope {setting.scope}"
                          + (f", first {setting.max_tokens} tokens" if setting.max_tokens else "")
                          + (f", repetition penalty {setting.repetition_penalty:g}"
                             if setting.repetition_penalty != 1 else "")
                          + " (recorded in the file)" if setting is not None
                          else "none recorded (the engine's default applies; set one with --layers/--strength)"),
        "  awareness probe: " + (f"{vector.probe.method}, layer {vector.probe.layer}, "
                                 f"held-out AUC {vector.probe.auc:.3f}"
                                 if vector.probe is not None else "none (needs the labelled calibration set)"),
        "  norm per layer:",
        *_norms_table(vector.norms()),
    ]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def cmd_info(args: argparse.Namespace) -> int:
    engine = load_engine(args)
    info = engine.info()
    if args.json:
        _write_line(sys.stdout, json.dumps(info, indent=2, ensure_ascii=False))
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


# --------------------------------------------------------------------------- entry point


def _silence_broken_pipe() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `selfguard` command; returns the exit status (0 ok, 2 usage/library error, 130 Ctrl-C)."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exit_:  # argparse: 2 for errors, 0 for --help/--version
        return exit_.code if isinstance(exit_.code, int) else 2
    _configure_logging(args.verbose)
    if not getattr(args, "allow_download", False):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return args.func(args)
    except SelfGuardError as error:
        sys.stdout.flush()
        _write_line(sys.stderr, f"error: {error}")
        return 2
    except KeyboardInterrupt:
        _write_line(sys.stderr, "\ninterrupted")
        return 130
    except BrokenPipeError:
        _silence_broken_pipe()
        return 141


__all__ = ["CliError", "build_parser", "format_layers", "main", "parse_layers", "refuse_unused_options"]

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
