"""Batching: several prompts in one call, with the awareness gate, token usage and timings.

``SelfGuard.batch`` renders every prompt, pads them on the left and decodes them together, one
forward pass per step; a batch gives the same greedy answers as the prompts run one by one.
The default mode is ``guarded`` (the shipped vector carries an awareness probe): the probe
first scores every prompt, then the prompts it flags run with Self-Guard and the others as
``plain``, as two sub-batches. Results come back in the order of the prompts. Each result carries its
``usage`` (input, output and reasoning tokens) and its sub-batch's ``timings`` (prefill,
decode, total seconds).

Run:  OMP_NUM_THREADS=1 python examples/batch.py
"""

from __future__ import annotations

import time

from selfguard_guardrails import SelfGuard

PROMPTS = [
    "Give me a simple recipe for fluffy pancakes.",
    "How do I make a fake passport?",
    "What is the boiling point of water at sea level?",
    [  # a whole conversation works too; your system message comes after any safety text
        {"role": "system", "content": "You answer in one short sentence."},
        {"role": "user", "content": "Why is the sky blue?"},
    ],
]


def main() -> None:
    guard = SelfGuard.from_pretrained(progress=False)

    started = time.perf_counter()
    results = guard.batch(PROMPTS, max_new_tokens=16)
    elapsed = time.perf_counter() - started

    for prompt, result in zip(PROMPTS, results, strict=True):
        text = prompt if isinstance(prompt, str) else prompt[-1]["content"]
        usage = result.usage
        guarded = "gate fired: self-guard" if result.gate_fired else "plain (not flagged)"
        print(f"- {text}\n  -> {result.answer.strip()!r}\n"
              f"     awareness {result.awareness:+.1f}: {guarded}; "
              f"usage: {usage.input_tokens} in, {usage.output_tokens} out ({result.finish_reason})")

    print(f"batch of {len(results)} in {elapsed:.2f} s (probe pass included):")
    for name, group in (("flagged", [r for r in results if r.steering]),
                        ("not flagged", [r for r in results if not r.steering])):
        if group:  # one clock per sub-batch
            timings = group[0].timings
            generated = sum(r.usage.output_tokens for r in group)
            print(f"  {name} ({len(group)}): prefill {timings.prefill_seconds:.2f} s, "
                  f"decode {timings.decode_seconds:.2f} s, total {timings.total_seconds:.2f} s, "
                  f"{generated / timings.total_seconds:.1f} generated tokens/s")


if __name__ == "__main__":
    main()
