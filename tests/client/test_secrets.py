"""A canary key must appear nowhere: reprs, errors, attempts, logs (httpx debug included), CLI
output, files under LLAMAKIT_HOME."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from pathlib import Path

import pytest

import llamakit
from llamakit import APIError, Attempt, Client, Conversation, LlamakitError
from llamakit.cli import main as cli_main
from llamakit.client.secrets import redact

CANARY = "SG_canary_7f3a9c2e51d84b06"
WRONG = "SG_canary_wrong_0d9e8f7a6b"


def texts_of(exc: BaseException) -> list[str]:
    out = []
    while exc is not None:
        out += [str(exc), repr(exc), repr(vars(exc))]
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return out


def test_canary_key_appears_nowhere(
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    isolated_home: Path,
) -> None:
    caplog.set_level(logging.DEBUG)  # root: httpx, httpcore, llamakit all at DEBUG
    outputs: list[str] = []
    attempts: list[Attempt] = []
    with llamakit.local_server(backend="scripted", api_key=CANARY, credits=1.0) as srv:
        client = srv.client(on_attempt=attempts.append, max_retries=1)
        outputs += [repr(client), str(client), repr(srv)]
        reply = client.chat("hello", max_tokens=8)
        outputs += [repr(reply), str(client.credits())]
        conv = Conversation(client, system="terse")
        conv.send("hi")
        outputs += [repr(conv), conv.to_frame().to_string(), repr(conv.messages)]

        failures: list[BaseException] = []
        for make, fault in [
            (lambda: Client(WRONG, base_url=srv.url + "/v1"), {}),
            (lambda: srv.client(model="nope"), {}),
            (lambda: srv.client(max_retries=0), {"fail_rate": 1.0}),
            (lambda: srv.client(max_retries=0), {"rate_429": 1.0}),
            (lambda: srv.client(max_retries=0, timeout=0.1), {"latency_ms": 600}),
            (lambda: srv.client(max_retries=0), {"drop_rate": 1.0}),
        ]:
            srv.set_faults(
                **{"fail_rate": 0, "rate_429": 0, "latency_ms": 0, "drop_rate": 0, **fault}
            )
            with pytest.raises(APIError) as info:
                make().chat("hi")
            failures.append(info.value)
        srv.set_faults(fail_rate=0, rate_429=0, latency_ms=0, drop_rate=0)
        with pytest.raises(LlamakitError) as bad:
            client.chat([{"role": "robot", "content": "x"}])
        failures.append(bad.value)
        srv.set_credits(0.0)
        with pytest.raises(APIError) as broke:
            client.chat("hi")
        failures.append(broke.value)
        srv.set_credits(1.0)

        async def async_part() -> str:
            async with srv.async_client() as ac:
                return repr(ac) + repr(await ac.chat("hi"))

        outputs.append(asyncio.run(async_part()))

        # The CLI, configured the way a user would: the environment.
        monkeypatch.setenv("SEGMIND_API_KEY", CANARY)
        monkeypatch.setenv("SEGMIND_BASE_URL", srv.url + "/v1")
        assert cli_main(["chat", "hello there", "--max-tokens", "8"]) == 0
        assert cli_main(["credits"]) == 0
        monkeypatch.setenv("SEGMIND_API_KEY", WRONG)
        assert cli_main(["credits"]) == 1

    for exc in failures:
        outputs += texts_of(exc)
    outputs += [repr(a) for a in attempts]
    captured = capsys.readouterr()
    outputs += [captured.out, captured.err, caplog.text]
    outputs += [r.getMessage() for r in caplog.records]
    for path in isolated_home.rglob("*") if isolated_home.exists() else []:
        if path.is_file():
            outputs.append(path.read_bytes().decode("utf-8", "replace"))

    assert any("HTTP Request" in r.getMessage() for r in caplog.records), "httpx logs not captured"
    blob = "\n".join(outputs)
    assert "hello" in blob.lower() and len(failures) == 8  # the net was cast
    assert CANARY not in blob and WRONG not in blob
    assert CANARY[3:] not in blob and WRONG[3:] not in blob


def test_log_filter_scrubs_keys_and_auth_headers(caplog: pytest.LogCaptureFixture) -> None:
    Client(CANARY, base_url="http://127.0.0.1:9/v1")  # registers the key and the filter
    caplog.set_level(logging.DEBUG)
    headers = [(b"x-api-key", CANARY.encode()), (b"authorization", b"Bearer SG_other_secret")]
    logging.getLogger("httpcore.http11").debug("send_request_headers %s", headers)
    logging.getLogger("httpx").debug("key=%s", CANARY)
    text = caplog.text
    assert CANARY not in text and "SG_other_secret" not in text
    assert text.count("***") >= 3


def test_redact_masks_header_forms() -> None:
    assert redact("x-api-key: SG_abc123") == "x-api-key: ***"
    assert redact("{'x-api-key': 'SG_abc123'}") == "{'x-api-key': '***'}"
    assert redact("Authorization: Bearer tok.en") == "Authorization: ***"
    assert redact("nothing here") == "nothing here"


def test_bad_key_value_error_does_not_echo_it() -> None:
    with pytest.raises(llamakit.ValidationError) as info:
        Client(CANARY + "\n")
    assert CANARY not in str(info.value) and info.value.field == "api_key"


def test_repr_masks_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEGMIND_API_KEY", CANARY)
    text = repr(Client())
    assert CANARY not in text and "SG_****" in text and "api.segmind.com" in text


URL_SECRET = "pw_canary_5e1b77d0c4"


def test_credentials_in_base_url_appear_nowhere(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str], isolated_home: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    outputs: list[str] = []
    with llamakit.local_server(backend="scripted", api_key=CANARY, credits=1.0) as srv:
        host = srv.url.split("://", 1)[1]
        base = f"http://alice:{URL_SECRET}@{host}/v1"
        client = Client(CANARY, base_url=base, max_retries=0)
        outputs += [repr(client), client.base_url, client.source]
        assert client.base_url == f"http://***@{host}/v1"
        assert client.chat("hello").text  # requests still carry the credentials
        exp = llamakit.Experiment(
            "creds", prompts={"p": "Say {{ w }}"}, dataset=[{"w": "a"}, {"w": "b"}], repeats=1
        )
        run = exp.run(client, progress=False)
        outputs += [repr(run), run.results.to_string(), llamakit.runs().to_string()]
        srv.set_faults(fail_rate=1.0)
        with pytest.raises(APIError) as failed:
            client.chat("hi")
        outputs += texts_of(failed.value)
    # The server is gone: a connection error names the host, never the credentials.
    with pytest.raises(APIError) as refused:
        Client(CANARY, base_url=base, max_retries=0).credits()
    outputs += texts_of(refused.value)
    with pytest.raises(llamakit.ValidationError) as bad:
        Client(CANARY, base_url=f"ftp://bob:{URL_SECRET}@{host}/v1")
    outputs += texts_of(bad.value)
    captured = capsys.readouterr()
    outputs += [captured.out, captured.err, caplog.text]
    for path in isolated_home.rglob("*"):
        if path.is_file():
            outputs.append(path.read_bytes().decode("utf-8", "replace"))
    blob = "\n".join(outputs)
    assert host in blob and "***@" in blob  # the net was cast
    assert URL_SECRET not in blob and CANARY not in blob


ECHOES = {
    "plain": lambda k: k,
    "upper": str.upper,
    "lower": str.lower,
    "json_escaped": lambda k: "".join(f"\\u{ord(c):04x}" for c in k),
    "percent": lambda k: "".join(f"%{ord(c):02X}" for c in k),
    "html": lambda k: "".join(f"&#{ord(c)};" for c in k),
    "mixed": lambda k: k[:5] + "".join(f"%{ord(c):02x}" for c in k[5:9]) + k[9:].upper(),
    "basic_auth": lambda k: "Basic " + base64.b64encode(f"user:{k}".encode()).decode(),
    "base64_offset": lambda k: base64.b64encode(b"xy" + k.encode()).decode(),
    "hex": lambda k: k.encode().hex(),
    "hex_upper": lambda k: "0x" + k.encode().hex().upper(),
    "newline_split": lambda k: k[:7] + "\n" + k[7:],
    "wrapped": lambda k: " ".join(k[i : i + 3] for i in range(0, len(k), 3)),
    "json_newline": lambda k: k[:5] + "\\n" + k[5:],
}


@pytest.mark.parametrize("form", sorted(ECHOES))
@pytest.mark.parametrize("encoding", ["utf-8", "utf-16", "utf-32-le"])
@pytest.mark.parametrize("status", [401, 500])
def test_an_echoed_key_is_masked_in_any_case_and_encoding(
    form: str, encoding: str, status: int
) -> None:
    import httpx

    echoed = ECHOES[form](CANARY)
    bodies = {
        "json": json.dumps({"error": f"bad key {echoed}"}),
        "text": f"<html><title>denied {echoed}</title></html>",
    }
    for kind, text in bodies.items():
        # The charset is declared for JSON and left out for the HTML, which is then read as UTF-8.
        ctype = f"application/json; charset={encoding}" if kind == "json" else "text/html"

        def handler(request: httpx.Request, text: str = text, ctype: str = ctype) -> httpx.Response:
            return httpx.Response(
                status, content=text.encode(encoding), headers={"content-type": ctype}
            )

        client = Client(
            CANARY,
            base_url="http://api.test/v1",
            transport=httpx.MockTransport(handler),
            max_retries=0,
            check_context=False,
        )
        with pytest.raises(APIError) as info:
            client.chat("hi")
        for text_out in texts_of(info.value):
            flat = text_out.replace("\x00", "").lower()
            assert CANARY.lower() not in flat and CANARY[3:].lower() not in flat, (kind, text_out)
            # The forms that are not the key's characters in a row: hex, and the key with
            # whitespace (or a JSON "\n") between its characters.
            squeezed = "".join(flat.split()).replace("\\n", "")
            assert CANARY[3:].lower() not in squeezed, (kind, text_out)
            assert CANARY.encode().hex()[6:30] not in squeezed, (kind, text_out)
            assert base64.b64encode(CANARY.encode()).decode()[4:12] not in text_out


def test_repr_never_raises_on_a_half_built_client() -> None:
    from llamakit.client.client import AsyncClient
    from llamakit.client.core import Core

    for cls in (Client, AsyncClient):
        bare = cls.__new__(cls)
        assert cls.__name__ in repr(bare)
        bare._core = Core.__new__(Core)  # type: ignore[attr-defined]
        assert cls.__name__ in repr(bare)
        bare._core.api_key = 12345  # type: ignore[attr-defined,assignment]
        assert cls.__name__ in repr(bare)


def test_a_reply_echoing_the_key_is_masked_before_anything_keeps_it() -> None:
    import httpx

    content = f"key {CANARY.upper()} / {URL_SECRET} / authorization: stays as the model said"
    body = {
        "choices": [{"message": {"role": "assistant", "content": content}}],
        "echo": {"headers": {"x-api-key": CANARY}},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("get-user-credits"):
            return httpx.Response(200, json={"credits": 1.0})
        # ensure_ascii: the key travels as \\u escapes, decoded only by the JSON parser
        raw = json.dumps(body, ensure_ascii=True).replace("S", "\\u0053")
        return httpx.Response(200, content=raw.encode("utf-16"))

    client = Client(
        CANARY,
        base_url=f"http://u:{URL_SECRET}@api.test/v1",
        transport=httpx.MockTransport(handler),
        check_context=False,
    )
    reply = client.chat("hi")
    text = reply.text + json.dumps(reply.raw) + repr(reply)
    assert CANARY.lower() not in text.lower() and URL_SECRET not in text
    assert "authorization: stays as the model said" in reply.text  # only real secrets are masked
