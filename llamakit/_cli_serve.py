"""`llamakit serve`: run the local Segmind-compatible server in the foreground."""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from pathlib import Path

from ._defaults import LOCAL_COST_PER_CALL, LOCAL_HOST, LOCAL_PORT
from ._serve_stop import GRACEFUL_SHUTDOWN_S, StopRequest, bounded_server

ENV_UPSTREAM_API_KEY = "LLAMAKIT_UPSTREAM_API_KEY"
ENV_SERVER_KEYS = "LLAMAKIT_SERVER_KEYS"


def add_parser(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = subparsers.add_parser(
        "serve",
        help="run the local Segmind-compatible server",
        description="Serve the Segmind API contract on this machine (no key or credits needed).",
    )
    p.add_argument(
        "--backend",
        choices=("smollm2", "scripted", "upstream"),
        default=None,
        help="reply backend (default: smollm2 when installed, else scripted)",
    )
    p.add_argument("--host", default=LOCAL_HOST, help="bind address (default %(default)s)")
    p.add_argument(
        "--port",
        type=int,
        default=LOCAL_PORT,
        help="port, 0 for any free one (default %(default)s)",
    )
    p.add_argument(
        "--api-key",
        action="append",
        default=None,
        metavar="KEY",
        help="accepted key (repeatable); default: $LLAMAKIT_SERVER_KEYS (comma-separated, "
        "which keeps keys out of `ps`), else a generated SG_local_ key",
    )
    p.add_argument(
        "--credits", type=float, default=1.0, help="starting balance per key (default %(default)s)"
    )
    p.add_argument("--rpm", type=int, default=None, help="requests per minute per key (429 beyond)")
    p.add_argument(
        "--db", type=Path, default=None, help="SQLite file that keeps balances across restarts"
    )
    p.add_argument(
        "--rules", type=Path, default=None, help="YAML/JSON reply rules for the scripted backend"
    )
    p.add_argument(
        "--upstream-url", default=None, help="OpenAI-compatible base URL for the upstream backend"
    )
    p.add_argument(
        "--upstream-model", default=None, help="model name to send upstream (default: the slug)"
    )
    p.add_argument(
        "--cost-per-call",
        type=float,
        default=LOCAL_COST_PER_CALL,
        help="credits billed per successful call (default %(default)s)",
    )
    p.add_argument(
        "--cost-per-token", type=float, default=None, help="bill per token instead of per call"
    )
    p.add_argument("--v2-expiry-s", type=float, default=3600.0, help="keep v2 results this long")
    faults = p.add_argument_group("fault injection")
    faults.add_argument("--latency-ms", type=float, default=0.0)
    faults.add_argument("--latency-jitter-ms", type=float, default=0.0)
    faults.add_argument("--fail-rate", type=float, default=0.0, help="probability of a 500")
    faults.add_argument("--rate-429", type=float, default=0.0, help="probability of a 429")
    faults.add_argument("--retry-after-s", type=float, default=1.0)
    faults.add_argument(
        "--drop-rate", type=float, default=0.0, help="probability of a dropped connection"
    )
    faults.add_argument("--slow-body-s", type=float, default=0.0)
    faults.add_argument("--seed", type=int, default=None, help="seed of the fault RNG")
    p.add_argument(
        "--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug")
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # First thing, so that a stop signal is honoured however early it comes.
    stop = StopRequest()
    stop.install()
    import uvicorn

    from .server.app import create_app
    from .server.backends import default_backend
    from .server.config import ServerConfig, build_keys
    from .server.faults import FaultSettings

    api_keys = args.api_key or [k for k in os.environ.get(ENV_SERVER_KEYS, "").split(",") if k]
    keys = build_keys(api_keys[0] if api_keys else None, api_keys, args.credits)
    if not _is_loopback(args.host):
        print(
            f"llamakit serve: warning: binding {args.host} exposes the server (and its keys' "
            "credits) beyond this machine",
            file=sys.stderr,
        )
    try:
        faults = FaultSettings().updated(
            {
                "latency_ms": args.latency_ms,
                "latency_jitter_ms": args.latency_jitter_ms,
                "fail_rate": args.fail_rate,
                "rate_429": args.rate_429,
                "retry_after_s": args.retry_after_s,
                "drop_rate": args.drop_rate,
                "slow_body_s": args.slow_body_s,
                "seed": args.seed,
            }
        )
    except ValueError as exc:
        print(f"llamakit serve: {exc}", file=sys.stderr)
        return 2
    config = ServerConfig(
        keys=keys,
        backend=args.backend or default_backend(),
        rpm=args.rpm,
        db=args.db,
        rules=args.rules,
        upstream_url=args.upstream_url,
        # The upstream's key comes from the environment so it never shows in `ps`.
        upstream_api_key=os.environ.get(ENV_UPSTREAM_API_KEY),
        upstream_model=args.upstream_model,
        cost_per_call=args.cost_per_call,
        cost_per_token=args.cost_per_token,
        faults=faults,
        v2_expiry_s=args.v2_expiry_s,
    )
    try:
        app = create_app(config)
    except (ValueError, OSError) as exc:
        print(f"llamakit serve: {exc}", file=sys.stderr)
        return 2
    if stop.requested:  # told to stop while loading: never bind
        return 0
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((args.host, args.port))
    except OSError as exc:
        print(f"llamakit serve: cannot bind {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 2
    sock.listen(128)  # connections queue until uvicorn accepts, so clients may start right away
    host, port = sock.getsockname()[:2]
    # The user asked for a server to call: the key it accepts is what they need to see.
    print(f"llamakit serve: http://{host}:{port}  backend={config.backend}", flush=True)
    print(f"  base_url: http://{host}:{port}/v1", flush=True)
    for key in keys:
        print(f"  api key:  {key}", flush=True)
    uvicorn_config = uvicorn.Config(
        app,
        log_level=args.log_level,
        access_log=args.log_level in ("info", "debug"),
        # A client that never closes its connection must not keep a stopped server alive.
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    # uvicorn re-raises the stop signal once it has shut down; it lands in `stop` again, so this
    # is a normal return: status 0, no traceback.
    bounded_server(uvicorn_config, stop).run(sockets=[sock])
    return 0


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name, not an address
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except OSError:
            return False
