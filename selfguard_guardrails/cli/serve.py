"""`selfguard serve`: the OpenAI-compatible server over a guarded model (the `serve` extra)."""

from __future__ import annotations

import argparse
import functools
import os
from typing import Any

from .engine_setup import load_engine
from .options import MODE_NAMES, CliError, finite_float, int_at_least


def add_serve_command(commands: Any, common: argparse.ArgumentParser) -> None:
    serve = commands.add_parser("serve", parents=[common], help="serve the guarded model over an OpenAI-compatible API",
                                description="An OpenAI-compatible chat-completions server with per-request "
                                            "Self-Guard (docs/serving.md). Needs the serve extra.")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int_at_least("--port", 1), default=8000, help="port (default 8000)")
    serve.add_argument("--api-key", metavar="KEY", help="require 'Authorization: Bearer KEY' (default: "
                                                        "$SELFGUARD_API_KEY when set, else no key)")
    serve.add_argument("--audit", metavar="PATH", help="audit log: a .jsonl or .sqlite file, one record per request")
    serve.add_argument("--mode", choices=MODE_NAMES, help="the mode of a request that names none (default: as for "
                                                          "generate)")
    serve.add_argument("--allow-modes", metavar="LIST", help="modes a request may ask for, comma-separated "
                                                             "(default: guarded,self-guard)")
    serve.add_argument("--strength-range", nargs=2, type=finite_float("--strength-range", minimum=0.0),
                       metavar=("LOW", "HIGH"), help="let a request set λ within this range (default: not at all)")
    serve.add_argument("--allow-layer-override", action="store_true", help="let a request choose the steered layers")
    serve.add_argument("--max-tokens-limit", type=int_at_least("--max-tokens-limit", 1), default=1024, metavar="N")
    serve.add_argument("--max-pending", type=int_at_least("--max-pending", 1), default=64, metavar="N",
                       help="requests waiting or running at once; more get a 429 (default 64)")
    serve.add_argument("--batch-size", type=int_at_least("--batch-size", 1), default=8, metavar="N",
                       help="requests decoded together at most (default 8)")
    serve.add_argument("--batch-wait-ms", type=finite_float("--batch-wait-ms", minimum=0.0), default=10.0,
                       metavar="MS", help="how long a batch waits for more requests (default 10)")
    serve.add_argument("--model-name", metavar="ID", help="the model id clients see (default: the model's name)")
    ray = serve.add_argument_group("Ray Serve (the ray extra)")
    ray.add_argument("--ray", action="store_true", help="serve on Ray Serve: replicas that each load the model, "
                                                        "Ray's batching (joins RAY_ADDRESS when set)")
    ray.add_argument("--replicas", type=int_at_least("--replicas", 1), default=1, metavar="N",
                     help="replicas to run (with --min/--max-replicas: to start with)")
    ray.add_argument("--min-replicas", type=int_at_least("--min-replicas", 0), metavar="N",
                     help="autoscale: the fewest replicas")
    ray.add_argument("--max-replicas", type=int_at_least("--max-replicas", 1), metavar="N",
                     help="autoscale: the most replicas")
    serve.set_defaults(func=cmd_serve)


def cmd_serve(args: argparse.Namespace) -> int:
    try:
        from ..serving import ServerSettings, run_server
    except ImportError as exc:
        raise CliError(f"selfguard serve needs the serve extra ({exc.name} is missing): "
                       "pip install 'selfguard-guardrails[serve]'.") from exc
    modes: dict[str, Any] = {"allowed_modes": tuple(m.strip() for m in args.allow_modes.split(","))} if (
        args.allow_modes) else {}
    try:
        settings = ServerSettings(
            model_name=args.model_name, api_key=args.api_key or os.environ.get("SELFGUARD_API_KEY") or None,
            max_tokens_limit=args.max_tokens_limit, default_max_tokens=min(256, args.max_tokens_limit),
            max_pending=args.max_pending, max_batch_size=args.batch_size, max_wait_ms=args.batch_wait_ms,
            strength_range=tuple(args.strength_range) if args.strength_range else None,
            allow_layer_override=args.allow_layer_override,
            **modes)
    except ValueError as exc:  # pydantic's ValidationError: the message names the option
        raise CliError(f"Server options: {exc}") from exc
    if args.mode is not None and args.mode not in settings.allowed_modes:
        raise CliError(f"--mode {args.mode} is not among the modes requests may use "
                       f"({', '.join(settings.allowed_modes)}): add it to --allow-modes.")
    audit = {"audit": args.audit} if args.audit else {}
    load = functools.partial(load_engine, args, mode=args.mode, **audit)  # picklable: Ray ships it to replicas
    if args.ray:
        try:
            from ..serving.ray_serve import run_on_ray
        except ImportError as exc:
            raise CliError(f"selfguard serve --ray needs the ray extra ({exc.name} is missing): "
                           "pip install 'selfguard-guardrails[ray]'.") from exc
        run_on_ray(load, settings, host=args.host, port=args.port, replicas=args.replicas,
                   min_replicas=args.min_replicas, max_replicas=args.max_replicas)
        return 0
    if args.min_replicas is not None or args.max_replicas is not None or args.replicas != 1:
        raise CliError("--replicas, --min-replicas and --max-replicas apply to --ray only: add --ray.")
    run_server(load, settings, host=args.host, port=args.port, log_level="warning" if args.quiet else "info")
    return 0
