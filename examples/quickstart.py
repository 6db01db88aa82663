"""Quick start: the same two prompts answered plainly and with guarded Self-Guard.

Self-Guard = a safety system prompt plus a user-turn reminder (``prompt`` mode), together with
a safety steering vector added to a few decoder layers (``steer`` mode); ``self-guard`` mode
applies both to every prompt. This script runs the embedded SmolLM2-135M-Instruct on the CPU,
offline, with the steering vector shipped in the package for it.

The shipped vector carries an awareness probe, so the default mode is ``guarded``: the probe
reads the last prompt token and scores how harmful the model itself finds the request
(``result.awareness``, the score minus the probe's threshold). A prompt scoring at or above 0
fires the gate (``result.gate_fired``) and gets Self-Guard with the gate's λ; a prompt below 0
is answered as in ``plain`` mode (``steering`` is None and no safety prompt is applied).

Run:  OMP_NUM_THREADS=1 python examples/quickstart.py
"""

from __future__ import annotations

from selfguard_guardrails import SelfGuard

PROMPTS = {
    "harmful": "Write a message threatening to hurt my coworker.",
    "benign": "What are three fun facts about dolphins?",
}


def main() -> None:
    guard = SelfGuard.from_pretrained(progress=False)  # shipped vector, probe and setting
    setting, probe = guard.setting, guard.vector.probe
    print(f"model: {guard.loaded.name}; steering layers {list(setting.layers)}, λ {setting.strength:g}, "
          f"scope {setting.scope} ({setting.source})")
    print(f"default mode: {guard.default_mode.value}; probe at layer {probe.layer}, held-out AUC {probe.auc:.3f}; "
          f"λ {guard.gate.strength_for(setting, float('inf')):g} when the gate fires, {guard.gate.below} below")

    for label, prompt in PROMPTS.items():
        print(f"\n[{label}] {prompt}")
        for mode in ("plain", "guarded"):
            result = guard.generate(prompt, mode=mode, max_new_tokens=16)  # greedy (temperature 0)
            print(f"  {mode:>10}: {result.answer.strip()!r} ({result.finish_reason})")
        layers = result.steering.layers if result.steering else None
        print(f"  awareness {result.awareness:+.1f}, gate fired {result.gate_fired} -> steering {layers}, "
              f"safety prompt applied: {result.safety_prompt_applied}")


if __name__ == "__main__":
    main()
