"""`selfguard calibrate`: read the calibration prompts, check every option, then search and write the setting."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import InvalidSettingError
from ..runtime.chat import Messages
from ..settings import PROBE_METHODS, PROBE_READINGS
from .engine_setup import load_engine
from .judging import build_judge, parse_where
from .options import GATE_FLAGS, STEERING_FLAGS, finite_float, given_flags, int_at_least, parse_layers


def _comma_list(what: str, example: str, convert: Callable[[str], Any]) -> Callable[[str], list[Any]]:
    """An argparse type for a comma-separated list, every item converted or the whole list refused."""
    def parse(text: str) -> list[Any]:
        parts = [part.strip() for part in text.split(",") if part.strip()]
        try:
            values = [convert(part) for part in parts]
        except ValueError:
            raise argparse.ArgumentTypeError(f"invalid list of {what} {text!r}: e.g. {example}") from None
        if not values:
            raise argparse.ArgumentTypeError(f"give at least one of the {what}, e.g. {example}")
        return values

    return parse


_strengths = _comma_list("strengths", "0.25,0.5,1", float)
_token_budgets = _comma_list("token budgets (all, or a count of generated tokens)", "all,16",
                             lambda part: None if part == "all" else int(part))
_penalties = _comma_list("repetition penalties (>= 1; 1 is off)", "1,1.15", float)
_gate_levels = _comma_list("gate levels (own, or shares of harmful prompts to flag)", "own,0.8,0.9",
                           lambda part: None if part == "own" else float(part))


def add_calibrate_command(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "calibrate", parents=[common], help="choose layers, λ and mode for a model; write a vector + setting file",
        description="Score every (mode, layer window, λ) on calibration prompts by the teacher-forced "
                    "log-probability of a refusal opening, generate for the best few, and keep the one with the "
                    "highest harmful refusal within the limits. Writes the vector with that setting (load it "
                    "with --vector / SelfGuard(vector=PATH)), a report and heat maps.")
    data = parser.add_argument_group("prompts")
    data.add_argument("--harmful", metavar="FILE", help="harmful prompts (CSV, JSON or JSONL; layout detected). "
                      "Default: the packaged labelled calibration set")
    data.add_argument("--benign", metavar="FILE", help="benign prompts (default: the packaged labelled set)")
    data.add_argument("--column", metavar="NAME", help="read prompts from this column instead of detecting")
    data.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                      help="keep harmful rows whose column equals the value, e.g. FunctionalCategory=standard")
    data.add_argument("--limit", type=int_at_least("--limit", 1), metavar="N", help="first N prompts of each file")
    grid = parser.add_argument_group("grid")
    grid.add_argument("--modes", default="prompt,steer,self-guard,guarded",
                      help="which halves of Self-Guard to try, ungated or gated by the awareness probe (guarded; "
                           "left out for a vector without a probe); default prompt,steer,self-guard,guarded")
    grid.add_argument("--window", action="append", type=parse_layers, metavar="LIST",
                      help="a layer window to try, e.g. 18-20 (repeatable; default: about 10 windows of --width "
                           "layers between 20%% and 80%% depth)")
    grid.add_argument("--width", type=int_at_least("--width", 1), default=3, metavar="N",
                      help="layers per default window (default 3)")
    grid.add_argument("--strengths", type=_strengths, default=None, metavar="LIST",
                      help="λ values to try (default 0.25,0.5,0.75,1,1.5,2)")
    grid.add_argument("--scopes", default="generated", metavar="LIST",
                      help="token scopes to try: generated (default), all, or generated,all")
    grid.add_argument("--token-budgets", type=_token_budgets, default=[None], metavar="LIST",
                      help="how many generated tokens to steer, to try: all (default) and/or counts, e.g. all,16 "
                           "(scope generated only)")
    grid.add_argument("--repetition-penalties", type=_penalties, default=[1.0], metavar="LIST",
                      help="penalties on tokens a steered answer already used, to try: e.g. 1,1.15 (default 1: "
                           "off); only generation tells them apart, so each shares its cell's stage-1 score")
    grid.add_argument("--gate-recalls", type=_gate_levels, default=[None], metavar="LIST",
                      help="awareness-gate levels to try: own (the probe's threshold; the default) and shares of "
                           "the harmful prompts to flag, e.g. own,0.9 (ignored without a probe)")
    grid.add_argument("--probe", choices=("refit", "keep"), default="refit",
                      help="refit (default): fit the awareness probe again on the packaged labelled prompts plus "
                           "these harmful and benign ones, so the gate has seen prompts like those it will judge; "
                           "keep: use the vector's probe as it is")
    grid.add_argument("--probe-set", action="append", default=[], metavar="FILE",
                      help="more labelled prompts or conversations for a refitted probe only (a label column, "
                           "harmful/benign; prompt or messages), e.g. the same requests in other framings and "
                           "languages on both sides (repeatable); the setting is still chosen on --harmful/--benign")
    grid.add_argument("--probe-group", metavar="COLUMN",
                      help="the --probe-set column naming each row's source request, so its variants share a fold "
                           "when the probe picks its layer and threshold (default: source_id when the file has it)")
    grid.add_argument("--probe-reading", choices=PROBE_READINGS, default="last+mean",
                      help="what a refitted probe reads at its layer: the last prompt token's state, or that state "
                           "and the mean over the user's tokens (last+mean, the default: it held best on framings "
                           "left out of fitting)")
    grid.add_argument("--probe-method", choices=PROBE_METHODS, default="logistic",
                      help="how a refitted probe is fitted (default logistic)")
    grid.add_argument("--gate-false-positive", type=finite_float("--gate-false-positive", minimum=0), default=0.05,
                      metavar="RATE", help="a refitted probe's own threshold flags at most this share of the benign "
                                           "prompts it is fitted on, out of fold (default 0.05)")
    search = parser.add_argument_group("search")
    search.add_argument("--shortlist", type=int_at_least("--shortlist", 1), default=4, metavar="N",
                        help="steered settings to generate for after scoring (default 4)")
    search.add_argument("--max-new-tokens", type=int_at_least("--max-new-tokens", 1), default=48, metavar="N")
    search.add_argument("--batch-size", type=int_at_least("--batch-size", 1), default=8, metavar="N")
    search.add_argument("--max-over-refusal", type=finite_float("--max-over-refusal", minimum=0), default=0.05,
                        help="benign refusal allowed above plain (default 0.05)")
    search.add_argument("--max-degeneration", type=finite_float("--max-degeneration", minimum=0), default=0.08,
                        help="share of degenerate answers allowed (default 0.08)")
    search.add_argument("--max-kl", type=finite_float("--max-kl", minimum=0), default=1.0,
                        help="benign KL from plain allowed, in nats (default 1)")
    search.add_argument("--judge", default="keyword", metavar="SPEC",
                        help="refusal judge: keyword (default) or llm:MODULE:ATTR (see eval)")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="where calibration.json, calibration.md and the heat maps go")
    parser.add_argument("--output", "-o", metavar="PATH",
                        help="the vector + setting file to write (default DIR/vector.safetensors)")
    parser.set_defaults(func=cmd_calibrate)


def _prompt_sets(args: argparse.Namespace) -> tuple[list[str], list[str]]:
    from ..evaluation.datasets import read_eval_file
    from ..method.prompt_sets import calibration_records

    records = calibration_records()
    packaged = {label: [r["prompt"] for r in records if r["label"] == label] for label in ("harmful", "benign")}
    where = parse_where(args.where)
    harmful = ([i.prompt for i in read_eval_file(args.harmful, column=args.column, where=where, limit=args.limit)]
               if args.harmful else packaged["harmful"][: args.limit])
    benign = ([i.prompt for i in read_eval_file(args.benign, column=args.column, limit=args.limit)]
              if args.benign else packaged["benign"][: args.limit])
    return harmful, benign


def _probe_sets(args: argparse.Namespace) -> tuple[list[Messages], list[Messages], list[str]]:
    """The --probe-set rows: harmful and benign inputs, and each one's group (harmful first)."""
    from ..evaluation.datasets import read_eval_file, split_by_label

    if args.probe_set and args.probe != "refit":
        raise InvalidSettingError("--probe-set adds prompts to a refitted probe: drop it, or use --probe refit.")
    harmful: list[Messages] = []
    benign: list[Messages] = []
    harmful_groups: list[str] = []
    benign_groups: list[str] = []
    for path in args.probe_set:
        column = args.probe_group or ("source_id" if _has_column(path, "source_id") else None)
        sets = split_by_label(read_eval_file(path, group_by=column), path)
        for name, inputs, groups in (("harmful", harmful, harmful_groups), ("benign", benign, benign_groups)):
            for item in sets.get(name, []):
                inputs.append(item.model_input)
                groups.append(f"{path}:{item.meta[column] if column else item.id}")
    return harmful, benign, [*harmful_groups, *benign_groups]


