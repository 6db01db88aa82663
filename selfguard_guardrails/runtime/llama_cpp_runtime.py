"""The llama.cpp runtime: a GGUF model on llama-cpp-python behind the engine's `ModelRuntime` seam.

The GGUF runs as it is (quantized, at llama.cpp's CPU speed); the tokenizer and chat template
are the transformers ones built from the same file, so a rendered prompt gives the same token
ids in both runtimes. Steering is llama.cpp's control vector, set for one request's decode and
cleared after it; rows that need different steering at a step are decoded as separate groups,
each with its own vector. Hidden states for the awareness probe are read from llama.cpp's own
forward pass (`llama_cpp_capture.py`), in a second context over the same weights.

Layer numbering (checked against llama.cpp's hidden states in the tests): our layer ``l`` is the
output of decoder layer ``l`` (0-based), which llama.cpp names ``l_out-l`` and steers from the
control-vector slot ``l``; its buffer starts at slot 1, so the output of layer 0 cannot be steered.
"""

from __future__ import annotations

import ctypes
import math
import threading
import time
from collections.abc import Generator, Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import llama_cpp
import numpy as np
import torch

from ..errors import InvalidSettingError, ModelNotFoundError
from .decoding import DecodeClock, DecodeOptions, penalise_repeats, sample_tokens
from .llama_cpp_capture import LayerCapture
from .locking import hold_model
from .protocol import PromptBatch, Steering, encode_prompts

_backend_ready = threading.Lock()
_backend_started = False


