"""Tiny hand-written HTTP servers for the faults the local stand-in cannot produce: a body or
headers trickled a byte at a time, a redirect elsewhere, a listener on another origin that records
what reaches it. Each runs on a thread and records every request it receives (raw bytes)."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Respond = Callable[[socket.socket, bytes], None]


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(10)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
            while len(body) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
            self.server.seen.append(head + b"\r\n\r\n" + body)
            if b"/get-user-credits" in head.split(b"\r\n", 1)[0] and self.server.balance_ok:
                plain(200, b'{"credits": 1.0, "free-credits": 0.0}')(sock, head)
            else:
                self.server.respond(sock, head)
        except OSError:
            pass  # the client gave up: that is what several tests want


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, host: str, respond: Respond, balance_ok: bool) -> None:
        super().__init__((host, 0), _Handler)
        self.respond = respond
        self.balance_ok = balance_ok
        self.seen: list[bytes] = []


@contextmanager
def raw_server(
    respond: Respond, host: str = "127.0.0.1", *, balance_ok: bool = True
) -> Iterator[_Server]:
    """A server on ``host`` (any free port) answering each request with ``respond``; the
    balance endpoint answers at once unless ``balance_ok`` is False."""
    server = _Server(host, respond, balance_ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


def url_of(server: _Server) -> str:
    host, port = server.server_address[:2]
    return f"http://{host}:{port}"


def trickle_body(interval: float = 0.5, size: int = 100) -> Respond:
    """Headers at once, then one byte of the body every ``interval`` seconds."""

    def respond(sock: socket.socket, head: bytes) -> None:
        sock.sendall(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            + f"content-length: {size}\r\n\r\n".encode()
        )
        for _ in range(size):
            time.sleep(interval)
            sock.sendall(b" ")

    return respond


def trickle_headers(interval: float = 0.5) -> Respond:
    """The status line and headers themselves, one byte every ``interval`` seconds."""

    def respond(sock: socket.socket, head: bytes) -> None:
        for byte in b"HTTP/1.1 200 OK\r\nx-padding: " + b"a" * 200:
            time.sleep(interval)
            sock.sendall(bytes([byte]))

    return respond


def plain(status: int, body: bytes, **headers: str) -> Respond:
    def respond(sock: socket.socket, head: bytes) -> None:
        lines = [f"HTTP/1.1 {status} X", f"content-length: {len(body)}", "connection: close"]
        lines += [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode() + body)

    return respond