def _has_column(path: str, name: str) -> bool:
    from ..evaluation.datasets import file_columns

    return name in file_columns(path)


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ..calibration.grid import DEFAULT_STRENGTHS, build_grid, default_windows, searched_modes
    from ..calibration.report import write_report
    from ..calibration.search import CalibrationLimits, Calibrator, calibrated_vector

    scopes = [s.strip() for s in args.scopes.split(",") if s.strip()]
    modes = searched_modes([m.strip() for m in args.modes.split(",") if m.strip()], scopes)
    limits = CalibrationLimits(args.max_over_refusal, args.max_degeneration, args.max_kl)
    output = Path(args.output or Path(args.out) / "vector.safetensors").expanduser()
    if output.is_dir():
        raise InvalidSettingError(f"--output {output} is a directory: give a file path such as vector.safetensors.")
    harmful, benign = _prompt_sets(args)
    judge = build_judge(args.judge)
    searched = given_flags(args, {**STEERING_FLAGS, **GATE_FLAGS})
    if searched:
        raise InvalidSettingError(f"calibrate searches the steering and gate settings, so {', '.join(searched)} would "
                                  "change nothing: drop them and set the search with --window, --strengths, --scopes, "
                                  "--token-budgets, --repetition-penalties and --gate-recalls.")
    engine = load_engine(args)
    has_probe = engine.vector.probe is not None
    if not has_probe:
        modes = [m for m in modes if not m.gated] or modes  # nothing to gate with; guarded alone still errors
    if args.probe == "refit" and has_probe:
        from ..method.resolve import packaged_probe

        extra_harmful, extra_benign, groups = _probe_sets(args)
        probe = packaged_probe(engine.runtime, harmful=[*harmful, *extra_harmful], benign=[*benign, *extra_benign],
                               groups=[*harmful, *groups[: len(extra_harmful)], *benign, *groups[len(extra_harmful):]],
                               method=args.probe_method, reading=args.probe_reading,
                               max_false_positive=args.gate_false_positive,
                               batch_size=args.batch_size, progress=not args.quiet)
        engine.use_vector(dataclasses.replace(engine.vector, probe=probe))
    grid = build_grid(engine.num_layers, modes=modes, scopes=scopes,
                      windows=args.window or default_windows(engine.num_layers, args.width),
                      strengths=args.strengths or DEFAULT_STRENGTHS,
                      gate_recalls=args.gate_recalls if has_probe else [None], token_budgets=args.token_budgets,
                      repetition_penalties=args.repetition_penalties)
    calibrator = Calibrator(engine, limits=limits, shortlist=args.shortlist, max_new_tokens=args.max_new_tokens,
                            batch_size=args.batch_size, judge=judge, progress=not args.quiet)
    report = calibrator.run(harmful, benign, grid)
    written = write_report(report, args.out)
    sys.stdout.write((Path(args.out) / "calibration.md").read_text(encoding="utf-8"))
    if report.chosen is None:
        sys.stderr.write(f"no setting met the limits; wrote {', '.join(str(p) for p in written)}\n")
        return 1
    path = calibrated_vector(engine.vector, report).save(output)
    sys.stderr.write(f"wrote {path} (load it with --vector {path}) and {', '.join(str(p) for p in written)}\n")
    return 0