def _start_backend() -> None:
    """llama.cpp's one-time initialisation, with its log lines sent nowhere (errors still raise)."""
    global _backend_started
    with _backend_ready:
        if not _backend_started:
            llama_cpp.llama_log_set(_QUIET, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
            _backend_started = True


@llama_cpp.llama_log_callback
def _QUIET(level: int, text: bytes, user_data: Any) -> None:
    return None


BATCH_TOKENS = 512  # tokens per llama_decode call (llama.cpp's n_batch)


def _round_up(tokens: int, step: int = 256) -> int:
    return -(-tokens // step) * step


class _Segment:
    """Tokens of one row fed in one `llama_decode` call, at consecutive positions."""

    __slots__ = ("row", "start", "tokens", "want_logits")

    def __init__(self, row: int, tokens: Sequence[int], start: int, want_logits: bool) -> None:
        self.row, self.tokens, self.start, self.want_logits = row, list(tokens), start, want_logits


def set_control_vector(context: Any, steering: Steering | None, strength: float, layers: int, hidden: int) -> None:
    """Make `strength` × the directions of `steering` the context's control vector (None clears it).
    llama.cpp's buffer holds one row per layer from layer 1, and slot ``l`` is added to the output
    of decoder layer ``l``: the tests check this against llama.cpp's hidden states."""
    if steering is None:
        llama_cpp.llama_set_adapter_cvec(context, None, 0, hidden, 0, 0)
        return
    if 0 in steering.layers:
        raise InvalidSettingError("llama.cpp cannot steer the output of layer 0 (its control vectors start at "
                                  "layer 1): choose layers from 1 up.")
    data = np.zeros((layers, hidden), dtype=np.float32)
    for layer in steering.layers:
        data[layer - 1] = strength * steering.directions[layer].to(torch.float32).numpy()
    code = llama_cpp.llama_set_adapter_cvec(context, data.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), data.size,
                                            hidden, min(steering.layers), max(steering.layers))
    if code != 0:
        raise InvalidSettingError(f"llama.cpp refused the control vector (code {code}): it does not fit the model.")


class LlamaCppRuntime:
    """A GGUF model on llama.cpp: the engine's `ModelRuntime`."""

    def __init__(self, path: Path, tokenizer: Any, *, name: str = "", fingerprint: str = "",
                 context_window: int | None = None, threads: int = 1) -> None:
        _start_backend()
        self.path = Path(path)
        self.tokenizer = tokenizer
        self.name = name or self.path.name
        self.fingerprint = fingerprint
        self.threads = threads
        params = llama_cpp.llama_model_default_params()
        self._model = llama_cpp.llama_model_load_from_file(str(self.path).encode("utf-8"), params)
        if not self._model:
            raise ModelNotFoundError(f"llama.cpp could not load {self.path}: it is not a GGUF model whose "
                                     "architecture this llama-cpp-python build knows. Update llama-cpp-python, or "
                                     "load it with runtime='transformers'.")
        self._vocab = llama_cpp.llama_model_get_vocab(self._model)
        self.vocab_size = int(llama_cpp.llama_vocab_n_tokens(self._vocab))
        self._layers = int(llama_cpp.llama_model_n_layer(self._model))
        self._hidden = int(llama_cpp.llama_model_n_embd(self._model))
        trained = int(llama_cpp.llama_model_n_ctx_train(self._model))
        self.context_window = min(context_window or trained, trained)
        self._eos = sorted({t for t in (tokenizer.eos_token_id, llama_cpp.llama_vocab_eos(self._vocab),
                                        llama_cpp.llama_vocab_eot(self._vocab)) if t is not None and t >= 0})
        self._capture = LayerCapture()
        self._decoder: Any = None  # made, and made again larger, as requests need (`_make_room`)
        self._decoder_room = (0, 0)  # rows, tokens per row
        self._prober: Any = None
        self._prober_room = 0
        self._steering_key: tuple[int, float] | None = None

    # -- contexts --------------------------------------------------------------------------
    def _context(self, *, rows: int, tokens: int, capture: LayerCapture | None = None) -> Any:
        params = llama_cpp.llama_context_default_params()
        params.n_ctx = rows * tokens
        params.n_batch = params.n_ubatch = BATCH_TOKENS
        params.n_seq_max = rows
        params.kv_unified = False  # each row its own cache of `tokens`
        params.n_threads = params.n_threads_batch = self.threads
        if capture is not None:
            params.cb_eval = capture.callback
        context = llama_cpp.llama_init_from_model(self._model, params)
        if not context:
            raise InvalidSettingError(f"llama.cpp could not make a context of {params.n_ctx} tokens for {self.name}: "
                                      "send fewer or shorter prompts at once.")
        return context

    def _make_room(self, rows: int, tokens: int) -> None:
        """A decode context with room for `rows` rows of `tokens` tokens (kept while it is enough)."""
        have_rows, have_tokens = self._decoder_room
        if rows <= have_rows and tokens <= have_tokens:
            return
        rows, tokens = max(rows, have_rows), min(self.context_window, _round_up(max(tokens, have_tokens)))
        if self._decoder:
            llama_cpp.llama_free(self._decoder)
        self._decoder, self._decoder_room, self._steering_key = None, (0, 0), None
        self._decoder = self._context(rows=rows, tokens=tokens)
        self._decoder_room = (rows, tokens)

    def _probe_room(self, tokens: int) -> None:
        if tokens <= self._prober_room:
            return
        tokens = min(self.context_window, _round_up(tokens))
        if self._prober:
            llama_cpp.llama_free(self._prober)
        self._prober, self._prober_room = None, 0
        self._prober = self._context(rows=1, tokens=tokens, capture=self._capture)
        self._prober_room = tokens

    def close(self) -> None:
        """Free the contexts and the model (also done when the runtime is collected)."""
        for context in (getattr(self, "_decoder", None), getattr(self, "_prober", None)):
            if context:
                llama_cpp.llama_free(context)
        if getattr(self, "_model", None):
            llama_cpp.llama_model_free(self._model)
        self._decoder = self._prober = self._model = None

    def __del__(self) -> None:
        self.close()

    # -- the protocol ----------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        return self._layers

    @property
    def hidden_size(self) -> int:
        return self._hidden

    def details(self) -> dict[str, Any]:
        description = ctypes.create_string_buffer(256)
        llama_cpp.llama_model_desc(self._model, description, len(description))
        return {"architecture": description.value.decode("utf-8", "replace"), "runtime": "llama.cpp",
                "llama_cpp_python": llama_cpp.__version__, "threads": self.threads, "gguf": str(self.path)}

    def hold(self) -> AbstractContextManager[None]:
        return hold_model(self)

    def encode(self, texts: Sequence[str]) -> PromptBatch:
        return encode_prompts(self.tokenizer, texts)

    def last_token_states(self, texts: Sequence[str], *, up_to_layer: int | None = None, batch_size: int = 16,
                          desc: str = "activations", progress: bool = False,
                          mean_after: int | None = None) -> torch.Tensor:
        deepest = self._layers - 1 if up_to_layer is None else up_to_layer
        layers = list(range(deepest + 1))
        rows = []
        for text in texts:
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
            self._probe_room(len(ids))
            states = self._layer_states(self._prober, ids, set(layers))
            last = [torch.from_numpy(states[layer][-1]) for layer in layers]
            if mean_after is not None:
                counted = slice(mean_after, None) if len(ids) > mean_after else slice(None)
                last = [torch.cat([state, torch.from_numpy(states[layer][counted].mean(axis=0))])
                        for state, layer in zip(last, layers, strict=True)]
            rows.append(torch.stack(last))
        return torch.stack(rows) if rows else torch.empty(0, len(layers), self._hidden)

    def decode(self, batch: PromptBatch, options: DecodeOptions, steering: Steering | None, clock: DecodeClock,
               stopped: list[bool]) -> Generator[list[int | None], None, None]:
        prompts = [row[mask.bool()].tolist() for row, mask in zip(batch.input_ids, batch.attention_mask, strict=True)]
        self._make_room(len(prompts), max(len(ids) for ids in prompts) + options.max_new_tokens)
        try:
            yield from self._decode_rows(prompts, options, steering, clock, stopped)
        finally:
            self._set_steering(None, 0.0)

    def continuation_logprobs(self, rows: Sequence[tuple[Sequence[int], Sequence[int]]],
                              steering: Steering | None = None) -> list[float]:
        totals = []
        try:
            for context, target in rows:
                tokens = [*context, *target]
                self._make_room(1, len(tokens))
                self._clear(self._decoder)
                logits = self._feed([_Segment(0, tokens, 0, True)], steering, {0: len(context)}, all_logits=True)[0]
                log_probs = torch.log_softmax(logits[len(context) - 1:len(tokens) - 1].double(), dim=-1)
                totals.append(float(log_probs[torch.arange(len(target)), torch.tensor(list(target))].sum()))
        finally:
            self._set_steering(None, 0.0)
        return totals

    # -- decoding ----------------------------------------------------------------------------
    def _decode_rows(self, prompts: list[list[int]], options: DecodeOptions, steering: Steering | None,
                     clock: DecodeClock, stopped: list[bool]) -> Generator[list[int | None], None, None]:
        self._clear(self._decoder)
        lengths = {row: len(ids) for row, ids in enumerate(prompts)}
        generator = torch.Generator().manual_seed(options.seed) if options.seed is not None else None
        eos = torch.tensor(self._eos, dtype=torch.long)
        seen: torch.Tensor | None = None
        ended = [False] * len(prompts)
        segments = [_Segment(row, ids, 0, True) for row, ids in enumerate(prompts)]
        for step in range(options.max_new_tokens):
            tick = time.perf_counter()
            rows = [segment.row for segment in segments]
            last_logits = self._feed(segments, steering, lengths)
            logits = torch.stack([last_logits[row][-1] for row in rows])
            if step < options.min_new_tokens and len(eos):
                logits = logits.index_fill(-1, eos, float("-inf"))
            if options.repetition_penalty not in (None, 1.0):
                seen = torch.zeros(len(prompts), self.vocab_size, dtype=torch.bool) if seen is None else seen
                logits = penalise_repeats(logits, seen[rows], options.repetition_penalty)
            tokens = sample_tokens(logits, options, generator).tolist()
            if seen is not None:
                seen[rows, tokens] = True
            elapsed = time.perf_counter() - tick
            if step == 0:
                clock.prefill_seconds += elapsed
            else:
                clock.decode_seconds += elapsed
            chosen = dict(zip(rows, tokens, strict=True))
            shown: list[int | None] = []
            for row in range(len(prompts)):
                ended[row] = ended[row] or stopped[row]
                token = None if ended[row] else chosen.get(row)
                if token is not None and token in self._eos:
                    ended[row], token = True, None
                shown.append(token)
            yield shown
            segments = []
            for row, token in enumerate(shown):
                ended[row] = ended[row] or stopped[row]
                if token is not None and not ended[row]:
                    segments.append(_Segment(row, [token], lengths[row] + step, True))
            if not segments:
                return

    def _feed(self, segments: list[_Segment], steering: Steering | None, prompt_lengths: dict[int, int],
              all_logits: bool = False) -> dict[int, torch.Tensor]:
        """Run `segments` through the decode context, each token with the strength its position
        gets, and return each row's logits (its last position's, or all with `all_logits`).
        A row's pieces run in position order (wave by wave), so its cache stays causal; within a
        wave, rows that get the same strength run together."""
        cuts = [self._split_by_strength(segment, steering, prompt_lengths[segment.row]) for segment in segments]
        logits: dict[int, list[torch.Tensor]] = {}
        for wave in range(max((len(row_cuts) for row_cuts in cuts), default=0)):
            groups: dict[float, list[_Segment]] = {}
            for row_cuts in cuts:
                if wave < len(row_cuts):
                    groups.setdefault(row_cuts[wave][0], []).append(row_cuts[wave][1])
            for strength, parts in groups.items():
                self._set_steering(steering, strength)
                for row, values in self._run(self._decoder, parts, all_logits).items():
                    logits.setdefault(row, []).append(values)
        return {row: torch.cat(values) for row, values in logits.items()}

    @staticmethod
    def _split_by_strength(segment: _Segment, steering: Steering | None,
                           prompt_length: int) -> list[tuple[float, _Segment]]:
        """The segment cut where its positions' steering changes (token scopes count positions
        from the prompt's end, as the transformers hooks do)."""
        if steering is None:
            return [(0.0, segment)]
        strength = float(steering.strengths[segment.row])
        if steering.scope == "all":
            return [(strength, segment)]
        first = prompt_length - (1 if steering.scope == "answer" else 0)
        last = math.inf if steering.max_tokens is None else first + steering.max_tokens
        cuts: list[tuple[float, _Segment]] = []
        index = 0
        while index < len(segment.tokens):
            position = segment.start + index
            steered = first <= position < last
            end = index
            while end < len(segment.tokens) and (first <= segment.start + end < last) == steered:
                end += 1
            cuts.append((strength if steered else 0.0,
                         _Segment(segment.row, segment.tokens[index:end], position, segment.want_logits)))
            index = end
        return cuts

    def _run(self, context: Any, segments: list[_Segment], all_logits: bool) -> dict[int, torch.Tensor]:
        """One or more `llama_decode` calls over the segments (split at the batch size)."""
        capacity = BATCH_TOKENS
        entries = [(segment, index) for segment in segments for index in range(len(segment.tokens))]
        results: dict[int, list[torch.Tensor]] = {}
        batch = llama_cpp.llama_batch_init(capacity, 0, 1)
        try:
            for start in range(0, len(entries), capacity):
                chunk = entries[start:start + capacity]
                batch.n_tokens = len(chunk)
                for slot, (segment, index) in enumerate(chunk):
                    batch.token[slot] = segment.tokens[index]
                    batch.pos[slot] = segment.start + index
                    batch.n_seq_id[slot] = 1
                    batch.seq_id[slot][0] = segment.row
                    batch.logits[slot] = all_logits or index == len(segment.tokens) - 1
                code = llama_cpp.llama_decode(context, batch)
                if code != 0:
                    raise InvalidSettingError(f"llama.cpp could not decode {len(chunk)} tokens (code {code}): the "
                                              f"prompts do not fit its context of {self.context_window} tokens.")
                for slot, (segment, index) in enumerate(chunk):
                    if all_logits or index == len(segment.tokens) - 1:
                        pointer = llama_cpp.llama_get_logits_ith(context, slot)
                        values = np.ctypeslib.as_array(pointer, shape=(self.vocab_size,))
                        results.setdefault(segment.row, []).append(torch.tensor(values)[None])
        finally:
            llama_cpp.llama_batch_free(batch)
        return {row: torch.cat(values) for row, values in results.items()}

    def _set_steering(self, steering: Steering | None, strength: float) -> None:
        """Set `strength` × the directions as the decode context's control vector (cleared for 0).
        The vector in place is not set again: setting one rebuilds llama.cpp's graph."""
        key = None if steering is None or strength == 0 else (id(steering), strength)
        if key != self._steering_key:
            set_control_vector(self._decoder, None if key is None else steering, strength, self._layers,
                               self._hidden)
            self._steering_key = key

    def _clear(self, context: Any) -> None:
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(context), True)

    def _layer_states(self, context: Any, ids: list[int], layers: set[int]) -> dict[int, np.ndarray]:
        """Each wanted layer's outputs over all of `ids`: [tokens, hidden] per layer."""
        self._clear(context)
        self._capture.expect(layers)
        chunks: dict[int, list[np.ndarray]] = {layer: [] for layer in layers}
        capacity = BATCH_TOKENS
        for start in range(0, len(ids), capacity):
            self._capture.expect(layers)
            self._run(context, [_Segment(0, ids[start:start + capacity], start, True)], all_logits=False)
            for layer in layers:
                chunks[layer].append(self._capture.states[layer])
        return {layer: np.concatenate(parts) for layer, parts in chunks.items()}
