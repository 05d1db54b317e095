"""ChatPanel driven from code against the scripted local server, asserting on what it shows."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

import llamakit as lk
from llamakit.widgets import ChatPanel

COST = Decimal("0.00063")  # the local server's flat price per successful call


@pytest.fixture
def server(scripted_server: Any) -> Any:
    return scripted_server


@pytest.fixture
def own_server() -> Iterator[Any]:
    """A server of the test's own, for tests that change its credits."""
    with lk.local_server(backend="scripted", credits=1.0) as srv:
        yield srv


@pytest.fixture
def store() -> Any:
    return lk.Store()


def _shown_text(panel: ChatPanel) -> str:
    """Everything the panel renders as HTML, to check what a user would read."""
    parts = [w.value for w in panel.transcript_box.children]
    parts += [panel.credits_label.value, panel.cost_label.value, panel.error_label.value]
    return "\n".join(parts)


def test_send_shows_the_reply_with_its_cost_and_latency(server, store) -> None:
    panel = ChatPanel(server.client(), store=store)
    before = server.balance()
    assert panel.credits_left == pytest.approx(before)
    response = panel.send("What is a bootstrap interval?")
    assert response is not None and response.text
    assert [t["role"] for t in panel.transcript] == ["user", "assistant"]
    assert panel.transcript[1]["content"] == response.text
    assert panel.transcript[1]["cost"] == pytest.approx(COST)
    assert panel.transcript[1]["latency_s"] == response.latency_s
    assert panel.credits_left == pytest.approx(before - COST)
    assert panel.last_cost == pytest.approx(COST)
    assert panel.error is None and not panel.busy
    roles = [w._dom_classes for w in panel.transcript_box.children]
    assert roles == [("llamakit-chat-user",), ("llamakit-chat-assistant",)]
    assert f"{before - COST:.5f}" in panel.credits_label.value


def test_every_turn_is_saved_to_the_store(server, store) -> None:
    panel = ChatPanel(server.client(), system="Answer in one line.", store=store)
    panel.send("first")
    panel.send("second")
    turns = store.chat_turns(panel.conversation.id)
    assert [t["idx"] for t in turns] == [0, 1]
    assert turns[1]["response"] == panel.transcript[-1]["content"]
    assert '"Answer in one line."' in turns[0]["messages"]


def test_params_from_the_controls_are_sent(server, store) -> None:
    panel = ChatPanel(server.client(), store=store)
    panel.temperature.value = 0.0
    panel.max_tokens.value = 7
    assert panel.params == {"temperature": 0.0, "max_tokens": 7}
    panel.send("hello")
    assert panel.conversation.responses[-1].usage.completion_tokens <= 7


def test_undo_takes_back_the_last_exchange(server, store) -> None:
    panel = ChatPanel(server.client(), store=store)
    panel.send("one")
    first = panel.transcript
    panel.send("two")
    assert len(panel.transcript) == 4
    panel.undo()
    assert panel.transcript == first
    assert len(panel.transcript_box.children) == 2
    panel.undo()
    panel.undo()  # nothing left: a no-op, not an IndexError
    assert panel.transcript == []


def test_new_starts_over_with_the_system_prompt_in_the_field(server, store) -> None:
    panel = ChatPanel(server.client(), system="old", store=store)
    panel.send("hi")
    old_id = panel.conversation.id
    panel.system.value = "You are terse."
    panel.new()
    assert panel.conversation.id != old_id
    assert panel.transcript == []
    assert panel.conversation.messages == [{"role": "system", "content": "You are terse."}]


def test_system_prompt_edited_before_the_first_turn_is_used(server, store) -> None:
    panel = ChatPanel(server.client(), store=store)
    panel.system.value = "Be brief."
    panel.send("hi")
    assert panel.conversation.messages[0] == {"role": "system", "content": "Be brief."}


def test_enter_in_the_input_box_sends(server, store) -> None:
    panel = ChatPanel(server.client(), store=store)
    panel.input.value = "typed and Enter"
    # What JupyterLab sends when Enter is pressed in a Text widget.
    panel.input._handle_custom_msg({"event": "submit"}, [])
    assert panel.transcript[0]["content"] == "typed and Enter"
    assert panel.input.value == ""


def test_send_button_sends_what_is_typed(server, store) -> None:
    panel = ChatPanel(server.client(), store=store)
    panel.input.value = "clicked"
    panel.send_button.click()
    assert panel.transcript[0]["content"] == "clicked"
    panel.send("   ")  # blank input is ignored
    assert len(panel.transcript) == 2


