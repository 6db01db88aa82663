"""From the common options to a loaded engine: the one place where they become settings.

Heavy modules are imported inside the functions, so the parser can import this module without
loading torch.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .options import GATE_FLAGS, STEERING_FLAGS, given_flags

if TYPE_CHECKING:
    from ..engine.selfguard import SelfGuard
    from ..settings import SteeringSetting


def steering_setting(args: argparse.Namespace, num_layers: int, *, source: str,
                     recorded: Callable[[], SteeringSetting] | None = None) -> SteeringSetting:
    """The steering options given, each one not given taken from the `recorded` setting (the
    engine's), or from the provisional one when there is none or when layers and λ are both
    given: then the recorded setting, which may have to extract a vector first, is not read.
    A budget of steered tokens is kept only while the scope still counts generated tokens."""
    from ..runtime.layers import validate_layers
    from ..settings import SteeringSetting, provisional_setting

    if args.layers is not None:
        validate_layers(args.layers, num_layers)
    explicit = args.layers is not None and args.strength is not None
    base = recorded() if recorded is not None and not explicit else provisional_setting(num_layers)
    scope = args.scope or base.scope
    kept_tokens = base.max_tokens if scope != "all" else None
    return SteeringSetting(
        layers=tuple(args.layers if args.layers is not None else base.layers),
        strength=args.strength if args.strength is not None else base.strength,
        scope=scope, source=source,
        max_tokens=args.steer_tokens if args.steer_tokens is not None else kept_tokens,
        repetition_penalty=args.repetition_penalty if args.repetition_penalty is not None else base.repetition_penalty,
        stop_after_refusal=(args.refusal_stop == "on" if getattr(args, "refusal_stop", None) is not None
                            else base.stop_after_refusal),
        allow_negative_strength=args.allow_negative_strength,
    )


def load_engine(args: argparse.Namespace, *, mode: str | None = None, **engine_options: Any) -> SelfGuard:
    """Load the model named by the common options and wrap it in an engine with the steering asked
    for (`engine_options`: more of the engine's own, such as audit)."""
    from ..engine.selfguard import SelfGuard
    from ..method.vector import SteeringVector
    from ..runtime.loading.runtimes import load_on_runtime
    from ..settings import GateSetting

    vector = SteeringVector.load(args.vector) if args.vector else None  # a bad path fails before the model loads
    loaded = load_on_runtime(args.model, runtime=args.runtime, dtype=args.dtype, device=args.device,
                             threads=args.threads, cache_dir=args.cache_dir, allow_download=args.allow_download,
                             progress=not args.quiet)
    thinking = None if args.thinking is None else args.thinking == "on"
    engine = SelfGuard(loaded, vector=vector, mode=mode, thinking=thinking, think_in_tags=args.think_in_tags,
                       cache_dir=args.cache_dir, progress=not args.quiet, **engine_options)
    if vector is not None:
        engine.vector  # noqa: B018 - checks now that the vector fits this model
    if given_flags(args, GATE_FLAGS):
        recorded_gate = engine.gate  # read before a steering setting is given, which would change its λ
        engine.use_gate(GateSetting(
            strength=args.gate_strength if args.gate_strength is not None else recorded_gate.strength,
            below=args.below_gate or recorded_gate.below,
            soft_width=args.soft_gate if args.soft_gate is not None else recorded_gate.soft_width,
            threshold=args.gate_threshold if args.gate_threshold is not None else recorded_gate.threshold,
            source="command line", allow_negative_strength=args.allow_negative_strength))
    if given_flags(args, STEERING_FLAGS):
        engine.use_setting(steering_setting(args, engine.num_layers, source="command line",
                                            recorded=lambda: engine.setting))
    return engine
