"""The `selfguard` argument parser, wiring every command's options to its function.

Built from torch-free modules only: each command imports the model stack inside its function,
so ``--help`` and argument errors answer without loading it.
"""

from __future__ import annotations

import argparse

from .. import __version__
from .audit import add_audit_command
from .calibrate import add_calibrate_command
from .chat import add_chat_command
from .demo import add_demo_command
from .eval import add_eval_command
from .export import add_export_command
from .extract import add_extract_command
from .generate import add_generate_command
from .info import add_info_command
from .options import common_options, output_options
from .scan import add_scan_command
from .serve import add_serve_command


def build_parser() -> argparse.ArgumentParser:
    common = common_options()
    parser = argparse.ArgumentParser(
        prog="selfguard",
        description="Self-Guard for local Hugging Face models: safety prompting + safety activation steering.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_demo_command(commands, common)
    add_generate_command(commands, common)
    add_chat_command(commands, common)
    add_extract_command(commands, common)
    add_info_command(commands, common)
    add_eval_command(commands, common)
    add_calibrate_command(commands, common)
    add_serve_command(commands, common)
    add_scan_command(commands, output_options())  # these three load no model: no model or steering options
    add_audit_command(commands, output_options())
    add_export_command(commands, output_options())
    return parser
