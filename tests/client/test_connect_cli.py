"""connect() and the `chat` / `credits` commands."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest

import llamakit
from llamakit import ValidationError
from llamakit.cli import main as cli_main
from llamakit.server import connect as _connect


@pytest.fixture
def fresh_local() -> Iterator[None]:
    """connect()'s process-wide server, stopped after the test."""
    _connect._shutdown()
    yield
    _connect._shutdown()


def test_connect_is_the_function_even_after_submodule_imports() -> None:
    import llamakit.cli.chat  # noqa: F401  (imports llamakit.server.connect)

    assert callable(llamakit.connect) and llamakit.connect is _connect.connect


def test_connect_without_a_key_starts_one_local_server(
    fresh_local: None, capsys: pytest.CaptureFixture[str]
) -> None:
    client = llamakit.connect(backend="scripted")
    again = llamakit.connect()
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 2 and "local scripted server" in out[0] and "SEGMIND_API_KEY" in out[0]
    assert client.is_local and client.base_url == again.base_url  # one server per process
    assert client.chat("hi", max_tokens=4).text
    with pytest.raises(ValueError, match="already runs"):
        llamakit.connect(backend="smollm2")


def test_connect_inside_a_running_event_loop(fresh_local: None) -> None:
    async def notebook_cell() -> str:
        client = llamakit.connect(backend="scripted", quiet=True)
        return client.chat("hello from a cell", max_tokens=4).text

    assert asyncio.run(notebook_cell())


def test_connect_with_a_key_uses_it(
    server: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SEGMIND_API_KEY", server.api_key)
    monkeypatch.setenv("SEGMIND_BASE_URL", server.url + "/v1")
    client = llamakit.connect()
    assert client.base_url == server.url + "/v1" and client.credits() == pytest.approx(10.0)
    assert "using a local server at" in capsys.readouterr().out
    monkeypatch.delenv("SEGMIND_API_KEY")
    with pytest.raises(ValidationError, match="no API key"):
        llamakit.connect()  # a base URL without a key would only ever get 401s


def test_cli_chat_and_credits(
    server: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SEGMIND_API_KEY", server.api_key)
    monkeypatch.setenv("SEGMIND_BASE_URL", server.url + "/v1")
    args = [
        "chat",
        "What is 2+2?",
        "--system",
        "Be brief.",
        "--max-tokens",
        "8",
        "--temperature",
        "0",
    ]
    assert cli_main(args) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1] == f"credits left: {10.0 - 0.00063:.6f}" and len(lines) >= 3
    assert cli_main(["credits"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == f"{10.0 - 0.00063:.6f}"


def test_cli_reports_errors_without_a_traceback(
    server: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("SEGMIND_API_KEY", server.api_key)
    monkeypatch.setenv("SEGMIND_BASE_URL", server.url + "/v1")
    server.set_credits(0.0)
    assert cli_main(["chat", "hi"]) == 1
    assert "InsufficientCreditsError" in capsys.readouterr().err
    # Out of the API's range: refused while parsing (status 2), by the client's own rule.
    assert cli_main(["chat", "hi", "--temperature", "9"]) == 2
    assert "--temperature: temperature=9.0 is out of range" in capsys.readouterr().err


def test_connect_reads_the_backend_from_the_environment_and_passes_rules(
    fresh_local: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    rules = tmp_path / "rules.yaml"
    rules.write_text('rules:\n  - pattern: "ping"\n    reply: "pong from the rules file"\n')
    monkeypatch.setenv("LLAMAKIT_BACKEND", "scripted")
    client = llamakit.connect(rules=rules, quiet=True)
    assert client.chat("ping?", max_tokens=16).text == "pong from the rules file"
