"""Streaming: text arrives piece by piece, each piece tagged with its channel.

``SelfGuard.stream`` yields ``StreamPiece`` objects (``channel`` is ``Channel.REASONING`` or
``Channel.ANSWER``) while decoding, and the full ``GenerationResult`` last. Reasoning models
(Qwen3, DeepSeek-R1) write a ``<think>`` trace first; the embedded SmolLM2-135M has no native
thinking, so the second stream asks it to reason in ``<think>`` tags (``think_in_tags=True``);
whether such a small model obeys is up to the model. Breaking out of a stream early stops
generation; call ``close()`` on it (or let it go out of scope) to free the engine at once.

The engine runs in its default mode, ``guarded``, gated by the awareness probe of the
shipped vector: the probe runs at the first ``next()``, and a prompt it does not flag is
streamed as in ``plain`` mode (``result.awareness`` below 0, ``result.steering`` None).

Run:  OMP_NUM_THREADS=1 python examples/streaming.py
"""

from __future__ import annotations

import sys

from selfguard_guardrails import Channel, GenerationResult, SelfGuard, StreamPiece, load_model


def show(stream) -> GenerationResult:
    """Print answer pieces to stdout and reasoning pieces, dimmed with a tag, to stderr."""
    result = None
    for item in stream:
        if isinstance(item, GenerationResult):
            result = item
        elif item.channel is Channel.REASONING:
            print(f"[reasoning] {item.text!r}", file=sys.stderr, flush=True)
        else:
            print(item.text, end="", flush=True)
    print()
    assert result is not None
    return result


def main() -> None:
    loaded = load_model(progress=False)

    guard = SelfGuard(loaded, progress=False)
    print("answer stream:")
    result = show(guard.stream("Name two planets of the solar system.", max_new_tokens=16))
    print(f"finish: {result.finish_reason}, tokens: {result.usage.output_tokens}, "
          f"{result.timings.tokens_per_second(result.usage.output_tokens):.1f} tokens/s, "
          f"awareness {result.awareness:+.1f}, steering {result.steering and result.steering.layers}")

    tagged = SelfGuard(loaded, think_in_tags=True, progress=False)
    print("\nthink-in-tags stream:")
    result = show(tagged.stream("Is 17 a prime number?", max_new_tokens=16))
    print(f"reasoning: {result.reasoning!r} (truncated: {result.reasoning_truncated})")
    print(f"answer: {result.answer!r}")

    # Walking away from a stream: break, then close() so the engine is free for the next call.
    stream = guard.stream("Tell me a short story about a fox.", max_new_tokens=16)
    for piece in stream:
        if isinstance(piece, StreamPiece):
            print(f"first piece: {piece.text!r}")
        break
    stream.close()
    answer = guard.generate("What is two plus two?", max_new_tokens=8).answer.strip()
    print("abandoned stream closed; next call:", answer)


if __name__ == "__main__":
    main()
