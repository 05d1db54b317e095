"""The upstream backend against a second real server, and `llamakit serve` as a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import httpx
import pytest

from .server_helpers import CHAT, SLUG, chat_body, http, ssl_context


def test_upstream_forwards_to_an_openai_compatible_server(make_server):
    upstream = make_server(credits=5.0, api_key="SG_upstream_only")
    front = make_server(
        backend="upstream",
        credits=1.0,
        upstream_url=upstream.url + "/v1",
        upstream_api_key="SG_upstream_only",
    )
    assert "SG_upstream_only" not in repr(front)
    with http(front) as c, http(upstream) as direct:
        r = c.post(CHAT, json=chat_body("What is 9 * 9?", max_tokens=50, temperature=0))
        expected = direct.post(
            "/v1/chat/completions",
            json={"model": SLUG, **chat_body("What is 9 * 9?", max_tokens=50, temperature=0)},
        )
        assert r.status_code == 200
        assert r.json()["choices"][0]["message"]["content"] == "9 * 9 = 81"
        assert r.json()["choices"][0]["message"] == expected.json()["choices"][0]["message"]
        assert r.json()["usage"]["prompt_tokens"] == expected.json()["usage"]["prompt_tokens"]
        # The front bills its own ledger; the upstream bills the upstream key.
        assert float(r.headers["x-remaining-credits"]) == pytest.approx(1.0 - 0.00063)
        assert upstream.stats()["billed_calls"] == 2
        # max_tokens and stop are forwarded.
        cut = c.post(CHAT, json=chat_body(max_tokens=2)).json()
        assert cut["choices"][0]["finish_reason"] == "length"


def test_upstream_failures_are_not_billed_and_a_rejected_key_is_final(make_server):
    upstream = make_server(api_key="SG_up", fail_rate=1.0)
    front = make_server(
        backend="upstream", upstream_url=upstream.url + "/v1", upstream_api_key="SG_wrong_key"
    )
    with http(front) as c:
        r = c.post(CHAT, json=chat_body())
        # 424, a 4xx: no client retries it; the message says whose configuration is wrong.
        assert r.status_code == 424 and "rejected this server's configuration" in r.json()["error"]
        assert r.headers["x-should-retry"] == "false"
        front_bad = make_server(
            backend="upstream", upstream_url=upstream.url + "/v1", upstream_api_key="SG_up"
        )
        with http(front_bad) as c2:
            r2 = c2.post(CHAT, json=chat_body())
        assert r2.status_code == 500 and "500" in r2.json()["error"]
    assert front.stats()["billed_calls"] == 0 and front.balance() == 1.0


def test_upstream_429_is_passed_on_with_retry_after(make_server):
    upstream = make_server(api_key="SG_up", rate_429=1.0, retry_after_s=3)
    front = make_server(
        backend="upstream", upstream_url=upstream.url + "/v1", upstream_api_key="SG_up"
    )
    with http(front) as c:
        r = c.post(CHAT, json=chat_body())
    assert r.status_code == 429 and r.headers["retry-after"] == "3"
    assert front.balance() == 1.0


def _serve(args: list[str], env_home: Path, **env_extra: str) -> tuple[subprocess.Popen[str], str]:
    env = {**os.environ, "LLAMAKIT_HOME": str(env_home), **env_extra}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llamakit.cli", "serve", "--port", "0", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith("llamakit serve: http://127.0.0.1:"), first + proc.stderr.read()
    url = first.split()[2]
    for line in (proc.stdout.readline(), proc.stdout.readline()):
        assert line.strip().startswith(("base_url:", "api key:"))
    return proc, url


def _wait_up(url: str, key: str) -> httpx.Client:
    client = httpx.Client(
        base_url=url, headers={"x-api-key": key}, verify=ssl_context(), timeout=10
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            client.get("/v1/get-user-credits")
            return client
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)  # beyond serve's own 15 s stop deadline
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_cli_serve_with_db_keeps_balances_across_restart(tmp_path):
    db = tmp_path / "ledger.db"
    args = [
        "--backend",
        "scripted",
        "--api-key",
        "SG_cli",
        "--credits",
        "1.0",
        "--db",
        str(db),
        "--rpm",
        "100",
    ]
    proc, url = _serve(args, tmp_path)
    try:
        with closing(_wait_up(url, "SG_cli")) as c:
            for _ in range(3):
                assert c.post(CHAT, json=chat_body()).status_code == 200
            assert c.get("/_llamakit/stats").json()["billed_calls"] == 3
            assert c.post("/_llamakit/faults", json={"fail_rate": 1.0}).status_code == 200
            assert c.post(CHAT, json=chat_body()).status_code == 500
    finally:
        _stop(proc)
    assert proc.returncode == 0, proc.stderr.read()
    proc, url = _serve(args, tmp_path)
    try:
        with closing(_wait_up(url, "SG_cli")) as c:
            assert c.get("/v1/get-user-credits").json()["credits"] == pytest.approx(
                1.0 - 3 * 0.00063
            )
    finally:
        _stop(proc)


def test_cli_rejects_bad_fault_settings(tmp_path):
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "llamakit.cli",
            "serve",
            "--backend",
            "scripted",
            "--fail-rate",
            "3",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    assert "--fail-rate" in r.stderr and "from 0 to 1" in r.stderr  # refused while parsing


def test_cli_serve_takes_keys_from_the_environment_so_ps_never_shows_them(tmp_path):
    proc, url = _serve(
        ["--backend", "scripted"], tmp_path, LLAMAKIT_SERVER_KEYS="SG_env_one,SG_env_two"
    )
    try:
        for key in ("SG_env_one", "SG_env_two"):
            with closing(_wait_up(url, key)) as c:
                assert c.post(CHAT, json=chat_body()).status_code == 200
        with closing(_wait_up(url, "SG_not_listed")) as c:
            assert c.post(CHAT, json=chat_body()).status_code == 401
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes()
        assert b"SG_env" not in cmdline
    finally:
        _stop(proc)
