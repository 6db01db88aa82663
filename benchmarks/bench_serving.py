"""Load test of the server: throughput and latency at 1, 4 and 16 concurrent clients.

In one run, on loopback only, each client sending --requests requests one after another
(greedy, --tokens new tokens, `guarded` mode, a different question each time so no cache helps):
- **engine, one at a time**: the clients are threads calling `SelfGuard.generate` on one
  engine, which answers them one after another (its lock): the baseline;
- **server**: `selfguard serve` started as its own process, batching concurrent requests
  (--batch-size), called over HTTP;
- **Ray Serve, 1 and 2 replicas** (with --ray): the same API on a local Ray instance.

Throughput is completion tokens per second of wall time; latency is per request, from send to
the whole answer. Figures go to --out as serving.json and serving.md.

    python benchmarks/bench_serving.py [--clients 1,4,16] [--requests 2] [--tokens 32] [--ray]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import date
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from selfguard_guardrails import SelfGuard  # noqa: E402

TOPICS = ["the sea", "a lighthouse", "autumn leaves", "a train journey", "a mountain village", "a library",
          "bees", "the night sky", "a bakery", "a river", "a city park", "snow", "a garden", "a market",
          "a violin", "the desert"]
NUMBERS = itertools.count(1)


def question() -> str:
    n = next(NUMBERS)
    return f"Write a short description of {TOPICS[n % len(TOPICS)]} (note {n})."


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def load(clients: int, requests: int, ask: Callable[[str], int]) -> dict[str, float]:
    """`clients` threads each asking `requests` questions in turn; `ask` returns completion tokens."""
    latencies: list[float] = []
    tokens: list[int] = []
    lock = threading.Lock()

    def client() -> None:
        for _ in range(requests):
            started = time.perf_counter()
            made = ask(question())
            with lock:
                latencies.append(time.perf_counter() - started)
                tokens.append(made)

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for future in [pool.submit(client) for _ in range(clients)]:
            future.result()
    wall = time.perf_counter() - started
    ordered = sorted(latencies)
    return {"clients": clients, "requests": len(latencies), "wall_s": round(wall, 2),
            "tokens_per_s": round(sum(tokens) / wall, 2), "requests_per_s": round(len(latencies) / wall, 3),
            "p50_s": round(statistics.median(ordered), 2),
            "p95_s": round(ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))], 2)}


def http_asker(base: str, tokens: int) -> Callable[[str], int]:
    client = httpx.Client(timeout=600, limits=httpx.Limits(max_connections=64))

    def ask(text: str) -> int:
        response = client.post(base + "/v1/chat/completions", json={
            "messages": [{"role": "user", "content": text}], "max_tokens": tokens})
        response.raise_for_status()
        return int(response.json()["usage"]["completion_tokens"])

    return ask


def wait_ready(base: str, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{base} never became ready")


def bench_engine(args: argparse.Namespace) -> list[dict[str, float]]:
    engine = SelfGuard.from_pretrained(progress=False)

    def ask(text: str) -> int:
        return engine.generate(text, max_new_tokens=args.tokens).usage.output_tokens

    ask(question())  # warm-up
    return [load(clients, args.requests, ask) for clients in args.clients]


def bench_server(args: argparse.Namespace) -> list[dict[str, float]]:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "selfguard_guardrails.cli", "serve", "--quiet", "--port",
                               str(port), "--batch-size", str(args.batch_size), "--max-pending", "256"],
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        base = f"http://127.0.0.1:{port}"
        wait_ready(base)
        ask = http_asker(base, args.tokens)
        ask(question())
        return [load(clients, args.requests, ask) for clients in args.clients]
    finally:
        server.terminate()
        server.wait(timeout=60)


def bench_ray(args: argparse.Namespace, replicas: int) -> list[dict[str, float]]:
    import ray
    from ray import serve

    from selfguard_guardrails.serving import ServerSettings
    from selfguard_guardrails.serving.ray_serve import selfguard_application

    port = _free_port()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, _node_ip_address="127.0.0.1")
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        loader = functools.partial(SelfGuard.from_pretrained, progress=False, threads=1)
        settings = ServerSettings(max_batch_size=args.batch_size, max_pending=256)
        serve.run(selfguard_application(loader, settings, replicas=replicas, ray_actor_options={"num_cpus": 1}),
                  name="selfguard", route_prefix="/", blocking=False)
        base = f"http://127.0.0.1:{port}"
        wait_ready(base)
        ask = http_asker(base, args.tokens)
        for _ in range(2 * replicas):
            ask(question())
        return [load(clients, args.requests, ask) for clients in args.clients]
    finally:
        serve.shutdown()
        ray.shutdown()


def table(results: dict[str, list[dict[str, float]]], baseline: str) -> str:
    lines = ["| setup | clients | requests | tokens/s | × engine | requests/s | p50 s | p95 s |",
             "|---|---|---|---|---|---|---|---|"]
    base = {row["clients"]: row["tokens_per_s"] for row in results[baseline]}
    for setup, rows in results.items():
        for row in rows:
            lines.append(f"| {setup} | {row['clients']} | {row['requests']} | {row['tokens_per_s']} | "
                         f"{row['tokens_per_s'] / base[row['clients']]:.2f} | {row['requests_per_s']} | "
                         f"{row['p50_s']} | {row['p95_s']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=lambda text: [int(c) for c in text.split(",")], default=[1, 4, 16])
    parser.add_argument("--requests", type=int, default=2, help="requests per client, one after another")
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--ray", action="store_true", help="also measure Ray Serve with 1 and 2 replicas")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    results = {"engine, one at a time": bench_engine(args), "server (batching)": bench_server(args)}
    if args.ray:
        results["Ray Serve, 1 replica"] = bench_ray(args, 1)
        results["Ray Serve, 2 replicas"] = bench_ray(args, 2)
    text = table(results, "engine, one at a time")
    print(text)
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {"tokens": args.tokens, "requests_per_client": args.requests, "batch_size": args.batch_size,
                "cpus": os.cpu_count(), "date": date.today().isoformat()}
    (args.out / "serving.json").write_text(json.dumps({"settings": settings, "results": results}, indent=2) + "\n")
    (args.out / "serving.md").write_text(f"# Serving load test ({settings['date']})\n\n"
                                         f"`python benchmarks/bench_serving.py{' --ray' if args.ray else ''}`; "
                                         f"{args.tokens} tokens per answer, {args.requests} requests per "
                                         f"client, batch size {args.batch_size}, {os.cpu_count()} CPUs.\n\n"
                                         f"{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
