"""`selfguard extract`: measure a steering vector for a model and save it, with an optional recorded setting."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from ..method.prompt_sets import calibration_prompts
from ..method.prompting import BASELINES
from ..settings import EXTRACTION_METHODS, PROBE_METHODS
from .engine_setup import steering_setting
from .files import read_prompt_file
from .options import GATE_FLAGS, STEERING_FLAGS, CliError, format_layers, given_flags, int_at_least, listed_flags


def add_extract_command(commands: Any, common: argparse.ArgumentParser) -> None:
    extract = commands.add_parser("extract", parents=[common], help="build a steering vector for the model",
                                  description="Measure how the safety prompt shifts every layer and save the "
                                              "mean difference (or first principal direction) as a vector. "
                                              "--layers/--strength/--scope are recorded as its recommended "
                                              "setting.")
    extract.add_argument("--prompts", metavar="FILE", help="calibration prompts (default: the packaged set)")
    extract.add_argument("--method", choices=EXTRACTION_METHODS, default="mean_difference")
    extract.add_argument("--baseline", choices=tuple(BASELINES), default="neutral",
                         help="what the safety prompt's shift is measured against: the same system message and "
                              "reminder slots with neutral text (default), or the bare prompt (the paper's)")
    extract.add_argument("--probe-method", choices=PROBE_METHODS, default="logistic",
                         help="how the awareness probe is fitted (default logistic; mean_difference also "
                              "learns how harmful and benign prompts happen to be phrased)")
    extract.add_argument("--batch-size", type=int_at_least("--batch-size", 1), default=16, metavar="N")
    extract.add_argument("--output", "-o", required=True, metavar="PATH", help="where to save the vector")
    extract.set_defaults(func=cmd_extract)


def _norms_table(norms: dict[int, float], per_row: int = 6) -> list[str]:
    cells = [f"{layer:>3}: {value:8.3f}" for layer, value in sorted(norms.items())]
    return ["    " + "   ".join(cells[i:i + per_row]) for i in range(0, len(cells), per_row)]


def cmd_extract(args: argparse.Namespace) -> int:
    from ..engine.selfguard import SelfGuard
    from ..method.extraction import measure_steering_vector
    from ..method.resolve import calibration_vector
    from ..method.vector import with_recorded_setting
    from ..runtime.loading import load_model

    if args.vector:
        raise CliError("extract builds a new vector, so --vector would change nothing: drop it (use --output for "
                       "where the new one goes).")
    gate = given_flags(args, GATE_FLAGS)
    if gate:
        raise CliError(f"{listed_flags(gate)} not recorded by extract (only the steering setting is): drop it, and "
                       "pass it to the commands that generate, or choose the gate with `selfguard calibrate`.")
    if args.prompts is not None:
        prompts, origin = read_prompt_file(args.prompts, minimum=2), args.prompts
    else:
        prompts, origin = calibration_prompts(), "packaged calibration prompts"
    output = Path(args.output).expanduser()
    if output.is_dir():
        raise CliError(f"--output {args.output} is a directory: give a file path such as vector.safetensors.")
    loaded = load_model(args.model, dtype=args.dtype, device=args.device, threads=args.threads,
                        cache_dir=args.cache_dir, allow_download=args.allow_download, progress=not args.quiet)
    engine = SelfGuard(loaded, cache_dir=args.cache_dir, progress=not args.quiet)
    # the setting recorded in the file starts from the provisional one, not from any vector's
    setting = (steering_setting(args, engine.num_layers, source="vector file")
               if given_flags(args, STEERING_FLAGS) else None)
    baseline = BASELINES[args.baseline]
    started = time.perf_counter()
    if args.prompts is None:  # our labelled set: fit the awareness probe too
        vector = calibration_vector(engine.runtime, engine.safety_prompt, baseline=baseline, method=args.method,
                                    probe_method=args.probe_method, batch_size=args.batch_size,
                                    progress=not args.quiet)
    else:
        vector = measure_steering_vector(engine.runtime, prompts, safety=engine.safety_prompt, baseline=baseline,
                                         method=args.method, batch_size=args.batch_size, progress=not args.quiet)
    if setting is not None:
        vector = with_recorded_setting(vector, setting)
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
