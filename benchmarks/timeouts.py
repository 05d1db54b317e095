"""What a timeout costs against misbehaving servers: time to the error, and calls billed.

  - trickle: a hand-written server sends the response headers, then one body byte every 0.5 s
    (the local server's slow-body fault sends the body in one piece, so it cannot trickle). With
    ``Client(timeout=2)`` the call must fail after ~2 s (per-read timeouts alone: never).
  - read timeout: the local server (scripted) takes 5 s per call, the client has ``timeout=1``.
    The server bills each call it finishes, whether anyone still waits or not. Reported: calls
    billed in its ledger with the default retry policy (not resending a call that may have been
    billed) and with ``RetryPolicy(retry_maybe_billed=True)`` (the old behaviour: resend).

Usage: ``python benchmarks/timeouts.py``
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time

import llamakit
from llamakit.client.retry import RetryPolicy


def trickle_server() -> tuple[socket.socket, str]:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(conn,), daemon=True).start()

    def answer(conn: socket.socket) -> None:
        with conn:
            try:
                head = conn.recv(65536)
                if b"get-user-credits" in head.split(b"\r\n", 1)[0]:
                    body = b'{"credits": 1.0, "free-credits": 0.0}'
                    length = f"content-length: {len(body)}\r\n\r\n".encode()
                    conn.sendall(b"HTTP/1.1 200 OK\r\n" + length + body)
                    head = conn.recv(65536)  # the chat, on the same kept-alive connection
                conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n")
                for _ in range(1000):
                    time.sleep(0.5)
                    conn.sendall(b" ")
            except OSError:
                return

    threading.Thread(target=serve, daemon=True).start()
    host, port = listener.getsockname()[:2]
    return listener, f"http://{host}:{port}/v1"


def billed_after_read_timeout(policy: RetryPolicy) -> tuple[int, int]:
    with llamakit.local_server(backend="scripted", credits=10.0, latency_ms=5000) as srv:
        attempts: list[object] = []
        client = srv.client(timeout=1, retry_policy=policy, on_attempt=attempts.append)
        with contextlib.suppress(llamakit.APIError):
            client.chat("hi")
        time.sleep(5.5)  # the last attempt's call finishes (and is billed) on the server
        return len(attempts), int(srv.stats()["billed_calls"])


def main() -> None:
    listener, url = trickle_server()
    client = llamakit.Client("SG_bench_trickle", base_url=url, timeout=2, check_context=False)
    start = time.perf_counter()
    try:
        client.chat("hi")
        outcome = "no error"
    except llamakit.APIError as exc:
        outcome = type(exc).__name__
    elapsed = time.perf_counter() - start
    listener.close()
    note = f"Client(timeout=2), one byte every 0.5 s; {outcome}"
    print(f"FIGURE trickle-body time to error: {elapsed:.2f} s ({note})")

    sent, billed = billed_after_read_timeout(RetryPolicy())
    print(f"FIGURE read timeout, default policy: {billed} billed ({sent} attempts sent)")
    sent, billed = billed_after_read_timeout(RetryPolicy(retry_maybe_billed=True))
    print(f"FIGURE read timeout, retry_maybe_billed: {billed} billed ({sent} attempts sent)")


if __name__ == "__main__":
    main()
