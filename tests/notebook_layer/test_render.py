"""How replies become HTML in the widgets: Markdown rendered, raw HTML never interpreted."""

from __future__ import annotations

from llamakit.errors import AuthenticationError
from llamakit.widgets import _render


def test_markdown_is_rendered() -> None:
    out = _render.markdown_html("**bold** and `code`\n\n- one\n- two")
    assert "<strong>bold</strong>" in out
    assert "<code>code</code>" in out
    assert out.count("<li>") == 2


def test_raw_html_in_a_reply_is_escaped_not_run() -> None:
    out = _render.markdown_html('hi <script>alert(1)</script>\n\n<div onclick="x()">block</div>')
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "<div" not in out


def test_error_line_is_one_line_with_class_and_status() -> None:
    exc = AuthenticationError("bad key\nsecond line", status=401)
    assert _render.error_line(exc) == "AuthenticationError (401): bad key"


def test_credits_show_five_decimals_and_a_dash_when_unknown() -> None:
    assert _render.credits(0.00063) == "0.00063"
    assert _render.credits(None) == "\u2013"
    assert _render.credits(float("nan")) == "\u2013"
