"""The `selfguard` command: demo, generate, chat, extract, info, eval, calibrate, scan, audit.

stdout carries only results (answers, JSON records, reports); logs, progress bars and the
reasoning trace of a streamed answer go to stderr. A `SelfGuardError` prints
``error: <message>`` and exits 2, as argparse does for bad arguments; Ctrl-C exits 130.
Heavy modules (torch, transformers) are imported only once a command needs the model, so
argument errors and ``--help`` answer at once.

One module per command (`add_<name>_command` + `cmd_<name>`), wired by `parser`; what
several share lives in `options` (argument types, option groups, which options apply),
`engine_setup` (options -> settings -> engine), `console` (stdout/stderr, logging), `files`
and `judging`. They import each other, never this package, so there is no import cycle.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ..errors import SelfGuardError
from .console import configure_logging, silence_broken_pipe, write_line
from .options import CliError, format_layers, parse_layers, refuse_unused_options
from .parser import build_parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the `selfguard` command; returns the exit status (0 ok, 2 usage/library error, 130 Ctrl-C)."""
    parser = build_parser()
    try:
        args = parser.parse_args(list(argv) if argv is not None else None)
    except SystemExit as exit_:  # argparse: 2 for errors, 0 for --help/--version
        return exit_.code if isinstance(exit_.code, int) else 2
    configure_logging(args.verbose)
    if not getattr(args, "allow_download", False):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        return args.func(args)
    except SelfGuardError as error:
        sys.stdout.flush()
        write_line(sys.stderr, f"error: {error}")
        return 2
    except KeyboardInterrupt:
        write_line(sys.stderr, "\ninterrupted")
        return 130
    except BrokenPipeError:
        silence_broken_pipe()
        return 141


__all__ = ["CliError", "build_parser", "format_layers", "main", "parse_layers", "refuse_unused_options"]
