"""Progress bars of a load: transformers', the hub's and the GGUF converter's tqdm bars, on or off."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

__all__ = ["progress_bars"]


@contextlib.contextmanager
def progress_bars(enabled: bool) -> Iterator[None]:
    """Silence transformers' and the GGUF converter's tqdm bars unless ``enabled``."""
    if enabled:
        yield
        return
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hub_disabled = _hub_bars_disabled()
    gguf_module: Any = None  # a module patched by name: its `tqdm` exists in some transformers versions only
    original_tqdm = None
    with contextlib.suppress(Exception):
        import transformers.modeling_gguf_pytorch_utils as gguf_module

        original_tqdm = getattr(gguf_module, "tqdm", None)
    hf_logging.disable_progress_bar()
    if gguf_module is not None and original_tqdm is not None:
        gguf_module.tqdm = _silent_tqdm(original_tqdm)
    try:
        yield
    finally:
        if gguf_module is not None and original_tqdm is not None:
            gguf_module.tqdm = original_tqdm
        if was_enabled:
            hf_logging.enable_progress_bar()
            if hub_disabled:
                with contextlib.suppress(Exception):
                    from huggingface_hub.utils import disable_progress_bars

                    disable_progress_bars()


def _hub_bars_disabled() -> bool:
    try:
        from huggingface_hub.utils import are_progress_bars_disabled
    except ImportError:
        return False
    return bool(are_progress_bars_disabled())


def _silent_tqdm(tqdm_cls: Any) -> Any:
    def make(*args: Any, **kwargs: Any) -> Any:
        kwargs["disable"] = True
        return tqdm_cls(*args, **kwargs)

    return make
