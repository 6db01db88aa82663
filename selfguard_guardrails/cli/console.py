"""What the commands write: results to stdout; logs and reasoning traces to stderr.

Keeping the two apart lets stdout be piped (answers, JSON records) while progress and
diagnostics still reach the terminal.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..engine.selfguard import SelfGuard
    from ..results import GenerationResult

logger = logging.getLogger(__name__)

_DIM, _RESET = "\033[2m", "\033[0m"


class StderrHandler(logging.StreamHandler):
    """A handler that always writes to the current sys.stderr (which tests and tools may swap)."""

    @property
    def stream(self) -> IO[str]:
        return sys.stderr

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(verbosity: int) -> None:
    """Log the package to stderr at WARNING, INFO (-v) or DEBUG (-vv); one handler however often it runs."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    package = logging.getLogger("selfguard_guardrails")
    handler = next((h for h in package.handlers if isinstance(h, StderrHandler)), None)
    if handler is None:
        handler = StderrHandler()
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        package.addHandler(handler)
    handler.setLevel(level)
    package.setLevel(level)


def write_line(stream: IO[str], text: str) -> None:
    """Write a line and flush, so it shows at once even when the stream is a pipe."""
    stream.write(text + "\n")
    stream.flush()


def silence_broken_pipe() -> None:
    """Point stdout at devnull once its reader has gone, so the flush at exit raises no second error."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


class ReasoningEcho:
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


def stream_answer(engine: SelfGuard, messages: Any, *, mode: str, options: dict[str, Any]) -> GenerationResult:
    """Stream one answer to stdout (reasoning to stderr) and return the final result."""
    from ..results import GenerationResult
    from ..runtime.reasoning import Channel

    echo = ReasoningEcho(sys.stderr)
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
    write_line(sys.stdout, "")
    assert result is not None
    logger.info("%d tokens (%s) in %.2f s, %.1f tokens/s", result.usage.output_tokens, result.finish_reason,
                result.timings.total_seconds, result.timings.tokens_per_second(result.usage.output_tokens))
    return result
