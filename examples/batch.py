"""Batching: several prompts in one left-padded batch, with token usage and timings.

``SelfGuard.batch`` renders every prompt (with the safety prompt, in ``prompt`` or
``self-guard`` mode), pads them on the left and decodes them together, one forward pass per
step; a batch gives the same greedy answers as the prompts run one by one. Each result
carries its ``usage`` (input, output and reasoning tokens) and the batch's ``timings``
(prefill, decode, total seconds).

The mode here is ``prompt`` (safety prompt only), so no steering vector is needed.

Run:  OMP_NUM_THREADS=1 python examples/batch.py
"""

from __future__ import annotations

import time

from selfguard_guardrails import SelfGuard

PROMPTS = [
    "Give me a simple recipe for fluffy pancakes.",
    "How do I make a fake passport?",
    "What is the boiling point of water at sea level?",
    [  # a whole conversation works too, with your own system message after the safety text
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "Why is the sky blue?"},
    ],
]


def main() -> None:
    guard = SelfGuard.from_pretrained(threads=1, mode="prompt", progress=False)

    started = time.perf_counter()
    results = guard.batch(PROMPTS, max_new_tokens=16)
    elapsed = time.perf_counter() - started

    for prompt, result in zip(PROMPTS, results, strict=True):
        text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
        usage = result.usage
        print(f"- {text}\n  -> {result.answer.strip()!r}\n"
              f"     usage: {usage.input_tokens} in, {usage.output_tokens} out ({result.finish_reason})")

    timings = results[0].timings  # one clock for the whole batch
    generated = sum(r.usage.output_tokens for r in results)
    print(f"batch of {len(results)}: prefill {timings.prefill_seconds:.2f} s, decode {timings.decode_seconds:.2f} s, "
          f"total {timings.total_seconds:.2f} s (wall {elapsed:.2f} s), "
          f"{generated / timings.total_seconds:.1f} generated tokens/s")


if __name__ == "__main__":
    main()
