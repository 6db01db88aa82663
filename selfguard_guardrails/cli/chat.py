"""`selfguard chat`: an interactive conversation, kept until /reset, whose mode /mode switches."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import SelfGuardError
from ..settings import Mode
from .console import stream_answer, write_line
from .engine_setup import load_engine
from .options import (
    GATE_FLAGS,
    MODE_NAMES,
    STEERING_FLAGS,
    CliError,
    generation_kwargs,
    generation_options,
    given_flags,
    refuse_unused_options,
)

_CHAT_HELP = "commands: /reset (forget the conversation), /mode NAME (" + ", ".join(MODE_NAMES) + "), /help, /quit"


def add_chat_command(commands: Any, common: argparse.ArgumentParser) -> None:
    chat = commands.add_parser("chat", parents=[common], help="interactive chat (/reset, /mode NAME, /quit)",
                               description="Chat with the model; the conversation is kept until /reset. "
                                           "Commands: /reset, /mode NAME, /help, /quit (or Ctrl-D).")
    chat.add_argument("--mode", choices=MODE_NAMES, help="starting mode (default: as for generate)")
    chat.add_argument("--system", metavar="TEXT", help="your own system message (comes after the safety text)")
    generation_options(chat, max_new_tokens=256)
    chat.set_defaults(func=cmd_chat)


def _note_options_for_other_modes(args: argparse.Namespace, mode: str) -> None:
    """A chat can switch modes, so steering and gate options are kept for the modes that use
    them; say so when the starting mode is not one of those."""
    try:
        refuse_unused_options(args, [mode])
    except CliError:
        kept = given_flags(args, STEERING_FLAGS) + given_flags(args, GATE_FLAGS) + (["--vector"] if args.vector else [])
        write_line(sys.stderr, f"note: mode {mode} does not use all of {', '.join(kept)}; they are kept and apply "
                               "once /mode switches to a mode that uses them.")


def cmd_chat(args: argparse.Namespace) -> int:
    engine = load_engine(args, mode=args.mode)
    mode = args.mode or engine.default_mode.value
    _note_options_for_other_modes(args, mode)
    options = generation_kwargs(args)
    system = [{"role": "system", "content": args.system}] if args.system else []
    history: list[dict[str, str]] = []
    write_line(sys.stderr, f"Chatting with {engine.loaded.name} in {mode} mode; {_CHAT_HELP}.")
    while True:
        sys.stderr.write(f"[{mode}] you> ")
        sys.stderr.flush()
        try:
            line = input()
        except EOFError:
            write_line(sys.stderr, "")
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
                write_line(sys.stderr, "(conversation cleared)")
            elif command == "/mode":
                try:
                    mode = Mode.parse(rest.strip()).value
                    write_line(sys.stderr, f"(mode: {mode})")
                except SelfGuardError as error:
                    write_line(sys.stderr, f"error: {error}")
            elif command == "/help":
                write_line(sys.stderr, _CHAT_HELP)
            else:
                write_line(sys.stderr, f"error: unknown command {command!r}; {_CHAT_HELP}")
            continue
        history.append({"role": "user", "content": line})
        try:
            result = stream_answer(engine, system + history, mode=mode, options=options)
        except KeyboardInterrupt:
            history.pop()
            write_line(sys.stdout, "")
            write_line(sys.stderr, "(interrupted; that turn was dropped)")
            continue
        except SelfGuardError as error:
            history.pop()
            write_line(sys.stderr, f"error: {error}")
            continue
        history.append({"role": "assistant", "content": result.answer})
