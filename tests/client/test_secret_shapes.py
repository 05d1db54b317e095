"""Secrets in the shapes people paste them: a token in base_url's query string or fragment, a key
with smart quotes or a lookalike letter, a key echoed as hex or wrapped over lines. Each is refused
before anything is sent, or masked, and never quoted back."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from raw_servers import plain, raw_server, url_of

import llamakit
from llamakit import Client, ValidationError
from llamakit.cli import main as cli_main
from llamakit.client.origin import display_url
from llamakit.client.secrets import install_log_filter, redact, register_secret

SECRET = "tok_canary_93be0f17aa"
KEY = "SG_shapes_canary_4d1c"


@pytest.mark.parametrize(
    "tail", [f"?token={SECRET}", f"#{SECRET}", f"?a=1#{SECRET}", "?", f"/?k={SECRET}"]
)
def test_a_base_url_with_a_query_or_fragment_is_refused_before_anything_is_sent(
    tail: str, isolated_home: Path
) -> None:
    with raw_server(plain(200, b'{"credits": 1}')) as srv:
        with pytest.raises(ValidationError) as info:
            Client(KEY, base_url=url_of(srv) + "/v1" + tail)
        assert srv.seen == []
    err = info.value
    assert err.field == "base_url" and "query string or fragment" in str(err)
    assert "api_key=" in str(err)  # names the fix
    assert SECRET not in str(err) and SECRET not in repr(err)


def test_the_base_url_from_the_environment_is_checked_the_same_way(
    monkeypatch: pytest.MonkeyPatch, isolated_home: Path
) -> None:
    monkeypatch.setenv("SEGMIND_BASE_URL", f"http://127.0.0.1:9/v1?token={SECRET}")
    with pytest.raises(ValidationError) as info:
        Client(KEY)
    assert info.value.field == "base_url" and SECRET not in str(info.value)


def test_the_cli_refuses_such_a_base_url_without_printing_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], isolated_home: Path
) -> None:
    monkeypatch.setenv("SEGMIND_API_KEY", KEY)
    monkeypatch.setenv("SEGMIND_BASE_URL", f"http://127.0.0.1:9/v1?token={SECRET}")
    code = cli_main(["credits"])
    out = capsys.readouterr()
    assert code != 0 and "query string" in out.err
    assert SECRET not in out.out + out.err and "Traceback" not in out.err


def test_an_invalid_base_url_is_not_quoted_with_its_query() -> None:
    with pytest.raises(ValidationError) as info:
        Client(KEY, base_url=f"ftp://h/v1?token={SECRET}")
    assert SECRET not in str(info.value)


def test_display_url_hides_query_and_fragment() -> None:
    assert display_url(f"http://u:{SECRET}@h:1/v1?t={SECRET}#{SECRET}") == (
        "http://***@h:1/v1?***#***"
    )
    assert display_url("http://h/v1") == "http://h/v1"


def test_a_plain_base_url_still_works(server: object) -> None:
    client = server.client()  # type: ignore[attr-defined]
    assert client.chat("hi").text


@pytest.mark.parametrize(
    "key",
    [
        "SG_caf\u00e9_key_1234",
        "\u201cSG_quoted_key_1234\u201d",
        "SG_\u0430bc_cyrillic_a12",
        "SG_\x7fdel",
    ],
    ids=["accent", "smart-quotes", "lookalike", "DEL"],
)
def test_a_non_ascii_key_is_refused_at_construction_without_echoing_it(key: str) -> None:
    with pytest.raises(ValidationError) as info:
        Client(key, base_url="http://127.0.0.1:9/v1")
    text = str(info.value)
    assert info.value.field == "api_key" and "ASCII" in text and "copy" in text
    assert key not in text and key.strip("\u201c\u201d") not in text


@pytest.mark.parametrize("command", [["credits"], ["chat", "hi"]])
def test_the_cli_reports_a_non_ascii_key_cleanly(
    command: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    isolated_home: Path,
) -> None:
    key = "\u201cSG_quoted_key_1234\u201d"
    monkeypatch.setenv("SEGMIND_API_KEY", key)
    monkeypatch.setenv("SEGMIND_BASE_URL", "http://127.0.0.1:9/v1")
    code = cli_main(command)
    out = capsys.readouterr()
    assert code != 0 and "ASCII" in out.err
    assert "Traceback" not in out.err and "UnicodeEncodeError" not in out.err
    assert "SG_quoted_key_1234" not in out.out + out.err


# ---- redaction of the forms an echo takes ----------------------------------------------------

LONG = "SG_redact_shape_51f0c9"


def test_hex_and_whitespace_split_echoes_are_masked(caplog: pytest.LogCaptureFixture) -> None:
    register_secret(LONG)
    raw = LONG.encode()
    for echoed in [
        raw.hex(),
        raw.hex().upper(),
        LONG[:6] + "\n" + LONG[6:],
        LONG[:6] + "\r\n  " + LONG[6:],
        " ".join(LONG),
        LONG[:4] + "\\n" + LONG[4:],
    ]:
        assert redact(f"echo: {echoed}!") == "echo: ***!", echoed
    install_log_filter()
    caplog.set_level(logging.DEBUG)
    for name in ("llamakit", "httpcore.http11"):
        logging.getLogger(name).debug("server said %s", raw.hex().upper())
    assert raw.hex().upper() not in caplog.text and "***" in caplog.text


def test_ordinary_text_is_not_masked() -> None:
    register_secret(LONG)
    register_secret("abcd1")  # a short password: no gaps tolerated for it
    for text in [
        "a b c d 1 is a list",
        "SG_redact shapes are fine",
        "the hex 53475f72656461 is a prefix only",
        "abcd 1",
    ]:
        assert redact(text) == text


def test_a_short_secret_is_still_masked_whole() -> None:
    register_secret("pw9z!")
    assert redact("x pw9z! y") == "x *** y"


def test_a_hex_echo_from_a_server_is_masked_in_the_error() -> None:
    key = "SG_hexecho_canary_7a2b"
    body = b'{"error": "unknown key ' + key.encode().hex().encode() + b'"}'
    with (
        raw_server(plain(401, body)) as srv,
        pytest.raises(llamakit.AuthenticationError) as info,
    ):
        Client(key, base_url=url_of(srv) + "/v1", check_context=False).chat("hi")
    assert key.encode().hex() not in str(info.value) and "***" in str(info.value)


ECHOES = [
    SECRET,
    SECRET.upper(),
    "".join(f"\\u{ord(c):04x}" for c in SECRET),  # a JSON escape of every character
    SECRET[:5] + "\\n" + SECRET[5:],  # wrapped: a JSON newline escape inside
    SECRET.replace("_", "\\u005f"),
    "%" + "%".join(f"{ord(c):02x}" for c in SECRET),
    SECRET.encode().hex(),
]


@settings(max_examples=300, deadline=None)
@example(parts=["\\", SECRET], as_key=False)  # "\t" + "ok_...": a tab, no secret
@given(
    parts=st.lists(
        st.one_of(st.sampled_from(ECHOES), st.text(max_size=12)), min_size=1, max_size=6
    ),
    as_key=st.booleans(),
)
def test_a_reply_is_masked_the_same_whether_or_not_it_has_escapes(
    parts: list[str], as_key: bool
) -> None:
    """The reply parser skips the per-string walk when the JSON text has no escape and no secret
    matches it whole; the walk must then have nothing to mask. Checked against the walk itself
    for documents holding echoes of a secret in every form, in keys and values, or none."""
    import json

    import httpx

    from llamakit.client.parse import _json_body
    from llamakit.client.secrets import mask_known_in

    register_secret(SECRET)
    joined = "".join(parts)
    # A document as a server writes it: escapes as they are (json.dumps would escape the
    # backslashes of the echoes; here they are the server's own escapes).
    inner = json.dumps(joined)[1:-1].replace("\\\\", "\\")
    try:
        json.loads(f'"{inner}"')
    except ValueError:
        return  # not a JSON string once the server's escapes are kept
    body = f'{{"{inner}": 1}}' if as_key else f'{{"choices": [{{"text": "{inner}"}}]}}'
    resp = httpx.Response(200, content=body.encode())
    parsed = _json_body(resp)
    assert parsed == mask_known_in(json.loads(body))
    # The decoded strings, not their JSON: a tab before "ok_..." is written "\tok_...".
    assert not any(SECRET in text for text in _strings(parsed))


def _strings(value: Any) -> Any:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)