def test_busy_while_a_reply_is_pending(server, store) -> None:
    seen: list[tuple[bool, bool, str, Any]] = []
    holder: dict[str, ChatPanel] = {}

    def during_call(_attempt: Any) -> None:
        p = holder["panel"]
        # A second Enter while the first reply is pending must not send twice.
        seen.append(
            (p.busy, p.send_button.disabled, p.busy_label.layout.visibility, p.send("again"))
        )

    panel = ChatPanel(server.client(on_attempt=during_call), store=store)
    holder["panel"] = panel
    panel.send("hello")
    assert seen == [(True, True, "visible", None)]
    assert not panel.busy and not panel.send_button.disabled
    assert panel.busy_label.layout.visibility == "hidden"
    assert len(panel.transcript) == 2


def test_401_is_a_readable_line_and_the_key_never_shows(server, store) -> None:
    bad = lk.Client(api_key="SG_wrong_key_123", base_url=server.url + "/v1", max_retries=0)
    panel = ChatPanel(bad, store=store)
    assert panel.send("hi") is None
    assert panel.error.startswith("AuthenticationError (401)")
    assert "Traceback" not in panel.error_label.value
    assert "AuthenticationError" in panel.error_label.value
    assert panel.transcript == []
    assert panel.input.value == "hi"  # given back for a retry
    assert "SG_wrong_key_123" not in _shown_text(panel)
    assert store.chat_turns(panel.conversation.id)[0]["error"] == "AuthenticationError"


def test_406_shows_the_error_and_the_conversation_stays_usable(own_server, store) -> None:
    server = own_server
    panel = ChatPanel(server.client(max_retries=0), store=store)
    panel.send("paid turn")
    server.set_credits(0.0)
    assert panel.send("unpaid turn") is None
    assert panel.error.startswith("InsufficientCreditsError (406)")
    assert panel.credits_left == 0.0
    assert [t["content"] for t in panel.transcript if t["role"] == "user"] == ["paid turn"]
    server.set_credits(1.0)
    assert panel.send(panel.input.value) is not None
    assert panel.error is None and panel.error_label.value == ""
    assert [t["content"] for t in panel.transcript if t["role"] == "user"] == [
        "paid turn",
        "unpaid turn",
    ]
    assert server.api_key not in _shown_text(panel)


def test_client_none_connects_from_the_environment(server, store, monkeypatch) -> None:
    monkeypatch.setenv("SEGMIND_API_KEY", server.api_key)
    monkeypatch.setenv("SEGMIND_BASE_URL", server.url + "/v1")
    panel = ChatPanel(store=store)
    assert panel.send("hi") is not None
    assert panel.client.base_url.startswith(server.url)


def test_css_classes_a_browser_test_can_find(server, store) -> None:
    panel = ChatPanel(server.client(), store=store)
    classes = {
        "llamakit-chat-input": panel.input,
        "llamakit-chat-send": panel.send_button,
        "llamakit-chat-transcript": panel.transcript_box,
        "llamakit-credits": panel.credits_label,
        "llamakit-undo": panel.undo_button,
        "llamakit-new": panel.new_button,
        "llamakit-chat-system": panel.system,
        "llamakit-chat-error": panel.error_label,
        "llamakit-busy": panel.busy_label,
    }
    for css, widget in classes.items():
        assert css in widget._dom_classes, css
    assert "llamakit-chat" in panel._dom_classes


def test_reply_cost_excludes_calls_made_elsewhere_with_the_client(server, store) -> None:
    client = server.client()
    panel = ChatPanel(client, store=store)
    panel.send("one")
    lk.Conversation(client).send("a call outside the panel")
    panel.send("two")
    assert panel.last_cost == pytest.approx(COST)
    assert panel.credits_left == pytest.approx(client.credits())


def test_cost_is_unknown_across_a_top_up(own_server, store) -> None:
    panel = ChatPanel(own_server.client(max_retries=0), store=store)
    own_server.set_credits(0.0)
    panel.send("refused")
    own_server.set_credits(5.0)
    panel.send("paid")
    assert panel.last_cost is None
    assert panel.credits_left == 5 - COST
    assert "\u2013 credits" in panel.cost_label.value


def test_timeout_is_a_readable_line(server, store) -> None:
    slow = lk.local_server(backend="scripted", credits=1.0, latency_ms=800)
    with slow:
        panel = ChatPanel(slow.client(timeout=0.2, max_retries=0), store=store)
        assert panel.send("hello?") is None
    assert panel.error.startswith("APITimeoutError")
    assert panel.transcript == [] and not panel.busy
