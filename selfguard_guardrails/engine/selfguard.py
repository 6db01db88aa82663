"""The Self-Guard engine: one local model, safety prompting plus activation steering, typed results.

Every adapter (CLI, LangChain, LlamaIndex) shares this class. It is a facade: it resolves the
vector and settings (the method), routes each prompt through the awareness gate (`gate.py`),
asks the model runtime to decode with the steering the route needs (`decode_loops.py`), and
hands each result to the leak guard and the audit log (`audit_records.py`). Calls are
serialised by the runtime's lock, because steering is global to the model; a stream holds the
lock only while it is being iterated, and releases it as soon as the caller stops.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import torch

from ..audit import AuditSink, FailureMode, audit_log
from ..errors import InvalidMessagesError, InvalidSettingError, PromptTooLongError
from ..leakage.guard import LeakGuard
from ..leakage.policy import LeakPolicy
from ..leakage.streaming import StreamGuard
from ..method.extraction import measure_steering_vector
from ..method.probe_fitting import probe_texts
from ..method.prompting import NEUTRAL_BASELINE, SafetyPrompt, apply_safety_prompt, baseline_name
from ..method.resolve import (
    calibration_vector,
    resolve_gate,
    resolve_setting,
    resolve_vector,
)
from ..method.steering import steering_spec
from ..method.vector import SteeringVector, recorded_mode
from ..results import GenerationResult, SteeringApplied, StreamPiece
from ..runtime.chat import ChatRenderer, Messages, normalize_messages
from ..runtime.decoding import DecodeOptions
from ..runtime.layers import validate_layers
from ..runtime.loading import LoadedModel
from ..runtime.loading.runtimes import load_on_runtime
from ..runtime.protocol import ModelRuntime, Steering
from ..runtime.reasoning import Channel, prompt_opens_think
from ..runtime.transformers_runtime import TransformersRuntime
from ..settings import DEFAULT_MAX_NEW_TOKENS, GateSetting, Mode, SteeringSetting
from ..tooling.definitions import checked_tools
from .audit_records import AuditFanOut, per_row_audit
from .decode_loops import Prepared, TokenLoops, pieces_of
from .gate import ProbeScoreCache, Route, gated_setting, group_steering, routes
from .options import accepted_options, check_options, explains_unknown_options

if TYPE_CHECKING:
    from ..leakage.scanner import LeakContext


@dataclass(frozen=True)
class _Call:
    """One call's decode options and what it adds to the prompt text: tools (rendered into every
    re-render of the call: a gated sub-batch, a regeneration) and the answer's first characters."""

    options: DecodeOptions
    tools: tuple[Mapping[str, Any], ...] = ()
    prefix: str = ""


def _call(max_new_tokens: int, min_new_tokens: int, temperature: float, top_p: float, stop: Sequence[str] | None,
          seed: int | None, repetition_penalty: float | None, tools: Sequence[Mapping[str, Any]] | None,
          prefix: str) -> _Call:
    options = DecodeOptions(max_new_tokens, min_new_tokens, temperature, top_p, tuple(stop or ()), seed,
                            repetition_penalty)
    return _Call(options, checked_tools(tools), prefix)


def _drain(pieces: Generator[StreamPiece, None, GenerationResult]) -> GenerationResult:
    """Run a piece generator to its end without showing anything; its result."""
    while True:
        try:
            next(pieces)
        except StopIteration as done:
            return done.value


