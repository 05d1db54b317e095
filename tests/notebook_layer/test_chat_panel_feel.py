"""The chat panel behaves like a chat: the sent message shows at once with a waiting line, replies
are Markdown with escaped HTML, Undo resets the status line, a 406 says once where to top up, and
the transcript keeps the newest turn in view (the browser test checks the scroll position)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

import llamakit as lk
from llamakit.widgets import ChatPanel, chat
from llamakit.widgets._render import out_of_credits_line

CODE_REPLY = "Here:\n\n```python\nprint('<script>alert(1)</script>')  # " + "x" * 300 + "\n```\n"


@pytest.fixture
def slow_server() -> Any:
    rules = [{"pattern": "code please", "reply": CODE_REPLY}]
    with lk.local_server(backend="scripted", credits=1.0, latency_ms=600, rules=rules) as srv:
        yield srv


def _classes(panel: ChatPanel) -> list[str]:
    return [
        next(c for c in w._dom_classes if c.startswith("llamakit-chat-"))
        for w in panel.transcript_box.children
    ]


def test_the_sent_message_shows_at_once_with_a_waiting_line(slow_server) -> None:
    panel = ChatPanel(slow_server.client(), store=lk.Store())
    seen: list[list[str]] = []
    sender = threading.Thread(target=panel.send, args=("first question",))
    sender.start()
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        if panel.busy and panel.transcript_box.children:
            seen.append(_classes(panel))
            texts = [w.value for w in panel.transcript_box.children]
        time.sleep(0.01)
    sender.join(timeout=30)
    # While the model works: the question, then the waiting line (the reply takes 0.6 s).
    assert seen == [["llamakit-chat-user", "llamakit-chat-waiting"]]
    assert texts[0] == "first question" and "waiting for the model" in texts[1]
    # Once answered: question and reply, no waiting line, and nothing pending.
    assert _classes(panel) == ["llamakit-chat-user", "llamakit-chat-assistant"]
    assert panel.pending is None and not panel.busy


def test_a_code_reply_is_a_code_block_with_its_html_escaped(slow_server) -> None:
    panel = ChatPanel(slow_server.client(), store=lk.Store())
    panel.send("code please")
    html = panel.transcript_box.children[-1].value
    assert "<pre><code" in html and "&lt;script&gt;" in html and "<script>" not in html
    # The CSS keeps long lines inside their bubble: code scrolls, words break.
    assert "pre { overflow-x: auto" in chat._CSS and "overflow-wrap: anywhere" in chat._CSS
    assert "overflow-x: hidden" in chat._CSS


def test_the_transcript_sits_in_a_box_that_keeps_the_newest_turn_in_view(server) -> None:
    panel = ChatPanel(server.client(), store=lk.Store())
    assert panel.scroll_box.children == (panel.transcript_box,)
    assert "llamakit-chat-scroll" in panel.scroll_box._dom_classes
    assert panel.scroll_box in panel.children
    # A reversed flex column starts scrolled to its end, and stays there as turns are added.
    assert "flex-direction: column-reverse" in chat._CSS
    for i in range(5):
        panel.send(f"What is {i} + 1?")
    assert _classes(panel)[-2:] == ["llamakit-chat-user", "llamakit-chat-assistant"]
    assert "What is 4 + 1?" in panel.transcript_box.children[-2].value  # newest last, in order


@pytest.fixture
def server(scripted_server: Any) -> Any:
    return scripted_server


def test_undo_resets_the_status_line_to_the_reply_now_last(server) -> None:
    panel = ChatPanel(server.client(), store=lk.Store())
    first = panel.send("What is 1 + 1?")
    first_cost = panel.last_cost
    panel.send("What is 2 + 2?")
    panel.undo()
    assert panel.last_response is first
    assert panel.last_cost == first_cost and panel.last_latency_s == first.latency_s
    assert f"{first.latency_s:.2f} s" in panel.latency_label.value
    panel.undo()
    assert panel.last_cost is None and panel.last_latency_s is None and panel.last_response is None
    assert "\u2013" in panel.cost_label.value and "\u2013" in panel.latency_label.value


def test_a_406_says_once_that_credits_ran_out_and_where_to_top_up() -> None:
    with lk.local_server(backend="scripted", credits=1.0) as srv:
        panel = ChatPanel(srv.client(max_retries=0), store=lk.Store())
        srv.set_credits(0.0)
        assert panel.send("hello") is None
        error = panel.error
        root = srv.url
    assert error.lower().count("out of credits") == 1
    assert f"{root}/_llamakit/credits" in error and "set_credits" in error
    assert "segmind.com" not in error  # not the hosted billing page for the local stand-in
    assert len(error.splitlines()) == 1 and srv.api_key not in error
    hosted = SimpleNamespace(is_local=False, base_url="https://api.segmind.com/v1")
    line = out_of_credits_line(hosted, 0.0)
    assert "cloud.segmind.com/console/billing" in line and "_llamakit" not in line
    assert line.lower().count("out of credits") == 1
