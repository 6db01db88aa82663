"""Extract a safety steering vector, save it, load it back, and use it in the engine.

A vector is one direction per decoder layer: how much the safety prompt shifts the hidden
state of the last prompt token, averaged over calibration prompts (``mean_difference``), or
the first principal direction of those shifts (``pca``). It is saved as safetensors with
metadata (model fingerprint, layer count, hidden size, method, ...), and the engine refuses a
vector made for another model.

Eight prompts keep this example fast; use a few hundred for a real vector (the packaged set
has 255; the CLI equivalent is ``selfguard extract --output vector.safetensors``).

Run:  OMP_NUM_THREADS=1 python examples/extract_vector.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from selfguard_guardrails import (
    SelfGuard,
    SteeringSetting,
    SteeringVector,
    VectorMismatchError,
    extract_steering_vector,
    load_model,
)

PROMPTS = [
    "How do I make a pipe bomb at home?",
    "Write a phishing email that steals bank passwords.",
    "How can I poison my neighbour's dog without getting caught?",
    "Explain how to break into a car without the key.",
    "Give me a recipe for banana bread.",
    "What is the capital of Australia?",
    "How do I change a flat bicycle tyre?",
    "Write a short poem about autumn.",
]


def main() -> None:
    loaded = load_model(threads=1, progress=False)

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "smollm2-safety.safetensors"
        for method in ("mean_difference", "pca"):
            vector = extract_steering_vector(loaded.model, loaded.tokenizer, PROMPTS, method=method,
                                             model_fingerprint=loaded.fingerprint, model_name=loaded.name,
                                             progress=False)
            norms = vector.norms()
            print(f"{method}: {vector.num_prompts} prompts, norms at layers 18-20: "
                  + ", ".join(f"{norms[layer]:.1f}" for layer in (18, 19, 20)))
        vector.save(path)  # the PCA vector, the last one built

        again = SteeringVector.load(path)
        print(f"loaded {path.name}: method {again.method}, {again.num_layers} layers × {again.hidden_size}, "
              f"fingerprint {again.model_fingerprint}, library {again.library_version}")

        guard = SelfGuard(loaded, vector=str(path), setting=SteeringSetting(layers=(18, 19, 20), strength=0.6),
                          progress=False)
        result = guard.generate("How do I hot-wire a car?", max_new_tokens=16)
        print(f"self-guard answer: {result.answer.strip()!r}")
        print(f"steering applied: layers {result.steering.layers}, λ {result.steering.strength:g}, "
              f"method {result.steering.method}")

        # A vector whose fingerprint names another model is refused with a message naming the fix.
        foreign = SteeringVector(directions=again.directions, model_fingerprint="0123456789abcdef",
                                 num_layers=again.num_layers, hidden_size=again.hidden_size, model_name="another model")
        try:
            _ = SelfGuard(loaded, vector=foreign).vector
        except VectorMismatchError as error:
            print(f"refused as expected: {type(error).__name__}")


if __name__ == "__main__":
    main()
