"""`selfguard eval`: read the prompt sets, check everything, then run and report."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ..errors import InvalidSettingError
from ..settings import Mode
from .engine_setup import load_engine
from .judging import build_judge, parse_where
from .options import int_at_least, refuse_unused_options

if TYPE_CHECKING:
    from ..evaluation.datasets import EvalItem


def add_eval_command(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "eval", parents=[common], help="measure refusals, over-refusals, degeneration and cost per mode",
        description="Run harmful, benign and (optionally) utility prompt files through the chosen modes, "
                    "judge every answer and write records.jsonl, metrics.json, report.md and PNG plots to --out "
                    "(utility.png only with --utility, benign_kl.png only with --benign, refusal_by_COLUMN.png "
                    "only with groups). "
                    "Rerunning with the same --out resumes.")
    parser.add_argument("--harmful", metavar="FILE", help="harmful prompts (CSV, JSON or JSONL; layout detected)")
    parser.add_argument("--benign", metavar="FILE", help="benign prompts (over-refusal and KL)")
    parser.add_argument("--utility", metavar="FILE", help="questions with a target_answer (GSM8K-style)")
    parser.add_argument("--labelled", metavar="FILE",
                        help="one file of both sets, split by its label column (harmful/benign or unsafe/safe); "
                             "instead of --harmful and --benign")
    parser.add_argument("--group-by", metavar="COLUMN",
                        help="also report the rates per value of this column of the harmful and benign rows "
                             "(default: framing when every such row has one)")
    parser.add_argument("--modes", default="plain,self-guard", help="comma-separated: plain, prompt, steer, "
                        "self-guard, guarded (default plain,self-guard)")
    parser.add_argument("--column", metavar="NAME", help="read prompts from this column instead of detecting")
    parser.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUE",
                        help="keep rows of the harmful or labelled file whose column equals the value (repeatable), "
                             "e.g. FunctionalCategory=standard")
    parser.add_argument("--limit", type=int_at_least("--limit", 1), metavar="N", help="first N prompts of each set")
    parser.add_argument("--max-new-tokens", type=int, default=96, metavar="N")
    parser.add_argument("--batch-size", type=int, default=8, metavar="N")
    parser.add_argument("--judge", default="keyword", metavar="SPEC",
                        help="refusal judge: keyword (default; rule-based, reads the opening) or llm:MODULE:ATTR, "
                             "a LangChain chat model or a zero-argument function returning one (langchain extra)")
    parser.add_argument("--out", required=True, metavar="DIR", help="output directory (resumes if it has records)")
    parser.set_defaults(func=cmd_eval)


def read_sets(args: argparse.Namespace) -> dict[str, list[EvalItem]]:
    """The prompt sets the options name, read and checked before any model loads."""
    from ..evaluation.datasets import read_eval_file, split_by_label

    files = {"harmful": args.harmful, "benign": args.benign, "utility": args.utility}
    if args.labelled and (args.harmful or args.benign):
        raise InvalidSettingError("--labelled gives both the harmful and the benign set: drop --harmful and --benign, "
                                  "or drop --labelled.")
    if not args.labelled and not any(files.values()):
        raise InvalidSettingError("Give at least one prompt file: --harmful, --benign, --labelled or --utility.")
    where = parse_where(args.where)
    sets = {name: read_eval_file(path, column=args.column if name != "utility" else None,
                                 where=where if name == "harmful" else None, limit=args.limit,
                                 group_by=args.group_by if name != "utility" else None)
            for name, path in files.items() if path}
    if args.labelled:
        rows = read_eval_file(args.labelled, column=args.column, where=where, group_by=args.group_by)
        sets.update({name: items[:args.limit] for name, items in split_by_label(rows, args.labelled).items()})
    return sets


def cmd_eval(args: argparse.Namespace) -> int:
    from ..evaluation.datasets import default_group
    from ..evaluation.runner import EvalRun

    modes = [Mode.parse(m.strip()).value for m in args.modes.split(",") if m.strip()]
    sets = read_sets(args)
    judge = build_judge(args.judge)
    refuse_unused_options(args, modes)
    engine = load_engine(args)
    run = EvalRun(engine, args.out, modes, max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                  judge=judge, progress=not args.quiet, group_by=args.group_by or default_group(sets))
    run.run(sets)
    sys.stdout.write((run.out_dir / "report.md").read_text(encoding="utf-8"))
    written = [run.records_path.name, "metrics.json", "report.md", *(path.name for path in run.plots)]
    sys.stderr.write(f"wrote {', '.join(written)} in {run.out_dir}\n")
    return 0
