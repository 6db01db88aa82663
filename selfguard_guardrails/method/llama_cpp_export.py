"""A steering vector as a llama.cpp control-vector GGUF, for llama.cpp's own server and CLI.

The file has llama.cpp's `controlvector` architecture and one `direction.l` tensor per layer,
where `l` is our layer index: llama.cpp adds `direction.l` to the output of decoder layer `l`,
the convention `tests/test_llama_cpp_runtime.py` checks against llama.cpp's hidden states.
llama.cpp has no layer 0 direction (its control vectors start at layer 1), so layer 0 is left out.

What llama.cpp's tools cannot do is said with the options: they apply the vector to every
request and every token (the paper's `self-guard` on all prompts, no awareness gate, scope
`all`), and the safety reminder the engine appends to the user's turn is the client's job.
"""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import gguf

from ..errors import InvalidSettingError
from .vector import SteeringVector

ARCHITECTURE = "controlvector"


@dataclass(frozen=True)
class ControlVectorFile:
    """An exported control vector and how llama.cpp's tools apply it."""

    path: Path
    layers: tuple[int, ...]
    strength: float

    def options(self) -> list[str]:
        """`llama-server` / `llama-cli` options: the file at λ, on the setting's layers only."""
        return ["--control-vector-scaled", str(self.path), f"{self.strength:g}",
                "--control-vector-layer-range", str(min(self.layers)), str(max(self.layers))]

    def command_line(self, tool: str = "llama-server", model: str = "MODEL.gguf") -> str:
        return shlex.join([tool, "-m", model, *self.options()])


def export_control_vector(vector: SteeringVector, path: str | os.PathLike, *, layers: tuple[int, ...],
                          strength: float, model_hint: str = "llama") -> ControlVectorFile:
    """Write the directions of `layers` to `path` (a .gguf file) for llama.cpp, to be scaled by `strength`."""
    if not layers:
        raise InvalidSettingError("Export needs at least one layer to steer.")
    missing = [layer for layer in layers if layer not in vector.directions]
    if missing:
        raise InvalidSettingError(f"The vector has no direction for layer(s) {missing}; it has "
                                  f"{sorted(vector.directions)}. Choose layers it has.")
    if 0 in layers:
        raise InvalidSettingError("llama.cpp's control vectors start at layer 1, so layer 0 cannot be exported: "
                                  "choose layers from 1 up.")
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(target), ARCHITECTURE)
    writer.add_string(f"{ARCHITECTURE}.model_hint", model_hint)
    writer.add_uint32(f"{ARCHITECTURE}.layer_count", len(layers))
    for layer in sorted(layers):
        writer.add_tensor(f"direction.{layer}", vector.directions[layer].float().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return ControlVectorFile(target, tuple(sorted(layers)), strength)

