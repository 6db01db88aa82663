"""Find the decoder layers of a Hugging Face causal LM, whatever the architecture calls them."""

from __future__ import annotations

from torch import nn

from ..errors import InvalidSettingError

# Attribute paths of the decoder-layer list, most common first (Llama/Qwen/Mistral, GPT-2, GPT-NeoX, OPT).
_LAYER_PATHS = (
    "model.layers",
    "model.language_model.layers",
    "transformer.h",
    "gpt_neox.layers",
    "model.decoder.layers",
    "transformer.blocks",
    "layers",
)


def decoder_layers(model: nn.Module) -> nn.ModuleList:
    """Return the model's list of decoder layers; the place where steering adds its vector."""
    for path in _LAYER_PATHS:
        module: object = model
        for part in path.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if isinstance(module, nn.ModuleList) and len(module) > 0:
            return module
    raise InvalidSettingError(
        f"Could not find the decoder layers of {type(model).__name__}: looked for {', '.join(_LAYER_PATHS)}. "
        "Steering supports decoder-only causal LMs whose layers sit in one of those places."
    )


def validate_layers(layers: list[int] | tuple[int, ...], num_layers: int) -> list[int]:
    """Check layer indices against the model and return them sorted, without duplicates."""
    bad = [index for index in layers if not isinstance(index, int) or not 0 <= index < num_layers]
    if bad:
        raise InvalidSettingError(
            f"Layer index {bad[0]!r} is out of range: this model has {num_layers} decoder layers, "
            f"so use indices 0 to {num_layers - 1}."
        )
    if not layers:
        raise InvalidSettingError("No layers given to steer: name at least one decoder layer index.")
    return sorted(set(layers))
