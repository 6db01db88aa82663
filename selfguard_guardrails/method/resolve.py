"""Find the steering vector and setting for a model runtime: given, shipped, cached, or extracted.

Order: an explicit vector (object or path) > a vector shipped in the package for this model
fingerprint and safety prompt > one cached from an earlier extraction > extract it now from
our packaged calibration prompts (progress bar) and cache it for next time.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

from ..errors import InvalidMessagesError
from ..runtime.chat import Messages
from ..runtime.layers import validate_layers
from ..runtime.loading import default_cache_dir
from ..runtime.protocol import ModelRuntime
from ..settings import GateSetting, SteeringSetting, provisional_setting
from .extraction import Method, measure_steering_vector
from .probe import AwarenessProbe, ProbeMethod, ProbeReading
from .probe_fitting import fit_probe
from .prompt_sets import calibration_records
from .prompting import NEUTRAL_BASELINE, SafetyPrompt
from .vector import SteeringVector, recorded_gate, recorded_setting

logger = logging.getLogger(__name__)


def shipped_vector_path(fingerprint: str) -> Path | None:
    """The package's own vector for a model fingerprint, if we ship one."""
    candidate = resources.files("selfguard_guardrails.data").joinpath(f"{fingerprint}.safetensors")
    return Path(str(candidate)) if candidate.is_file() else None


def cached_vector_path(fingerprint: str, safety: SafetyPrompt, cache_dir: str | os.PathLike | None) -> Path:
    """Keyed by model, safety prompt and the default baseline, so none of them can go stale."""
    root = Path(cache_dir) if cache_dir else default_cache_dir()
    name = f"{fingerprint}-{safety.fingerprint()}-{NEUTRAL_BASELINE.fingerprint()}.safetensors"
    return root / "vectors" / name


def resolve_vector(
    runtime: ModelRuntime,
    source: SteeringVector | str | os.PathLike | None,
    *,
    safety: SafetyPrompt,
    cache_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> SteeringVector:
    """Return a vector that fits the runtime's model, or raise VectorMismatchError/CorruptFileError."""
    if source is not None:
        vector = source if isinstance(source, SteeringVector) else SteeringVector.load(source)
        vector.check_fits(num_layers=runtime.num_layers, hidden_size=runtime.hidden_size,
                          fingerprint=runtime.fingerprint)
        return vector
    shipped = shipped_vector_path(runtime.fingerprint)
    if shipped is not None:
        vector = SteeringVector.load(shipped)
        if vector.safety_prompt_hash == safety.fingerprint():
            return vector
        logger.info("The shipped vector was made with another safety prompt; extracting one for yours.")
    cached = cached_vector_path(runtime.fingerprint, safety, cache_dir)
    if cached.is_file():
        return SteeringVector.load(cached)
    logger.warning("No steering vector for %s yet: extracting one from the calibration prompts (once; cached at %s).",
                   runtime.name, cached)
    vector = calibration_vector(runtime, safety, progress=progress)
    vector.save(cached)
    return vector


def calibration_vector(runtime: ModelRuntime, safety: SafetyPrompt, *, baseline: SafetyPrompt | None = NEUTRAL_BASELINE,
                       method: Method = "mean_difference", probe_method: ProbeMethod = "logistic",
                       batch_size: int = 16, progress: bool = True) -> SteeringVector:
    """Vector and awareness probe from our packaged, labelled calibration prompts."""
    records = calibration_records()
    vector = measure_steering_vector(runtime, [r["prompt"] for r in records], safety=safety, baseline=baseline,
                                     method=method, batch_size=batch_size, progress=progress)
    vector.probe = packaged_probe(runtime, method=probe_method, batch_size=batch_size, progress=progress)
    return vector


def packaged_probe(runtime: ModelRuntime, *, harmful: Sequence[Messages] = (), benign: Sequence[Messages] = (),
                   groups: Sequence[str] | None = None, method: ProbeMethod = "logistic",
                   reading: ProbeReading = "last+mean",
                   max_false_positive: float = 0.05, batch_size: int = 16, progress: bool = True) -> AwarenessProbe:
    """The awareness probe fitted on our labelled prompts plus any the caller adds (e.g. a
    calibration split, or framed and multi-turn versions of requests, so the gate has seen the
    shapes of the requests it will judge). `groups` names each added prompt's source request
    (harmful first, then benign), so its variants share a fold; by default each prompt is its own."""
    added = [*harmful, *benign]
    if groups is not None and len(groups) != len(added):
        raise InvalidMessagesError(f"Give one group per added prompt: {len(groups)} groups for {len(added)} prompts.")
    labelled: dict[str, tuple[Messages, int, str]] = {}
    for record in calibration_records():
        labelled.setdefault(record["prompt"], (record["prompt"], int(record["label"] == "harmful"), record["id"]))
    for index, prompt in enumerate(added):
        key = prompt if isinstance(prompt, str) else json.dumps(prompt, sort_keys=True)
        group = groups[index] if groups is not None else key
        labelled.setdefault(key, (prompt, int(index < len(harmful)), group))
    ordered = sorted(labelled.values(), key=lambda item: -item[1])  # harmful first, as fit_probe takes them
    split = sum(label for _, label, _ in ordered)
    return fit_probe(runtime, [p for p, _, _ in ordered[:split]], [p for p, _, _ in ordered[split:]],
                     groups=[g for _, _, g in ordered], method=method, reading=reading,
                     max_false_positive=max_false_positive,
                     batch_size=batch_size, progress=progress)


def resolve_setting(explicit: SteeringSetting | None, vector: SteeringVector, num_layers: int) -> SteeringSetting:
    """An explicit setting, else one recorded in the vector file, else the provisional default."""
    if explicit is not None:
        validate_layers(list(explicit.layers), num_layers)
        return explicit
    setting = recorded_setting(vector)
    if setting is not None:
        validate_layers(list(setting.layers), num_layers)
        return setting
    return provisional_setting(num_layers)


def resolve_gate(explicit: GateSetting | None, vector: SteeringVector) -> GateSetting:
    """An explicit gate setting, else the one calibration recorded in the vector file, else the default."""
    if explicit is not None:
        return explicit
    return recorded_gate(vector) or GateSetting()
