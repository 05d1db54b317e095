"""Turning model output into HTML that is safe to put in a widget."""

from __future__ import annotations

import html
import math
from decimal import Decimal
from typing import Any

SEGMIND_BILLING_URL = "https://cloud.segmind.com/console/billing"


def markdown_html(text: str) -> str:
    """Render a reply as Markdown. Raw HTML in the reply is shown as text, never interpreted:
    a model can write ``<script>`` and the transcript must not run it."""
    try:
        import markdown
    except ImportError:  # the notebooks extra is missing: show the text as it came
        return f"<pre style='white-space: pre-wrap'>{html.escape(text)}</pre>"
    md = markdown.Markdown(extensions=["fenced_code", "tables", "sane_lists"])
    # Removing the raw-HTML rules makes Markdown escape any HTML it meets.
    md.preprocessors.deregister("html_block")
    md.inlinePatterns.deregister("html")
    return md.convert(text)


def text_html(text: str) -> str:
    """Plain text (a user turn, an error message) as escaped HTML that keeps line breaks."""
    return html.escape(text).replace("\n", "<br>")


def credits(value: float | Decimal | None) -> str:
    """Credits are dollars worth fractions of a cent per call: five decimals show a call's cost."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "\u2013"
    return f"{value:.5f}"


def seconds(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "\u2013"
    return f"{value:.2f} s"


def error_line(exc: BaseException) -> str:
    """One readable line for an error: its class and message, never a traceback."""
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    status = getattr(exc, "status", None)
    head = f"{name} ({status})" if status else name
    message = message.removeprefix(f"HTTP {status}: ") if status else message
    return f"{head}: {message}" if message else head


def out_of_credits_line(client: Any, balance: Decimal | float | None) -> str:
    """A 406 said once, with where to top up: the local stand-in's own admin route (the key's
    balance is set there, not on Segmind's billing page), else Segmind's billing page."""
    left = f" (balance {credits(balance)})" if balance is not None else ""
    if getattr(client, "is_local", False):
        root = str(getattr(client, "base_url", "")).rstrip("/").removesuffix("/v1")
        return (
            f"InsufficientCreditsError (406): out of credits on the local stand-in{left}. Top it up with "
            f'srv.set_credits(1.0) on its lk.local_server handle, or POST {{"credits": 1.0}} to '
            f"{root}/_llamakit/credits with your key; then send again."
        )
    return (
        f"InsufficientCreditsError (406): out of credits{left}. Top up at {SEGMIND_BILLING_URL}, then send again: "
        "the conversation is kept."
    )


def number(value: Any) -> str:
    """A score or figure for a table cell: blank for NaN/None."""
    if value is None:
        return ""
    try:
        f = float(value)
    except (TypeError, ValueError):
        return html.escape(str(value))
    if math.isnan(f):
        return "\u2013"
    return f"{f:g}"


def classed(widget: Any, *css_classes: str) -> Any:
    """Stable CSS classes let a browser test (and user CSS) find each part of a widget."""
    for css_class in css_classes:
        widget.add_class(css_class)
    return widget
