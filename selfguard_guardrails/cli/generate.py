"""`selfguard generate`: answer one prompt (streamed) or every prompt of a file (batched)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from contextlib import ExitStack
from typing import TYPE_CHECKING, Any

from ..errors import InvalidMessagesError
from .console import ReasoningEcho, stream_answer, write_line
from .engine_setup import load_engine
from .files import open_output, read_prompt_file
from .options import MODE_NAMES, CliError, generation_kwargs, generation_options, int_at_least, refuse_unused_options

if TYPE_CHECKING:
    from ..results import GenerationResult

logger = logging.getLogger(__name__)


def add_generate_command(commands: Any, common: argparse.ArgumentParser) -> None:
    generate = commands.add_parser("generate", parents=[common], help="answer a prompt or a file of prompts",
                                   description="Answer one prompt (streamed) or every prompt of a file "
                                               "(batched). Use - as the prompt to read it from stdin.")
    generate.add_argument("prompt", nargs="?", help="the prompt (or - for stdin)")
    generate.add_argument("--input", "-i", metavar="FILE",
                          help="prompt file: .txt (one per line), .jsonl or .json with a 'prompt' field")
    generate.add_argument("--mode", choices=MODE_NAMES,
                          help="plain, prompt (safety prompt only), steer (vector only), self-guard (both), guarded "
                               "(both, where the awareness probe flags the prompt); default: the vector file's "
                               "calibrated mode, else guarded with a probe and self-guard without")
    generation_options(generate, max_new_tokens=256)
    generate.add_argument("--batch-size", type=int_at_least("--batch-size", 1), default=8, metavar="N",
                          help="prompts per batch for a file (default 8)")
    generate.add_argument("--json", action="store_true", help="print one JSON object per result")
    generate.add_argument("--out", metavar="FILE.jsonl", help="write one JSON record per prompt to this file")
    generate.set_defaults(func=cmd_generate)


def _record(prompt: str, result: GenerationResult) -> dict[str, Any]:
    return {"prompt": prompt, **result.model_dump(mode="json")}


def cmd_generate(args: argparse.Namespace) -> int:
    if (args.prompt is None) == (args.input is None):
        raise CliError("Give either a prompt or --input FILE (exactly one of them).")
    if args.input is not None:
        prompts = read_prompt_file(args.input)
    else:
        prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
        if not prompt.strip():
            raise InvalidMessagesError("The prompt is empty: give some text to answer.")
        prompts = [prompt.strip() if args.prompt == "-" else prompt]
    options = generation_kwargs(args)

    with ExitStack() as stack:
        out = stack.enter_context(open_output(args.out)) if args.out else None
        engine = load_engine(args, mode=args.mode)
        args.mode = args.mode or engine.default_mode.value
        refuse_unused_options(args, [args.mode])
        if args.input is None and not args.json and out is None:
            stream_answer(engine, prompts[0], mode=args.mode, options=options)
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
                    write_line(sys.stdout, json.dumps(record, ensure_ascii=False))
                elif plain_text:
                    if result.reasoning:
                        echo = ReasoningEcho(sys.stderr)
                        echo.write(result.reasoning)
                        echo.close()
                    write_line(sys.stdout, f"[{start + offset + 1}] {prompt}\n{result.answer.strip()}\n")
            if out is not None:
                out.flush()
            bar.update(len(chunk))
    if args.out:
        logger.info("Wrote %d records to %s", len(prompts), args.out)
    return 0
