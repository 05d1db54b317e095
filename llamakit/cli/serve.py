"""`llamakit serve`: run the local Segmind-compatible server in the foreground."""

from __future__ import annotations

import argparse
import ipaddress
import os
import socket
import sys
from decimal import Decimal
from pathlib import Path

from .._defaults import LOCAL_COST_PER_CALL, LOCAL_HOST, LOCAL_PORT
from ..server.config import DEFAULT_UPSTREAM_TIMEOUT_S
from ..server.protocol import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
)
from ..server.serve_stop import GRACEFUL_SHUTDOWN_S, StopRequest, bounded_server
from .args import (
    api_key,
    bounded_number,
    nonnegative_credits,
    nonnegative_number,
    port,
    positive_int,
    positive_number,
    rules_file,
)

ENV_UPSTREAM_API_KEY = "LLAMAKIT_UPSTREAM_API_KEY"
ENV_SERVER_KEYS = "LLAMAKIT_SERVER_KEYS"
ENV_ADMIN_KEY = "LLAMAKIT_ADMIN_KEY"


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
        type=port,
        default=LOCAL_PORT,
        help="port, 0 for any free one (default %(default)s)",
    )
    p.add_argument(
        "--api-key",
        action="append",
        default=None,
        type=api_key,
        metavar="KEY",
        help="accepted key (repeatable); default: $LLAMAKIT_SERVER_KEYS (comma-separated, "
        "which keeps keys out of `ps`), else a generated SG_local_ key",
    )
    p.add_argument(
        "--credits",
        type=nonnegative_credits,
        default=Decimal("1"),
        help="starting balance per key (default %(default)s)",
    )
    p.add_argument(
        "--rpm", type=positive_int, default=None, help="requests per minute per key (429 beyond)"
    )
    p.add_argument(
        "--db", type=Path, default=None, help="SQLite file that keeps balances across restarts"
    )
    p.add_argument(
        "--rules",
        type=rules_file,
        default=None,
        help="YAML/JSON reply rules for the scripted backend",
    )
    p.add_argument(
        "--upstream-url", default=None, help="OpenAI-compatible base URL for the upstream backend"
    )
    p.add_argument(
        "--upstream-model", default=None, help="model name to send upstream (default: the slug)"
    )
    p.add_argument(
        "--cost-per-call",
        type=nonnegative_credits,
        default=LOCAL_COST_PER_CALL,
        help="credits billed per successful call (default %(default)s)",
    )
    p.add_argument(
        "--cost-per-token",
        type=nonnegative_credits,
        default=None,
        help="bill per token instead of per call",
    )
    p.add_argument(
        "--upstream-timeout-s",
        type=positive_number,
        default=DEFAULT_UPSTREAM_TIMEOUT_S,
        help="seconds the upstream backend waits for each upstream reply (default %(default)s)",
    )
    p.add_argument(
        "--v2-expiry-s", type=positive_number, default=3600.0, help="keep v2 results this long"
    )
    limits = p.add_argument_group(
        "exposure limits",
        "bounds that keep the server answering when slow or greedy clients connect; the admin "
        f"key (${ENV_ADMIN_KEY}, never a flag, so `ps` never shows it) is the only key that can "
        "read or change other keys' stats, faults and balances",
    )
    limits.add_argument(
        "--header-timeout-s",
        type=positive_number,
        default=DEFAULT_HEADER_TIMEOUT_S,
        help="a request head must arrive within this time (408 and close otherwise; default %(default)s)",
    )
    limits.add_argument(
        "--body-timeout-s",
        type=positive_number,
        default=DEFAULT_BODY_TIMEOUT_S,
        help="a request body must arrive within this time after its head (default %(default)s)",
    )
    limits.add_argument(
        "--max-connections-per-client",
        type=positive_int,
        default=DEFAULT_MAX_CONNECTIONS_PER_CLIENT,
        help="open connections one client address may hold (503 beyond; default %(default)s)",
    )
    limits.add_argument(
        "--max-connections",
        type=positive_int,
        default=DEFAULT_MAX_CONNECTIONS,
        help="open connections plus running requests in all (uvicorn's limit_concurrency; 503 "
        "beyond; default %(default)s)",
    )
    faults = p.add_argument_group("fault injection")
    faults.add_argument("--latency-ms", type=nonnegative_number, default=0.0)
    faults.add_argument("--latency-jitter-ms", type=nonnegative_number, default=0.0)
    faults.add_argument(
        "--fail-rate", type=bounded_number(0, 1), default=0.0, help="probability of a 500"
    )
    faults.add_argument(
        "--rate-429", type=bounded_number(0, 1), default=0.0, help="probability of a 429"
    )
    faults.add_argument("--retry-after-s", type=nonnegative_number, default=1.0)
    faults.add_argument(
        "--drop-rate",
        type=bounded_number(0, 1),
        default=0.0,
        help="probability of a dropped connection",
    )
    faults.add_argument("--slow-body-s", type=nonnegative_number, default=0.0)
    faults.add_argument("--seed", type=int, default=None, help="seed of the fault RNG")
    p.add_argument(
        "--log-level", default="warning", choices=("critical", "error", "warning", "info", "debug")
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # First thing, so that a stop signal is honoured however early it comes.
    stop = StopRequest()
    stop.install()
    from ..server.app import create_app
    from ..server.backends import default_backend
    from ..server.config import ServerConfig, build_keys
    from ..server.faults import FaultSettings
    from ..server.protocol import ConnectionGuard, raise_fd_limit

    api_keys = args.api_key or [k for k in os.environ.get(ENV_SERVER_KEYS, "").split(",") if k]
    try:
        keys = build_keys(api_keys[0] if api_keys else None, api_keys, args.credits)
    except ValueError as exc:  # a key from $LLAMAKIT_SERVER_KEYS (flags are checked by argparse)
        print(f"llamakit serve: {exc}", file=sys.stderr)
        return 2
    home = _key_home()
    if not api_keys and home.exists() and not home.is_dir():
        # Checked before binding: the generated key is written there once the port is known.
        print(
            f"llamakit serve: {home} (the llamakit home, where the generated key is written) is "
            "a file, not a folder; set LLAMAKIT_HOME to a folder, or pass --api-key",
            file=sys.stderr,
        )
        return 2
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
    try:
        config = ServerConfig(
            keys=keys,
            backend=args.backend or default_backend(),
            rpm=args.rpm,
            db=args.db,
            rules=Path(args.rules) if args.rules else None,
            upstream_url=args.upstream_url,
            # The upstream's key comes from the environment so it never shows in `ps`.
            upstream_api_key=os.environ.get(ENV_UPSTREAM_API_KEY),
            upstream_model=args.upstream_model,
            upstream_timeout_s=args.upstream_timeout_s,
            cost_per_call=args.cost_per_call,
            cost_per_token=args.cost_per_token,
            faults=faults,
            v2_expiry_s=args.v2_expiry_s,
            admin_key=os.environ.get(ENV_ADMIN_KEY) or None,
            guard=ConnectionGuard(
                header_timeout_s=args.header_timeout_s,
                body_timeout_s=args.body_timeout_s,
                max_connections_per_client=args.max_connections_per_client,
                max_connections=args.max_connections,
            ),
        )
    except ValueError as exc:
        print(f"llamakit serve: {exc}", file=sys.stderr)
        return 2
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
    generated = None if api_keys else _save_generated_key(next(iter(keys)), port)
    print(f"llamakit serve: http://{host}:{port}  backend={config.backend}", flush=True)
    print(f"  base_url: http://{host}:{port}/v1", flush=True)
    # Terminal output ends up in logs and screen shares: show which keys, never a whole key.
    for key in keys:
        print(f"  api key:  {key_hint(key)}", flush=True)
    if generated is not None:
        print(f"  (generated; the whole key is in {generated}, readable by you only)", flush=True)
    if config.admin_key:
        print(f"  admin key: {key_hint(config.admin_key)} (from ${ENV_ADMIN_KEY})", flush=True)
    warning = raise_fd_limit(config.guard)
    if warning:
        print(f"llamakit serve: warning: {warning}", file=sys.stderr)
    uvicorn_config = config.guard.uvicorn_config(
        app,
        log_level=args.log_level,
        access_log=args.log_level in ("info", "debug"),
        # A client that never closes its connection must not keep a stopped server alive.
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
    )
    # uvicorn re-raises the stop signal once it has shut down; it lands in `stop` again, so this
    # is a normal return: status 0, no traceback.
    try:
        bounded_server(uvicorn_config, stop).run(sockets=[sock])
    finally:
        if generated is not None:  # the key dies with the server; so does its file
            generated.unlink(missing_ok=True)
    return 0


def key_hint(key: str) -> str:
    """Enough of `key` to tell which one it is (its first 6 and last 4 characters, when that
    leaves at least half of it hidden) and its label, as stats and ledgers name it."""
    from ..server.config import key_label

    shown = f"{key[:6]}...{key[-4:]}" if len(key) >= 20 else "..."
    return f"{shown} ({key_label(key)})"


def _save_generated_key(key: str, port: int) -> Path:
    """Write a generated key to a file only its owner can read; return the path."""
    home = _key_home()
    home.mkdir(parents=True, exist_ok=True)
    path = home / f"serve-{port}.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(key + "\n")
    os.chmod(path, 0o600)  # an existing file keeps its old mode through O_CREAT
    return path.resolve()


def _key_home() -> Path:
    from .._defaults import ENV_HOME

    return Path(os.environ.get(ENV_HOME) or ".llamakit")


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a name, not an address
        try:
            return ipaddress.ip_address(socket.gethostbyname(host)).is_loopback
        except OSError:
            return False
