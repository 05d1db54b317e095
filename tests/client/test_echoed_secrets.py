"""A server that echoes a secret where llamakit assembles or copies a value instead of reading one
JSON string: a key split across a reply's content parts, a key in a header (``x-request-id``,
``content-type``), a base_url password in the other encoding (percent-encoded in the URL, decoded
in HTTP Basic auth). None of it may reach a ChatResponse, an exception, the store, a CSV or a run
file. Hand-written servers: the stand-in never echoes a key."""

from __future__ import annotations

import base64
import json
import socket
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from raw_servers import plain, raw_server, url_of

import llamakit as lk
from llamakit.store import Store

KEY = "SG_echoed_parts_0123456789abcdef"
PASSWORD = "pa@ss-w0rd secret-äö"


def _completion(content: Any) -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-1",
            "object": "chat.completion",
            "model": "llama-v3-8b-instruct",
            "choices": [
                {"index": 0, "message": {"role": "assistant", "content": content},
                 "finish_reason": "stop"}
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7},
        }
    ).encode()  # fmt: skip


def _everything_written(tmp_path: Path, run: Any) -> str:
    """The store's files, the CSV and the run file, as one text to search."""
    run.to_csv(tmp_path / "r.csv")
    run.save(tmp_path / "r.jsonl")
    out = []
    for path in tmp_path.rglob("*"):
        if path.is_file():
            out.append(path.read_bytes().decode("utf-8", "replace"))
    return "\n".join(out)


def _forms(secret: str) -> list[str]:
    return [secret, quote(secret, safe=""), secret.encode().hex()]


@pytest.mark.parametrize("cut", [3, 10, 20, len(KEY) - 2])
def test_a_key_split_across_content_parts_is_masked_once_joined(tmp_path: Path, cut: int) -> None:
    parts = [{"type": "text", "text": "the key: " + KEY[:cut]}, {"type": "text", "text": KEY[cut:]}]
    with raw_server(plain(200, _completion(parts), content_type="application/json")) as srv:
        client = lk.Client(KEY, base_url=url_of(srv) + "/v1")
        reply = client.chat("hi", max_tokens=5)
        assert KEY not in reply.text and "***" in reply.text
        assert KEY not in json.dumps(reply.raw)
        exp = lk.Experiment("parts", prompts="{{ q }}", dataset=[{"q": "a"}, {"q": "b"}])
        run = exp.run(client, progress=False, store=Store(tmp_path / "s.db"))
        assert run.status == "finished"
        client.close()
    written = _everything_written(tmp_path, run)
    assert all(form not in written for form in _forms(KEY))


def test_a_key_in_the_request_id_header_is_masked(tmp_path: Path) -> None:
    ok = plain(200, _completion("fine"), content_type="application/json", x_request_id=KEY)
    with raw_server(ok) as srv:
        client = lk.Client(KEY, base_url=url_of(srv) + "/v1")
        reply = client.chat("hi", max_tokens=5)
        assert reply.request_id and KEY not in reply.request_id
        exp = lk.Experiment("rid", prompts="{{ q }}", dataset=[{"q": "a"}])
        run = exp.run(client, progress=False, store=Store(tmp_path / "s.db"))
        client.close()
    assert KEY not in _everything_written(tmp_path, run)
    refused = plain(422, b'{"error": "bad"}', content_type="application/json", x_request_id=KEY)
    with raw_server(refused) as srv, pytest.raises(lk.APIError) as info:
        lk.Client(KEY, base_url=url_of(srv) + "/v1").chat("hi", max_tokens=5)
    err = info.value
    assert KEY not in (err.request_id or "") and KEY not in str(err) and KEY not in repr(err)


def test_a_key_in_the_content_type_of_a_bad_reply_is_masked() -> None:
    bad = plain(200, b"not json at all", content_type=f"text/plain; token={KEY}")
    with raw_server(bad) as srv, pytest.raises(lk.APIError) as info:
        lk.Client(KEY, base_url=url_of(srv) + "/v1").chat("hi", max_tokens=5)
    assert KEY not in str(info.value) and KEY not in repr(info.value.args)


def _echo_auth(sock: socket.socket, head: bytes) -> None:
    """Replies with the Authorization header it received and the password it decodes from it."""
    auth = ""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"authorization":
            auth = value.strip().decode()
    decoded = base64.b64decode(auth.split()[-1]).decode() if auth else ""
    plain(200, _completion(f"you sent {auth}; password {decoded}"))(sock, head)


def test_a_percent_encoded_base_url_password_is_masked_in_both_forms(tmp_path: Path) -> None:
    with raw_server(_echo_auth) as srv:
        host = url_of(srv).removeprefix("http://")
        base = f"http://user:{quote(PASSWORD, safe='')}@{host}/v1"
        client = lk.Client("SG_other_key_0123456789", base_url=base)
        reply = client.chat("hi", max_tokens=5)
        assert "password user:***" in reply.text, reply.text
        exp = lk.Experiment("pw", prompts="{{ q }}", dataset=[{"q": "a"}])
        run = exp.run(client, progress=False, store=Store(tmp_path / "s.db"))
        client.close()
    written = _everything_written(tmp_path, run) + reply.text + repr(client)
    basic = base64.b64encode(f"user:{PASSWORD}".encode()).decode()
    for form in (PASSWORD, quote(PASSWORD, safe=""), basic):
        assert form not in written, form


@pytest.mark.parametrize(
    "error",
    [
        ["bad key " + KEY[:12], KEY[12:]],
        {"code": "auth", "why": ["bad key " + KEY[:5], KEY[5:]]},
        {"message": ["key", KEY[:20], KEY[20:]]},
    ],
)
def test_a_key_split_across_the_strings_of_an_error_body_is_masked(
    tmp_path: Path, error: Any
) -> None:
    """An error body's list or object becomes text as its strings joined by spaces (which the
    masking tolerates inside a long secret), not as a repr whose quotes and commas hid a split
    key: nothing of it reaches the exception, the store or the run file."""
    refused = plain(422, json.dumps({"error": error}).encode(), content_type="application/json")
    with raw_server(refused) as srv:
        client = lk.Client(KEY, base_url=url_of(srv) + "/v1", max_retries=0)
        with pytest.raises(lk.APIError) as info:
            client.chat("hi", max_tokens=5)
        exp = lk.Experiment("errs", prompts="{{ q }}", dataset=[{"q": "a"}])
        run = exp.run(client, progress=False, store=Store(tmp_path / "s.db"))
        client.close()
    assert "***" in str(info.value)
    seen = str(info.value) + repr(info.value.args) + _everything_written(tmp_path, run)
    assert KEY not in seen.replace("', '", "").replace(" ", "")
