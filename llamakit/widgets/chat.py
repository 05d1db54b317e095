"""ChatPanel: chat with the model from a notebook, every turn saved to the store."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING, Any

import ipywidgets as widgets

from ..client.credits import to_credits
from ..errors import InsufficientCreditsError, LlamakitError
from . import _render

if TYPE_CHECKING:  # pragma: no cover - typing only
    from ..client.client import Client
    from ..client.conversation import Conversation
    from ..client.types import ChatResponse
    from ..store import Store

__all__ = ["ChatPanel"]

# Plain CSS on ipywidgets, no JavaScript of our own (README, "Why the chat panel is plain
# ipywidgets"). The scroll box is a flex column in reverse holding one column of turns: a reversed
# scroll container starts at its end and stays there as content grows, so the newest turn is in view
# without a line of JS. Every bubble may shrink below its content's width (min-width: 0), long words
# break, and code blocks scroll sideways inside their own bubble, never the whole transcript.
_CSS = """
<style>
.llamakit-chat-scroll { display: flex; flex-direction: column-reverse !important;
  max-height: 420px; overflow-y: auto !important; overflow-x: hidden !important;
  border: 1px solid #ddd; border-radius: 4px; padding: 4px 8px; }
.llamakit-chat-transcript { flex: 0 0 auto; min-width: 0; width: 100%; overflow: visible; }
.llamakit-chat-user, .llamakit-chat-assistant, .llamakit-chat-waiting { min-width: 0;
  max-width: 100%; box-sizing: border-box; margin: 4px 0; padding: 2px 8px; }
.llamakit-chat-user { background: #eef4ff; border-radius: 6px; align-self: flex-end; }
.llamakit-chat-waiting { color: #777; font-style: italic; }
.llamakit-chat-transcript .widget-html-content { white-space: normal; overflow-wrap: anywhere;
  word-break: break-word; min-width: 0; max-width: 100%; }
.llamakit-chat-transcript pre { overflow-x: auto; max-width: 100%; white-space: pre;
  background: #f6f8fa; border-radius: 4px; padding: 6px 8px; margin: 4px 0; }
.llamakit-chat-transcript code { background: #f6f8fa; border-radius: 3px; padding: 0 2px;
  overflow-wrap: anywhere; }
.llamakit-chat-transcript pre code { padding: 0; overflow-wrap: normal; }
.llamakit-chat-transcript table { border-collapse: collapse; display: block; overflow-x: auto; }
.llamakit-chat-transcript td, .llamakit-chat-transcript th { border: 1px solid #ddd;
  padding: 1px 6px; }
.llamakit-chat-error { color: #b00020; }
.llamakit-chat-meta { color: #777; font-size: 0.85em; }
</style>
"""


class ChatPanel(widgets.VBox):
    """A chat transcript with an input box, sampling controls and a credit status line.

    Drive it from code as from the keyboard: ``panel.send("hi")`` returns the
    :class:`~llamakit.ChatResponse` (or ``None`` after an error, which ``panel.error`` then holds
    as one readable line), ``panel.undo()``, ``panel.new()``. ``panel.transcript`` lists the
    shown turns as dicts (role, content, and for replies cost and latency); ``panel.conversation``
    is the underlying :class:`~llamakit.Conversation`, which saves every turn to ``store``.

    ``client=None`` calls :func:`llamakit.connect` (the hosted API with ``SEGMIND_API_KEY``, else a
    local stand-in); ``store=None`` uses the default store.
    """

    def __init__(
        self,
        client: Client | None = None,
        system: str | None = None,
        store: Store | None = None,
        *,
        temperature: float = 0.7,
        max_tokens: int = 512,
    ) -> None:
        if client is None:
            from .. import connect

            client = connect()
        if store is None:
            from ..store import Store

            store = Store()
        self.client = client
        self.store = store
        self.busy = False
        self.error: str | None = None
        self.credits_left: Decimal | None = None
        self.last_cost: Decimal | None = None
        self.last_latency_s: float | None = None
        self.last_response: ChatResponse | None = None
        # The user's text while its reply is awaited: shown at once, with a waiting line under it.
        self.pending: str | None = None
        # Cost and latency of each reply, keyed by its index in conversation.messages.
        self._reply_meta: dict[int, dict[str, Any]] = {}
        self._build(system or "", temperature, max_tokens)
        super().__init__(children=self._layout())
        self.add_class("llamakit-chat")
        self.conversation = self._new_conversation()
        self._refresh_credits()
        self._render()

    # --- actions ---------------------------------------------------------------------------------

    def send(self, text: str | None = None) -> ChatResponse | None:
        """Send ``text`` (default: what is in the input box) and show the reply.

        An API error (401, 406, a timeout ...) is shown in the status line and returned as
        ``None``; the conversation stays as it was before the call, so the user can retry.
        """
        text = self.input.value if text is None else text
        if not text.strip() or self.busy:
            return None
        if self._turns_count() == 0 and self._system_value() != self._conversation_system:
            # The system prompt was edited before the first turn: start from it.
            self.conversation = self._new_conversation()
        # The client's last seen balance also counts calls made through it outside the panel
        # (a Conversation in another cell), so the difference below is this reply's cost.
        before = getattr(self.client, "credits_last", None)
        before = self.credits_left if before is None else to_credits(before)
        self._set_busy(True)
        self.input.value = ""
        self.pending = text
        self.error = None
        self._render()  # widget state goes to the browser now, while the kernel waits below
        try:
            response = self.conversation.send(text, **self.params)
        except LlamakitError as exc:
            self.error = _render.error_line(exc)
            self.input.value = text  # give the text back so a retry is one keypress
            if isinstance(exc, InsufficientCreditsError):
                # The error carries the last balance the client saw; the endpoint has the truth.
                self._refresh_credits(keep_error=True)
                self.error = _render.out_of_credits_line(self.client, self.credits_left)
            return None
        finally:
            self.pending = None
            self._set_busy(False)
            self._render()
        self.error = None
        self.last_response = response
        self.last_latency_s = response.latency_s
        if response.credits_remaining is not None:
            self.credits_left = response.credits_remaining
            # Exact (Decimal balances). A negative one means a top-up came in between: the cost
            # is then unknown.
            spent = None if before is None else before - response.credits_remaining
            self.last_cost = None if spent is None or spent < 0 else spent
        else:
            self.last_cost = None
        self._reply_meta[len(self._messages()) - 1] = {
            "cost": self.last_cost,
            "latency_s": response.latency_s,
        }
        self._render()
        return response

    def undo(self) -> None:
        """Take back the last exchange (the user's turn and the reply)."""
        if self.busy or self._turns_count() == 0:
            return
        self.conversation.undo()
        n = len(self._messages())
        self._reply_meta = {i: m for i, m in self._reply_meta.items() if i < n}
        self.error = None
        # The status line describes the reply now last in the transcript (none: dashes).
        last = self._reply_meta.get(max(self._reply_meta, default=-1), {})
        self.last_cost = last.get("cost")
        self.last_latency_s = last.get("latency_s")
        responses = self.conversation.responses
        self.last_response = responses[-1] if responses else None
        self._render()

    def new(self) -> None:
        """Start a new conversation with the system prompt currently in the field."""
        if self.busy:
            return
        self.conversation = self._new_conversation()
        self._reply_meta = {}
        self.error = None
        self.last_cost = None
        self.last_latency_s = None
        self._render()

    @property
    def params(self) -> dict[str, Any]:
        """Sampling parameters the next turn will be sent with."""
        return {
            "temperature": float(self.temperature.value),
            "max_tokens": int(self.max_tokens.value),
        }

    @property
    def transcript(self) -> list[dict[str, Any]]:
        """The turns shown, oldest first: ``{"role", "content"}`` plus ``cost``/``latency_s``."""
        out = []
        for i, m in enumerate(self._messages()):
            role, content = _role(m), _content(m)
            if role == "system":
                continue
            turn: dict[str, Any] = {"role": role, "content": content}
            if role == "assistant":
                turn.update(self._reply_meta.get(i, {"cost": None, "latency_s": None}))
            out.append(turn)
        return out

    def __repr__(self) -> str:
        # A short, stable text form: it is what a notebook stores next to the widget view.
        if not hasattr(self, "conversation"):  # failed half-way through __init__
            return "ChatPanel(<not ready>)"
        return (
            f"ChatPanel(turns={self._turns_count() // 2}, "
            f"credits_left={_render.credits(self.credits_left)}, error={self.error!r})"
        )

    # --- building --------------------------------------------------------------------------------

    def _build(self, system: str, temperature: float, max_tokens: int) -> None:
        self.transcript_box = _render.classed(widgets.VBox(), "llamakit-chat-transcript")
        self.scroll_box = _render.classed(
            widgets.Box([self.transcript_box]), "llamakit-chat-scroll"
        )
        self.input = _render.classed(
            widgets.Text(placeholder="Message the model; Enter sends", continuous_update=True),
            "llamakit-chat-input",
        )
        self.input.layout.flex = "1 1 auto"
        # Enter in a Text box sends a "submit" message to the kernel. Listening for it directly
        # (instead of the deprecated on_submit, or observing value with continuous_update=False,
        # which also fires when the box merely loses focus) sends on Enter and on Enter only.
        self.input.on_msg(self._on_input_msg)
        self.send_button = _render.classed(
            widgets.Button(description="Send", button_style="primary", icon="paper-plane"),
            "llamakit-chat-send",
        )
        self.send_button.on_click(lambda _b: self.send())
        self.new_button = _render.classed(
            widgets.Button(description="New", icon="file"), "llamakit-new", "llamakit-chat-new"
        )
        self.new_button.on_click(lambda _b: self.new())
        self.undo_button = _render.classed(
            widgets.Button(description="Undo", icon="undo"), "llamakit-undo", "llamakit-chat-undo"
        )
        self.undo_button.on_click(lambda _b: self.undo())
        self.system = _render.classed(
            widgets.Textarea(
                value=system,
                placeholder="System prompt (applies from the next New, or the first turn)",
                description="System",
                rows=2,
                layout=widgets.Layout(width="100%"),
            ),
            "llamakit-chat-system",
        )
        self.temperature = _render.classed(
            widgets.FloatSlider(
                value=temperature,
                min=0.0,
                max=2.0,
                step=0.05,
                description="Temperature",
                style={"description_width": "initial"},
            ),
            "llamakit-chat-temperature",
        )
        self.max_tokens = _render.classed(
            widgets.BoundedIntText(value=max_tokens, min=1, max=8192, description="Max tokens"),
            "llamakit-chat-max-tokens",
        )
        self.credits_label = _render.classed(widgets.HTML(), "llamakit-credits")
        self.cost_label = _render.classed(widgets.HTML(), "llamakit-chat-cost")
        self.latency_label = _render.classed(widgets.HTML(), "llamakit-chat-latency")
        self.busy_label = _render.classed(
            widgets.HTML("\u23f3 waiting for the model\u2026"), "llamakit-busy"
        )
        self.busy_label.layout.visibility = "hidden"
        self.error_label = _render.classed(widgets.HTML(), "llamakit-chat-error")
        where = _render.classed(widgets.HTML(), "llamakit-chat-endpoint")
        local = " (local stand-in)" if getattr(self.client, "is_local", False) else ""
        where.value = _render.text_html(f"{getattr(self.client, 'model', '')}{local}")
        self.endpoint_label = where

    def _layout(self) -> list[widgets.Widget]:
        row = widgets.HBox
        status = _render.classed(
            row([self.credits_label, self.cost_label, self.latency_label, self.busy_label]),
            "llamakit-chat-status",
        )
        status.layout.justify_content = "flex-start"
        status.layout.grid_gap = "1.5em"
        controls = row([self.temperature, self.max_tokens, self.endpoint_label])
        controls.layout.flex_flow = "row wrap"  # a narrow panel wraps its controls, never overflows
        return [
            widgets.HTML(_CSS),
            self.system,
            controls,
            self.scroll_box,
            row([self.input, self.send_button, self.undo_button, self.new_button]),
            status,
            self.error_label,
        ]

    def _new_conversation(self) -> Conversation:
        from ..client.conversation import Conversation

        self._conversation_system = self._system_value()
        return Conversation(self.client, system=self._conversation_system or None, store=self.store)

    # --- state -> view ---------------------------------------------------------------------------

    def _on_input_msg(self, _widget: Any, content: dict[str, Any], _buffers: Any) -> None:
        if content.get("event") == "submit":
            self.send()

    def _set_busy(self, busy: bool) -> None:
        self.busy = busy
        for w in (self.send_button, self.undo_button, self.new_button, self.input):
            w.disabled = busy
        self.busy_label.layout.visibility = "visible" if busy else "hidden"

    def _refresh_credits(self, *, keep_error: bool = False) -> None:
        try:
            self.credits_left = to_credits(self.client.credits())
        except LlamakitError as exc:
            if not keep_error:
                self.error = _render.error_line(exc)

    def _render(self) -> None:
        rows = []
        for turn in self.transcript:
            if turn["role"] == "assistant":
                meta = (
                    f"<div class='llamakit-chat-meta'>{_render.credits(turn.get('cost'))} credits"
                    f" \u00b7 {_render.seconds(turn.get('latency_s'))}</div>"
                )
                body = _render.markdown_html(turn["content"]) + meta
            else:
                body = _render.text_html(turn["content"])
            rows.append(_render.classed(widgets.HTML(body), f"llamakit-chat-{turn['role']}"))
        if self.pending is not None:
            rows.append(
                _render.classed(widgets.HTML(_render.text_html(self.pending)), "llamakit-chat-user")
            )
            rows.append(
                _render.classed(
                    widgets.HTML("\u23f3 waiting for the model\u2026"), "llamakit-chat-waiting"
                )
            )
        self.transcript_box.children = rows
        self.credits_label.value = f"<b>Credits left</b> {_render.credits(self.credits_left)}"
        self.cost_label.value = f"<b>Last reply</b> {_render.credits(self.last_cost)} credits"
        self.latency_label.value = f"<b>Latency</b> {_render.seconds(self.last_latency_s)}"
        self.error_label.value = (
            "" if self.error is None else f"\u26a0 {_render.text_html(self.error)}"
        )

    def _messages(self) -> list[Any]:
        return list(self.conversation.messages)

    def _turns_count(self) -> int:
        return sum(1 for m in self._messages() if _role(m) != "system")

    def _system_value(self) -> str:
        value: str = self.system.value
        return value.strip()


def _role(message: Any) -> str:
    role: str = message["role"] if isinstance(message, dict) else message.role
    return role


def _content(message: Any) -> str:
    content: str = message["content"] if isinstance(message, dict) else message.content
    return content