class SelfGuard:
    """A local causal LM made safer by Self-Guard: safety prompt + safety activation steering."""

    def __init__(
        self,
        loaded: LoadedModel,
        *,
        vector: SteeringVector | str | os.PathLike | None = None,
        setting: SteeringSetting | None = None,
        safety_prompt: SafetyPrompt | None = None,
        mode: Mode | str | None = None,
        thinking: bool | None = None,
        think_in_tags: bool = False,
        gate: GateSetting | Mapping[str, Any] | None = None,
        leak_policy: LeakPolicy | Mapping[str, Any] | str | None = None,
        leak_checks: bool = True,
        canaries: Sequence[str] = (),
        audit: Any = None,
        audit_failure: FailureMode = "closed",
        cache_dir: str | os.PathLike | None = None,
        progress: bool = True,
    ) -> None:
        self.loaded = loaded
        if not leak_checks and (leak_policy is not None or canaries):
            raise InvalidSettingError("leak_checks=False turns the leak checks off, so leak_policy and canaries would "
                                      "change nothing: drop them, or keep the checks on (leak_policy='log' only "
                                      "reports).")
        self.leaks = LeakGuard(LeakPolicy.parse(leak_policy), canaries=canaries) if leak_checks else None
        self.audit = audit_log(audit, on_failure=audit_failure)
        self.audit_failure = audit_failure
        self._explicit_gate = GateSetting(**gate, source="given") if isinstance(gate, Mapping) else gate
        self.safety_prompt = safety_prompt or SafetyPrompt()
        self._mode = None if mode is None else Mode.parse(mode)
        self.thinking = thinking
        self.think_in_tags = think_in_tags
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.progress = progress
        self._renderer = ChatRenderer(loaded.tokenizer)
        if thinking is not None and not self._renderer.supports_thinking_switch:
            raise InvalidSettingError(
                f"thinking={thinking} needs a chat template with a thinking switch (enable_thinking, as Qwen3's has); "
                f"the template of {loaded.name} has none, so it would change nothing. Drop it, or ask a model "
                "without native thinking to reason in tags with think_in_tags=True.")
        self.runtime: ModelRuntime = loaded.runtime or TransformersRuntime.from_loaded(loaded)
        self._loops = TokenLoops(self.runtime)
        self._audit = AuditFanOut(self.audit, audit_failure, loaded.fingerprint)
        self._vector_lock = threading.Lock()
        self._vector_source = vector
        self._vector: SteeringVector | None = None
        self._explicit_setting = setting
        self._setting: SteeringSetting | None = None
        self._probe_scores = ProbeScoreCache()

    @classmethod
    def from_pretrained(
        cls,
        source: Any = None,
        *,
        dtype: str | torch.dtype = "float32",
        device: str = "cpu",
        threads: int | Literal["auto"] | None = "auto",
        cache_dir: str | os.PathLike | None = None,
        allow_download: bool = False,
        trust_remote_code: bool = False,
        progress: bool = True,
        runtime: str = "transformers",
        **engine_options: Any,
    ) -> SelfGuard:
        """Load a model (None = the embedded SmolLM2-135M, a hub id, a local dir, a GGUF file or a
        (model, tokenizer) pair) and wrap it. Engine options: vector, setting, safety_prompt, mode,
        thinking, think_in_tags, gate, leak_policy, leak_checks, canaries, audit, audit_failure.
        `runtime="llama.cpp"` runs a GGUF file as it is on llama-cpp-python (the `llamacpp` extra)."""
        check_options("SelfGuard.from_pretrained", engine_options,
                      accepted_options(cls.__init__, leave_out=("loaded",)) + accepted_options(cls.from_pretrained))
        loaded = load_on_runtime(source, runtime=runtime, dtype=dtype, device=device, threads=threads,
                                 cache_dir=cache_dir, allow_download=allow_download,
                                 trust_remote_code=trust_remote_code, progress=progress)
        return cls(loaded, cache_dir=cache_dir, progress=progress, **engine_options)

    # -- steering state -------------------------------------------------------------------
    @property
    def vector(self) -> SteeringVector:
        """The safety steering vector: given, shipped for this model, cached, or extracted now."""
        with self._vector_lock:
            if self._vector is None:
                self._vector = resolve_vector(self.runtime, self._vector_source, safety=self.safety_prompt,
                                              cache_dir=self.cache_dir, progress=self.progress)
            return self._vector

    def extract_vector(self, prompts: Sequence[str] | None = None, *, method: str = "mean_difference",
                       baseline: SafetyPrompt | None = NEUTRAL_BASELINE, batch_size: int = 16) -> SteeringVector:
        """Measure a new vector for this model and safety prompt and use it from now on. Without
        prompts, our labelled calibration set is used and the awareness probe is fitted too.
        `baseline` is what the safety prompt's shift is measured against (None: the bare prompt)."""
        if prompts is None:
            vector = calibration_vector(self.runtime, self.safety_prompt, baseline=baseline,
                                        method=method, batch_size=batch_size,  # type: ignore[arg-type]
                                        progress=self.progress)
        else:
            vector = measure_steering_vector(self.runtime, list(prompts), safety=self.safety_prompt, baseline=baseline,
                                             method=method, batch_size=batch_size,  # type: ignore[arg-type]
                                             progress=self.progress)
        with self._vector_lock:
            self._vector, self._setting = vector, None
        return vector

    @property
    def setting(self) -> SteeringSetting:
        """Layers, λ and scope used by the steered modes."""
        if self._setting is None:
            self._setting = resolve_setting(self._explicit_setting, self.vector, self.num_layers)
        return self._setting

    @property
    def gate(self) -> GateSetting:
        """What `guarded` mode does above and below the probe's threshold: given, else the
        vector file's, else full λ of the steering setting above and plain below. A steering
        setting given explicitly sets the λ a fired gate applies too, unless the gate given
        has a λ of its own: `setting=SteeringSetting(strength=0.5)` is never silently ignored
        in `guarded` mode."""
        gate = resolve_gate(self._explicit_gate, self.vector)
        gate_has_own_strength = self._explicit_gate is not None and self._explicit_gate.strength is not None
        if self._explicit_setting is not None and not gate_has_own_strength and gate.strength is not None:
            return replace(gate, strength=None, source=f"{gate.source}, λ of the given steering setting")
        return gate

    def use_gate(self, gate: GateSetting | None) -> GateSetting | None:
        """Gate with `gate` from now on (None: back to the vector file's or the default).
        Returns the explicit gate setting it replaces."""
        previous, self._explicit_gate = self._explicit_gate, gate
        return previous

    @property
    def default_mode(self) -> Mode:
        """The mode given, else the one calibration recorded in the vector file, else `guarded`
        when the vector has an awareness probe and `self-guard` when it has none."""
        return self._mode or recorded_mode(self.vector) or (
            Mode.GUARDED if self.vector.probe is not None else Mode.SELF_GUARD)

    def use_vector(self, vector: SteeringVector) -> SteeringVector:
        """Steer (and gate) with `vector` from now on; it must fit the model. Returns the one it replaces."""
        vector.check_fits(num_layers=self.num_layers, hidden_size=self.runtime.hidden_size,
                          fingerprint=self.runtime.fingerprint)
        previous = self.vector
        with self._vector_lock:
            self._vector, self._setting = vector, None
        return previous

    def use_setting(self, setting: SteeringSetting | None) -> SteeringSetting | None:
        """Steer with `setting` from now on (None: back to the vector file's or the provisional one).
        Returns the explicit setting it replaces, so a caller can put it back."""
        if setting is not None:
            validate_layers(list(setting.layers), self.num_layers)
        previous = self._explicit_setting
        self._explicit_setting, self._setting = setting, None
        return previous

    @property
    def num_layers(self) -> int:
        return self.runtime.num_layers

    def info(self) -> dict[str, Any]:
        """What is loaded and how it will be steered, for `selfguard info` and logs."""
        vector = self.vector
        setting = self.setting
        details = self.runtime.details()
        return {
            "model": self.runtime.name,
            "source": self.loaded.source,
            "fingerprint": self.runtime.fingerprint,
            "architecture": details.pop("architecture"),
            "layers": self.num_layers,
            "hidden_size": self.runtime.hidden_size,
            "context_window": self.runtime.context_window,
            "default_mode": self.default_mode.value,
            "vector": {"method": vector.method, "baseline": baseline_name(vector.baseline_hash),
                       "prompts": vector.num_prompts, "model": vector.model_name,
                       "library_version": vector.library_version,
                       "norms": {str(k): round(v, 4) for k, v in vector.norms().items() if k in setting.layers}},
            "steering": {"layers": list(setting.layers), "strength": setting.strength, "scope": setting.scope,
                         "max_tokens": setting.max_tokens, "repetition_penalty": setting.repetition_penalty,
                         "stop_after_refusal": setting.stop_after_refusal, "source": setting.source},
            "gate": {"probe": True, "probe_method": probe.method, "probe_layer": probe.layer,
                     "probe_auc": round(probe.auc, 4), "probe_threshold": round(probe.threshold, 4),
                     **self.gate.as_dict(), "strength": self.gate.strength_for(setting, math.inf),
                     "source": self.gate.source}
            if (probe := vector.probe) is not None else {"probe": False},
            "leakage": {"checks": self.leaks is not None,
                        "policy": dict(self.leaks.policy.actions) if self.leaks is not None else {},
                        "audit_sinks": [type(s).__name__ for s in self.audit.sinks] if self.audit else []},
            **details,
        }

    # -- preparing prompts ----------------------------------------------------------------
    def render(self, messages: Messages, mode: Mode | str | None = None,
               tools: Sequence[Mapping[str, Any]] | None = None) -> str:
        """The exact prompt text the model is sent for `messages` in `mode` (default: the engine's).
        In `guarded` mode the awareness probe decides, as it would for a generation: the safety
        prompt shows only where the gate fires."""
        resolved = Mode.parse(mode or self.default_mode)
        if resolved.gated:
            with self.runtime.hold():
                resolved = self._routes(resolved, self._awareness_scores([messages], resolved), 1)[0].mode
        return self.render_applied(messages, resolved, tools)

    def render_applied(self, messages: Messages, mode: Mode | str,
                       tools: Sequence[Mapping[str, Any]] | None = None) -> str:
        """The prompt text of `mode` where it acts, without asking the probe (`guarded`: as if
        its gate fired): what calibration and evaluation compare across modes."""
        mode = Mode.parse(mode)
        safety = self.safety_prompt if mode.uses_prompt else None
        conversation = apply_safety_prompt(normalize_messages(messages), safety, think_in_tags=self.think_in_tags)
        return self._renderer.render(conversation, thinking=self.thinking, tools=tools)

    def check_fits(self, messages: Messages, mode: Mode | str, max_new_tokens: int,
                   tools: Sequence[Mapping[str, Any]] | None = None) -> int:
        """The prompt's token count in `mode` (`guarded`: as if its gate fired, the longer form);
        `PromptTooLongError` when it and `max_new_tokens` overflow the context window. What a
        server checks before a request joins a batch."""
        batch = self.runtime.encode([self.render_applied(messages, mode, tools)])
        length = int(batch.prompt_lengths.max())
        self._refuse_overflow(length, max_new_tokens)
        return length

    def _refuse_overflow(self, prompt_tokens: int, max_new_tokens: int) -> None:
        window = self.runtime.context_window
        if prompt_tokens + max_new_tokens > window:
            raise PromptTooLongError(
                f"The prompt has {prompt_tokens} tokens and max_new_tokens is {max_new_tokens}: "
                f"{prompt_tokens + max_new_tokens} tokens do not fit the context window of {window} tokens of "
                f"{self.runtime.name}. Shorten the prompt or lower max_new_tokens."
            )

    def _prepare(self, conversations: Sequence[Messages], mode: Mode, call: _Call) -> Prepared:
        """Render, tokenize and pad; a prompt that would overflow the context window is refused."""
        texts = [self.render_applied(messages, mode, call.tools) + call.prefix for messages in conversations]
        batch = self.runtime.encode(texts)
        self._refuse_overflow(int(batch.prompt_lengths.max()), call.options.max_new_tokens)
        return Prepared(batch, [prompt_opens_think(text) for text in texts])

    def _options_for(self, mode: Mode, options: DecodeOptions) -> DecodeOptions:
        """Fill in the repetition penalty the caller left to the engine: the setting's for
        steered answers, none for the others (plain answers stay the model's own)."""
        if options.repetition_penalty is not None:
            return options
        penalty = self.setting.repetition_penalty if mode.uses_steering else 1.0
        return replace(options, repetition_penalty=penalty)

    def _steering(self, mode: Mode, rows: int, options: DecodeOptions, setting: SteeringSetting | None = None,
                  strengths: Sequence[float] | None = None) -> tuple[Steering | None, list[SteeringApplied | None]]:
        """What the runtime adds for one decode of `rows` rows in `mode` (None for unsteered modes),
        and what was applied to each row (`strengths`: one λ per row, the soft gate's)."""
        if not mode.uses_steering:
            return None, [None] * rows
        vector, setting = self.vector, setting or self.setting
        per_row = list(strengths) if strengths is not None else [setting.strength] * rows
        steering = steering_spec(vector, strengths=per_row, layers=setting.layers, scope=setting.scope,
                                 max_tokens=setting.max_tokens, num_layers=self.num_layers,
                                 hidden_size=self.runtime.hidden_size, fingerprint=self.runtime.fingerprint,
                                 allow_negative_strength=setting.allow_negative_strength)
        assert options.repetition_penalty is not None  # every caller fills it in with _options_for
        return steering, [SteeringApplied(layers=list(setting.layers), strength=strength, scope=setting.scope,
                                          method=vector.method, vector_fingerprint=vector.model_fingerprint,
                                          max_tokens=setting.max_tokens,
                                          repetition_penalty=options.repetition_penalty) for strength in per_row]

    def _stops_after_refusal(self, steering: Steering | None, setting: SteeringSetting | None) -> bool:
        """Whether a decode ends each row after a refusing first sentence: only steered decodes
        (steer, self-guard, a fired gate), and only when their setting asks for it."""
        return steering is not None and (setting or self.setting).stop_after_refusal

    # -- public generation API ------------------------------------------------------------
    @explains_unknown_options
    def batch(
        self,
        conversations: Sequence[Messages],
        *,
        mode: Mode | str | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        min_new_tokens: int = 0,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
        repetition_penalty: float | None = None,
        private_context: Sequence[str] | None = None,
        canaries: Sequence[str] | None = None,
        audit_sinks: Sequence[AuditSink] | Sequence[Sequence[AuditSink]] = (),
        audit_fields: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        prefix: str = "",
        partial: bool = False,
    ) -> list[GenerationResult]:
        """Generate for several prompts in one left-padded batch (one forward pass per step).

        In `guarded` mode the awareness probe reads every prompt first; prompts it flags run as
        Self-Guard with the gate's λ, the others as the gate's `below` mode, in separate sub-batches.
        Every result is checked for leaks (`private_context` and `canaries` add to what is
        protected) and written to the audit log, one record per prompt (`audit_sinks` get the
        same record for this call only, and `audit_fields` go into its context: how an adapter's
        audit handler receives the record with its run ids). Either may also be given per prompt,
        as a list with one entry (a list of sinks, a mapping) for each.

        `partial=True` marks a piece of an answer the caller assembles from several generations
        (a guided tool call): it is neither checked nor audited here; the caller hands the
        assembled result to `finish`, so one call still makes one checked, audited record.
        """
        started = time.perf_counter()
        if isinstance(conversations, str) or not conversations:
            raise InvalidMessagesError("batch() needs a non-empty list of prompts or conversations; "
                                       "use generate() for a single prompt.")
        resolved = Mode.parse(mode or self.default_mode)
        call = _call(max_new_tokens, min_new_tokens, temperature, top_p, stop, seed, repetition_penalty, tools,
                     prefix)
        checked = self._prepare(conversations, resolved, call)  # validate everything before any work
        row_sinks, row_fields = per_row_audit(audit_sinks, audit_fields, len(conversations))
        contexts = (None if self.leaks is None or partial else
                    [self.leaks.context_for(c, private_context, canaries) for c in conversations])
        with self.runtime.hold():
            scores = self._awareness_scores(conversations, resolved)
            row_routes = self._routes(resolved, scores, len(conversations))
            groups: dict[Mode, list[int]] = {}
            for row, route in enumerate(row_routes):
                groups.setdefault(route.mode, []).append(row)
            slots: list[GenerationResult | None] = [None] * len(conversations)
            for effective, rows in groups.items():
                subset = [conversations[r] for r in rows]
                same_text = effective.uses_prompt == resolved.uses_prompt and len(rows) == len(conversations)
                decoded = self._decode_batch(subset, effective, call, checked if same_text else None,
                                             *self._group_steering([row_routes[r] for r in rows]))
                for row, result in zip(rows, decoded, strict=True):
                    slots[row] = result.model_copy(update={
                        "mode": resolved.value, "awareness": None if scores is None else scores[row]})
            results = [result for result in slots if result is not None]
            assert len(results) == len(conversations)  # every row is in one group
            if self.leaks is not None and contexts is not None:
                results = [self.leaks.check(result, context, self._regenerator(messages, resolved, call))
                           for result, context, messages in zip(results, contexts, conversations, strict=True)]
        if partial:
            return results
        self._audit.write(conversations, results, started, row_sinks, row_fields)
        if self.leaks is not None:
            for result in results:
                self.leaks.raise_if_blocked(result)
        return results

    def finish(self, messages: Messages, result: GenerationResult, *, started: float | None = None,
               private_context: Sequence[str] | None = None, canaries: Sequence[str] | None = None,
               audit_sinks: Sequence[AuditSink] = (), audit_fields: Mapping[str, Any] | None = None,
               ) -> GenerationResult:
        """Check and audit an answer assembled from `partial` generations, as `generate` would
        have (no regeneration: the caller built the text). `started` is `time.perf_counter()`
        at the call's start, for the record's latency."""
        started = time.perf_counter() if started is None else started
        if self.leaks is not None:
            result = self.leaks.check(result, self.leaks.context_for(messages, private_context, canaries))
        self._audit.write([messages], [result], started, [list(audit_sinks)], [dict(audit_fields or {})])
        if self.leaks is not None:
            self.leaks.raise_if_blocked(result)
        return result

    def _regenerator(self, messages: Messages, requested: Mode, call: _Call) -> Callable[[int], GenerationResult]:
        """Tries for the `regenerate` policy: Self-Guard (both halves, whatever the gate said) with
        λ raised by the policy's step for each try, from the gated λ in `guarded` mode."""
        def regenerate(attempt: int) -> GenerationResult:
            base = gated_setting(self.setting, self.gate) if requested.gated else self.setting
            step = self.leaks.policy.strength_step if self.leaks is not None else 0.0
            setting = replace(base, strength=base.strength + step * (attempt - 1), source="leak policy")
            result = self._decode_batch([messages], Mode.SELF_GUARD, call, setting=setting)[0]
            return result.model_copy(update={"mode": requested.value})

        return regenerate

    def _decode_batch(self, conversations: Sequence[Messages], mode: Mode, call: _Call,
                      prepared: Prepared | None = None, setting: SteeringSetting | None = None,
                      strengths: Sequence[float] | None = None) -> list[GenerationResult]:
        prepared = prepared or self._prepare(conversations, mode, call)
        options = self._options_for(mode, call.options)
        steering, applied = self._steering(mode, len(conversations), options, setting, strengths)
        return self._loops.run_batch(prepared, mode, options, call.prefix, steering, applied,
                                     self._stops_after_refusal(steering, setting))

    def score_texts(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """Log-probability of each target text after its context text (raw text, no chat template,
        no steering): how adapters pick among options by likelihood, e.g. the tool whose
        description makes the user's question most likely (`tools.choose_tool`)."""
        if isinstance(pairs, str) or not pairs or not all(context and target for context, target in pairs):
            raise InvalidSettingError("score_texts() needs (context, target) pairs of non-empty strings.")
        tokenizer = self.runtime.tokenizer
        rows = [(tokenizer(context, add_special_tokens=False)["input_ids"],
                 tokenizer(target, add_special_tokens=False)["input_ids"]) for context, target in pairs]
        longest = max(len(c) + len(t) for c, t in rows)
        if longest > self.runtime.context_window:
            raise PromptTooLongError(f"A text to score has {longest} tokens; the context window of "
                                     f"{self.runtime.name} is {self.runtime.context_window}. Shorten it.")
        with self.runtime.hold():
            return self.runtime.continuation_logprobs(rows)

    def score_continuations(self, messages: Messages, continuations: Sequence[str], *,
                            mode: Mode | str | None = None, tools: Sequence[Mapping[str, Any]] | None = None,
                            prefix: str = "") -> list[float]:
        """Log-probability of each continuation after the rendered prompt and `prefix`, with the
        model prepared as `mode` would prepare it (safety prompt, gate, steering): how a guided
        tool call picks a boolean or an enum value the way the model would have written it."""
        if isinstance(continuations, str) or not continuations or not all(continuations):
            raise InvalidSettingError("score_continuations() needs a list of non-empty strings.")
        resolved = Mode.parse(mode or self.default_mode)
        call = _Call(DecodeOptions(1), checked_tools(tools), prefix)
        prepared = self._prepare([messages], resolved, call)  # refuse bad input and over-long prompts first
        encoded = [self.runtime.tokenizer(text, add_special_tokens=False)["input_ids"] for text in continuations]
        with self.runtime.hold():
            scores = self._awareness_scores([messages], resolved)
            route = self._routes(resolved, scores, 1)[0]
            if route.mode.uses_prompt != resolved.uses_prompt:
                prepared = self._prepare([messages], route.mode, call)
            prompt = prepared.batch.input_ids[0, -int(prepared.batch.prompt_lengths[0]):].tolist()
            setting, _ = self._group_steering([route])
            steering, _ = self._steering(route.mode, len(encoded), self._options_for(route.mode, call.options),
                                         setting)
            return self.runtime.continuation_logprobs([(prompt, target) for target in encoded], steering)

    # -- the awareness gate ----------------------------------------------------------------
    def awareness(self, conversations: Sequence[Messages]) -> list[float]:
        """Probe score per prompt minus the threshold: above 0, the model itself reads it as harmful."""
        with self.runtime.hold():
            return self._awareness_scores(conversations, Mode.GUARDED) or []

    def _awareness_scores(self, conversations: Sequence[Messages], mode: Mode) -> list[float] | None:
        """The probe on each prompt's latest request (None unless `mode` is gated). The forward
        pass stops at the probe's layer and keeps no cache: a fraction of one prefill."""
        if not mode.gated:
            return None
        vector = self.vector
        probe = vector.probe
        if probe is None:
            raise InvalidSettingError("Mode 'guarded' and awareness() need a steering vector with an awareness "
                                      "probe, fitted on our labelled calibration set: in Python, "
                                      "guard.extract_vector() without prompts; on the command line, "
                                      "`selfguard extract -o VECTOR` without --prompts, then --vector VECTOR. Or use "
                                      "mode 'self-guard'.")
        vector.check_fits(num_layers=self.num_layers, hidden_size=self.runtime.hidden_size,
                          fingerprint=self.runtime.fingerprint)
        threshold = self.gate.threshold_for(probe)
        texts = probe_texts(self._renderer, conversations)
        return [score - threshold for score in self._probe_scores.scores_for(self.runtime, probe, texts)]

    def _routes(self, mode: Mode, scores: list[float] | None, rows: int) -> list[Route]:
        """Per prompt, the mode it actually runs in; for a fired gate also its λ."""
        if not mode.gated or scores is None:
            return [Route(mode)] * rows
        return routes(scores, self.gate, self.setting)

    def _group_steering(self, group: Sequence[Route]) -> tuple[SteeringSetting | None, list[float] | None]:
        """Setting and per-row λ for rows decoded together (a soft gate gives each its own λ)."""
        if group[0].strength is None:
            return None, None
        return group_steering(group, self.setting, self.gate)

    def generate(self, messages: Messages, **options: Any) -> GenerationResult:
        """Generate one answer. Options as `batch`: mode, max_new_tokens, min_new_tokens,
        temperature (0 = greedy), top_p, stop, seed, repetition_penalty (None: the steering
        setting's on steered answers, 1 on the others), private_context, canaries, audit_sinks,
        audit_fields, tools (OpenAI-format definitions), prefix (the answer's first characters, which
        the model continues)."""
        check_options("SelfGuard.generate", options, accepted_options(SelfGuard.batch, leave_out=("conversations",)))
        return self.batch([messages], **options)[0]

    @explains_unknown_options
    def stream(
        self,
        messages: Messages,
        *,
        mode: Mode | str | None = None,
        max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        min_new_tokens: int = 0,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] | None = None,
        seed: int | None = None,
        repetition_penalty: float | None = None,
        private_context: Sequence[str] | None = None,
        canaries: Sequence[str] | None = None,
        audit_sinks: Sequence[AuditSink] = (),
        audit_fields: Mapping[str, Any] | None = None,
        tools: Sequence[Mapping[str, Any]] | None = None,
        prefix: str = "",
    ) -> Iterator[StreamPiece | GenerationResult]:
        """Yield `StreamPiece`s (reasoning or answer text) as they are decoded, then the result.

        Stopping the iteration (break, close, garbage collection) stops generating and frees the engine.
        With a leak policy that redacts or blocks, text is held back until it is checked (see
        docs/leakage.md); one that regenerates holds the whole text until the last try.
        """
        resolved = Mode.parse(mode or self.default_mode)
        call = _call(max_new_tokens, min_new_tokens, temperature, top_p, stop, seed, repetition_penalty, tools,
                     prefix)
        checked = self._prepare([messages], resolved, call)  # raise bad input now, not at first next()
        context = None if self.leaks is None else self.leaks.context_for(messages, private_context, canaries)
        return self._stream(messages, resolved, call, checked, context, tuple(audit_sinks),
                            dict(audit_fields or {}))

    def _stream(self, messages: Messages, requested: Mode, call: _Call, checked: Prepared,
                context: LeakContext | None, audit_sinks: Sequence[AuditSink] = (),
                audit_fields: Mapping[str, Any] | None = None) -> Iterator[StreamPiece | GenerationResult]:
        started = time.perf_counter()
        policy = None if self.leaks is None else self.leaks.policy
        hold_all = policy is not None and bool(policy.kinds_with("regenerate"))
        guard = (StreamGuard(self.leaks.scanner, context, policy)  # type: ignore[union-attr, arg-type]
                 if policy is not None and policy.holds_back_streams and not hold_all else None)
        with self.runtime.hold():
            scores = self._awareness_scores([messages], requested)
            route = self._routes(requested, scores, 1)[0]
            mode = route.mode
            prepared = (checked if mode.uses_prompt == requested.uses_prompt
                        else self._prepare([messages], mode, call))
            options = self._options_for(mode, call.options)
            setting, strengths = self._group_steering([route])
            steering, applied = self._steering(mode, 1, options, setting, strengths)
            abandoned: list[GenerationResult] = []
            pieces = self._loops.run_stream(prepared, mode, options, call.prefix, steering, applied[0], guard,
                                            self._stops_after_refusal(steering, setting), abandoned.append)
            try:
                result = _drain(pieces) if hold_all else (yield from pieces)
            except GeneratorExit:  # the caller stopped reading: what was generated is still recorded
                for partial in abandoned:
                    partial = partial.model_copy(update={"mode": requested.value,
                                                         "awareness": None if scores is None else scores[0]})
                    if self.leaks is not None:
                        partial = self.leaks.check(partial, context)  # type: ignore[arg-type]
                    self._audit.write([messages], [partial], started, [audit_sinks], [audit_fields or {}])
                raise
            result = result.model_copy(update={"mode": requested.value,
                                               "awareness": None if scores is None else scores[0]})
            if self.leaks is not None:
                result = self.leaks.check(result, context,  # type: ignore[arg-type]
                                          self._regenerator(messages, requested, call))
        if hold_all:
            yield from pieces_of([(Channel.REASONING, result.reasoning), (Channel.ANSWER, result.answer)])
        elif (result.leakage is not None and result.leakage.action == "block"
              and self.leaks is not None and self.leaks.policy.block_with == "refusal"):
            yield StreamPiece(channel=Channel.ANSWER, text=result.answer)  # what the reader is shown instead
        self._audit.write([messages], [result], started, [audit_sinks], [audit_fields or {}])
        if self.leaks is not None:
            self.leaks.raise_if_blocked(result)
        yield result
