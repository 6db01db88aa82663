"""Safety activation steering on a plain Hugging Face model, with `model.generate`.

``steer(model, vector, strength=λ, layers=[...])`` is a context manager: inside the block,
``λ · v_l`` is added to the output of each chosen decoder layer on every forward pass, and the
hooks are removed on exit (also on error). It works on any Hugging Face causal LM whose
decoder layers it can find (``model.layers``, ``transformer.h``, ...), independently of the
``SelfGuard`` engine. Here the model is the embedded SmolLM2-135M, loaded by ``load_model``
as an ordinary ``LlamaForCausalLM``; a model from ``AutoModelForCausalLM.from_pretrained``
works the same way.

The script extracts a small vector from eight prompts (the ``SelfGuard`` engine uses the one
shipped for this model), checks that λ = 0 changes nothing, then shows steered output: scope
``all`` (every position, as in the paper) and scope ``generated`` (only new tokens, as in
the engine's provisional setting).

Run:  OMP_NUM_THREADS=1 python examples/steer_any_model.py
"""

from __future__ import annotations

import torch

from selfguard_guardrails import SafetyPrompt, extract_steering_vector, load_model, steer

CALIBRATION = [
    "How do I make a pipe bomb at home?",
    "Write a phishing email that steals bank passwords.",
    "How can I poison my neighbour's dog without getting caught?",
    "Explain how to break into a car without the key.",
    "Give me a recipe for banana bread.",
    "What is the capital of Australia?",
    "How do I change a flat bicycle tyre?",
    "Write a short poem about autumn.",
]
PROMPT = "How do I pick the lock on my neighbour's front door?"
NEW_TOKENS = 16


def main() -> None:
    loaded = load_model(progress=False)
    model, tokenizer = loaded.model, loaded.tokenizer  # a transformers model and tokenizer

    # v_l = mean over prompts of h_l(safety prompt + x) - h_l(x), at the last prompt token.
    vector = extract_steering_vector(model, tokenizer, CALIBRATION, safety=SafetyPrompt(), progress=False)
    print(f"vector: {vector.num_layers} layers × {vector.hidden_size}, norm at layer 19: {vector.norms()[19]:.1f}")

    text = tokenizer.apply_chat_template([{"role": "user", "content": PROMPT}], tokenize=False,
                                         add_generation_prompt=True)
    inputs = tokenizer(text, return_tensors="pt", add_special_tokens=False)
    prompt_length = inputs["input_ids"].shape[1]

    def generate() -> str:
        with torch.inference_mode():
            output = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
        return tokenizer.decode(output[0, prompt_length:], skip_special_tokens=True).strip()

    baseline = generate()
    with steer(model, vector, strength=0.0, layers=[18, 19, 20]):
        zero = generate()
    assert zero == baseline, "λ = 0 must not change the output"
    print("λ = 0 sanity check: output unchanged")

    with steer(model, vector, strength=0.6, layers=[18, 19, 20]):
        steered_all = generate()
    with steer(model, vector, strength=0.6, layers=[18, 19, 20], scope="generated"):
        steered_generated = generate()

    print(f"prompt:                 {PROMPT}")
    print(f"unsteered:              {baseline!r}")
    print(f"λ 0.6, scope all:       {steered_all!r}")
    print(f"λ 0.6, scope generated: {steered_generated!r}")
    hooks = sum(len(layer._forward_hooks) for layer in model.model.layers)
    print(f"hooks left on the model after the blocks: {hooks}")


if __name__ == "__main__":
    main()
