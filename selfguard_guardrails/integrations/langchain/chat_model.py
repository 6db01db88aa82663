"""LangChain: `ChatSelfGuard`, a swap-in chat model over the Self-Guard engine.

    from selfguard_guardrails.integrations.langchain import ChatSelfGuard
    chain = prompt | ChatSelfGuard() | StrOutputParser()

The engine loads on first use (construction is instant) or is shared (`ChatSelfGuard(engine=guard)`).
The reasoning trace goes to `additional_kwargs["reasoning_content"]`, never into the text; a
guardrail's refusal to `additional_kwargs["refusal"]`. `message.content_blocks` reads both as
LangChain's standard blocks (`content_blocks.py`, registered on import), and with
`output_version="v1"` the content is those blocks.
Leak findings are emitted as custom callback events on the model's own run, and the audit
record of each generation carries LangChain's run ids (see `SelfGuardAuditHandler`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManager, CallbackManagerForLLMRun
from langchain_core.globals import get_llm_cache
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, InvalidToolCall, ToolCall, ToolCallChunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, LLMResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import get_config_list, run_in_executor
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field

from ...results import GenerationResult, StreamPiece
from ...tooling.parsing import parse_tool_calls
from ...tooling.turns import ToolTurn, tool_options
from ..options import AdapterFields, call_options, max_tokens_field
from . import content_blocks
from .audit import SelfGuardAuditHandler, run_context
from .messages import metadata_of, refusal_kwargs, to_engine_messages, usage_of

FINDINGS_EVENT = "selfguard_leak_findings"
PROVIDER_METADATA = {"model_provider": content_blocks.PROVIDER}  # on every streamed chunk: its blocks are ours

content_blocks.register()


class ChatSelfGuard(AdapterFields, BaseChatModel):
    """A local Hugging Face model made safer by Self-Guard, as a LangChain chat model. The
    settings it shares with the LlamaIndex adapter are declared in `AdapterFields`."""

    model_config = ConfigDict(arbitrary_types_allowed=True, populate_by_name=True)
    adapter_name = "ChatSelfGuard"

    max_tokens: int = max_tokens_field()
    # redeclared for LangChain's name for it (`stop` is accepted too: populate_by_name)
    stop: list[str] | None = Field(default=None, alias="stop_sequences")

    @property
    def _llm_type(self) -> str:
        return "selfguard"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name or "embedded", "mode": self.mode, "max_tokens": self.max_tokens,
                "temperature": self.temperature, "top_p": self.top_p}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        params = super()._get_ls_params(stop=stop, **kwargs)
        params["ls_provider"] = "selfguard"
        params["ls_model_name"] = kwargs.get("model") or self.model_name or "SmolLM2-135M-Instruct"
        params["ls_model_type"] = "chat"
        params["ls_temperature"] = kwargs.get("temperature", self.temperature)
        params["ls_max_tokens"] = kwargs.get("max_tokens", self.max_tokens)
        if stop or self.stop:
            params["ls_stop"] = stop or self.stop
        return params

    # -- one generation --------------------------------------------------------------------
    def _options(self, stop: list[str] | None, run_manager: CallbackManagerForLLMRun | None,
                 **kwargs: Any) -> dict[str, Any]:
        max_new_tokens = kwargs.pop("max_tokens", self.max_tokens)
        options = call_options(self, kwargs, max_new_tokens=max_new_tokens, stop=stop,
                               ignored=("ls_structured_output_format",))
        options.update(audit_sinks=SelfGuardAuditHandler.sinks_of(run_manager), audit_fields=run_context(run_manager))
        return options

    def bind_tools(self, tools: Sequence[dict[str, Any] | type | Callable | BaseTool], *,
                   tool_choice: str | None = None, **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        """Tools in the OpenAI format, rendered through the chat template (or our documented
        format, see `selfguard_guardrails.runtime.chat`); calls come back in `AIMessage.tool_calls`,
        calls that do not parse in `invalid_tool_calls`. `tool_choice` "any"/"required" or a
        tool's name forces a call: the answer is started for the model (`<tool_call>{"name": ...`),
        and a call that does not parse is tried again, sampled, up to `tool_call_retries` times.
        Without one ("auto"), the model's likelihood decides between a call and an answer
        (`tooling.choice.choose_tool_or_answer`); "none" hides the tools."""
        formatted = [convert_to_openai_tool(tool) for tool in tools]
        return super().bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    def _message(self, result: GenerationResult, tools: Sequence[dict[str, Any]] | None = None) -> AIMessage:
        extra = {**({"reasoning_content": result.reasoning} if result.reasoning else {}), **refusal_kwargs(result)}
        usage, metadata = usage_of(result), metadata_of(result)
        if not tools:
            return AIMessage(content=result.answer, additional_kwargs=extra, usage_metadata=usage,
                             response_metadata=metadata)
        parsed = parse_tool_calls(result.answer, [t["function"]["name"] for t in tools])
        calls = [ToolCall(name=c["name"], args=c["args"], id=c["id"]) for c in parsed.calls]
        invalid = [InvalidToolCall(type="invalid_tool_call", name=b["name"], args=b["args"], id=b["id"],
                                   error=b["error"]) for b in parsed.invalid]
        return AIMessage(content=parsed.text, tool_calls=calls, invalid_tool_calls=invalid,
                         additional_kwargs=extra, usage_metadata=usage, response_metadata=metadata)

    def _report(self, result: GenerationResult, run_manager: CallbackManagerForLLMRun | None) -> None:
        """Leak findings as a custom event on this model's own run (the run manager itself has no
        dispatching `on_custom_event`; a callback manager over its handlers has)."""
        report = result.leakage
        if run_manager is None or report is None or not report.findings:
            return
        manager = CallbackManager(handlers=run_manager.handlers, inheritable_handlers=run_manager.inheritable_handlers,
                                  parent_run_id=run_manager.parent_run_id, tags=run_manager.tags,
                                  metadata=run_manager.metadata)
        manager.on_custom_event(FINDINGS_EVENT, {"summary": report.summary(),
                                                 "findings": [f.model_dump() for f in report.findings]},
                                run_id=run_manager.run_id)

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        options = self._options(stop, run_manager, **kwargs)
        conversation = to_engine_messages(messages)
        result = ToolTurn(self.engine, self.tool_call_retries, self.guided_tool_calls).run(conversation, options)
        message = self._message(result, options["tools"])
        self._report(result, run_manager)
        return ChatResult(generations=[ChatGeneration(message=message)],
                          llm_output={"model_name": result.model})

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        options = self._options(stop, run_manager, **kwargs)
        if options["tools"]:  # a tool call is only known once the answer is complete
            result = self._generate(messages, stop, run_manager, **kwargs).generations[0].message
            assert isinstance(result, AIMessage)  # built by _message
            calls = [ToolCallChunk(name=c["name"], args=json.dumps(c["args"]), id=c["id"], index=i)
                     for i, c in enumerate(result.tool_calls)]
            yield ChatGenerationChunk(message=AIMessageChunk(
                content=result.content, additional_kwargs=result.additional_kwargs, tool_call_chunks=calls,
                usage_metadata=result.usage_metadata, response_metadata=result.response_metadata,
                chunk_position="last"))
            return
        for item in self.engine.stream(to_engine_messages(messages), **options):
            if isinstance(item, StreamPiece):
                chunk = (AIMessageChunk(content="", additional_kwargs={"reasoning_content": item.text},
                                        response_metadata=dict(PROVIDER_METADATA))
                         if item.channel == "reasoning"
                         else AIMessageChunk(content=item.text, response_metadata=dict(PROVIDER_METADATA)))
                generation = ChatGenerationChunk(message=chunk)
                if run_manager is not None:
                    run_manager.on_llm_new_token(item.text if item.channel == "answer" else "", chunk=generation)
                yield generation
                continue
            self._report(item, run_manager)
            yield ChatGenerationChunk(message=AIMessageChunk(
                content="", additional_kwargs=refusal_kwargs(item), usage_metadata=usage_of(item),
                response_metadata=metadata_of(item), chunk_position="last"))

    # -- batches: one padded engine batch, one LangChain run per input -------------------------
    def _batchable(self, inputs: Sequence[Any], return_exceptions: bool, kwargs: dict[str, Any]) -> bool:
        """Whether a batch can run as one engine batch: several inputs, no tools (a turn with tools
        is sequential pieces: the choice, then the call), no cache or rate limiter to consult per
        input, and errors raised (with `return_exceptions` each input needs its own outcome)."""
        tools = tool_options(kwargs.get("tools"), kwargs.get("tool_choice"), None)["tools"]
        uncached = self.cache is False or (self.cache is None and get_llm_cache() is None)
        return len(inputs) > 1 and not return_exceptions and not tools and uncached and self.rate_limiter is None

    def _start_runs(self, conversations: list[list[BaseMessage]], configs: list[RunnableConfig],
                    stop: list[str] | None, kwargs: dict[str, Any]) -> list[CallbackManagerForLLMRun]:
        """One chat-model run per input, with its own callbacks, tags, metadata and run id."""
        managers = []
        params = {**self._get_invocation_params(stop=stop, **kwargs)}
        for messages, config in zip(conversations, configs, strict=True):
            callback_manager = CallbackManager.configure(
                config.get("callbacks"), self.callbacks, self.verbose, config.get("tags"), self.tags,
                {**(config.get("metadata") or {}), **self._get_ls_params(stop=stop, **kwargs)}, self.metadata)
            managers += callback_manager.on_chat_model_start(
                self._serialized, [messages], invocation_params=params, options={"stop": stop},
                name=config.get("run_name"), run_id=config.pop("run_id", None), batch_size=len(conversations))
        return managers

    def batch(self, inputs: list[LanguageModelInput], config: RunnableConfig | list[RunnableConfig] | None = None,
              *, return_exceptions: bool = False, **kwargs: Any) -> list[AIMessage]:
        """All inputs in one padded engine batch (one forward pass per step for all of them),
        each still its own LangChain run: callbacks, run ids and audit records per input."""
        if not self._batchable(inputs, return_exceptions, kwargs):
            return super().batch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        stop = kwargs.pop("stop", None)
        conversations = [self._convert_input(item).to_messages() for item in inputs]
        engine_messages = [to_engine_messages(messages) for messages in conversations]  # refuse bad input first
        managers = self._start_runs(conversations, get_config_list(config, len(inputs)), stop, kwargs)
        try:
            options = self._options(stop, None, **kwargs)
            options.update(audit_sinks=[SelfGuardAuditHandler.sinks_of(m) for m in managers],
                           audit_fields=[run_context(m) for m in managers])
            results = self.engine.batch(engine_messages, **options)
        except BaseException as error:
            for manager in managers:
                manager.on_llm_error(error)
            raise
        messages = []
        for manager, result in zip(managers, results, strict=True):
            message = self._message(result, options["tools"])
            if self.output_version == "v1":
                message = content_blocks.as_v1(message)
            self._report(result, manager)
            manager.on_llm_end(LLMResult(generations=[[ChatGeneration(message=message)]],
                                         llm_output={"model_name": result.model}))
            messages.append(message)
        return messages

    async def abatch(self, inputs: list[LanguageModelInput],
                     config: RunnableConfig | list[RunnableConfig] | None = None, *,
                     return_exceptions: bool = False, **kwargs: Any) -> list[AIMessage]:
        """`batch` in a worker thread (the engine is synchronous), so the event loop stays free."""
        if not self._batchable(inputs, return_exceptions, kwargs):
            return await super().abatch(inputs, config, return_exceptions=return_exceptions, **kwargs)
        first = (config[0] if config else None) if isinstance(config, list) else config
        return await run_in_executor(first, self.batch, inputs, config, **kwargs)
