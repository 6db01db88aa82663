"""Reading hidden states out of llama.cpp's own forward pass.

llama.cpp names the output of decoder layer ``il`` (0-based, after the control vector is
added) ``l_out-{il}`` in its compute graph. A context created with an evaluation callback is
asked, node by node, whether we want to see a tensor; for the layers we want it answers yes,
copies the tensor (``[tokens, hidden]`` floats) once it is computed, and answers "stop" once
the deepest wanted layer is in: ggml then leaves the layers above it uncomputed. The model's weights
are shared with every other context, so no second copy of the model is loaded.

Only the ggml calls this needs are bound here (`ggml_get_name`, `ggml_nbytes`,
`ggml_backend_tensor_get`), and the tensor's leading fields (type, buffer, sizes), which
ggml's header has kept in this order since the GGUF format began.
"""

from __future__ import annotations

import ctypes
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np

LAYER_OUTPUT = "l_out-"
_F32 = 0  # GGML_TYPE_F32


class _TensorHead(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("buffer", ctypes.c_void_p), ("ne", ctypes.c_int64 * 4),
                ("nb", ctypes.c_size_t * 4)]


_GGML_FILES = ("libggml-base.so", "libggml.so", "libggml-base.dylib", "libggml.dylib", "ggml-base.dll", "ggml.dll")


def _bind_ggml() -> Any:
    """ggml's shared library as llama-cpp-python ships it, next to its own."""
    folder = Path(llama_cpp.__file__).parent / "lib"
    found = next((folder / name for name in _GGML_FILES if (folder / name).exists()), None)
    if found is None:
        raise ImportError(f"llama-cpp-python's ggml library is not in {folder}: reinstall llama-cpp-python.")
    lib = ctypes.CDLL(str(found))
    lib.ggml_get_name.argtypes, lib.ggml_get_name.restype = [ctypes.c_void_p], ctypes.c_char_p
    lib.ggml_nbytes.argtypes, lib.ggml_nbytes.restype = [ctypes.c_void_p], ctypes.c_size_t
    lib.ggml_backend_tensor_get.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t]
    lib.ggml_backend_tensor_get.restype = None
    return lib


_LIB = _bind_ggml()


class LayerCapture:
    """The evaluation callback of a probe context: which layers to keep on the next pass, and
    what they held. `callback` must stay referenced as long as the context lives."""

    def __init__(self) -> None:
        self.wanted: set[int] = set()
        self.states: dict[int, np.ndarray] = {}
        self.callback = llama_cpp.ggml_backend_sched_eval_callback(self._on_tensor)

    def expect(self, layers: set[int]) -> None:
        self.wanted, self.states = set(layers), {}

    def _on_tensor(self, tensor: int, ask: bool, user_data: Any) -> bool:
        name = _LIB.ggml_get_name(tensor).decode("utf-8", "replace")
        if not name.startswith(LAYER_OUTPUT):
            return not ask  # not wanted; when told a tensor is done, go on
        layer = int(name[len(LAYER_OUTPUT):])
        if ask:
            return layer in self.wanted
        head = _TensorHead.from_address(tensor)
        if head.type == _F32 and layer in self.wanted:
            values = np.empty(_LIB.ggml_nbytes(tensor) // 4, dtype=np.float32)
            _LIB.ggml_backend_tensor_get(tensor, values.ctypes.data, 0, values.nbytes)
            self.states[layer] = values.reshape(int(head.ne[1]), int(head.ne[0]))
        return not self.wanted.issubset(self.states)  # False: the rest of the pass is not computed
