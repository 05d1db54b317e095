"""Keeping the operator's upstream credentials out of everything the server sends back or logs.

An upstream may echo the key it was sent (in an error message, or in a hostile completion), and the
upstream URL may carry `user:password@`. Whatever comes from the upstream passes through `Scrubber`
before a caller, a log line or a client's store can see it.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from urllib.parse import quote, quote_plus, urlsplit, urlunsplit

from ..client.secrets import secrets_pattern

MASK = "***"


def split_userinfo(url: str) -> tuple[str, str | None, str | None]:
    """(`url` without `user:password@`, user, password); the parts are None when absent."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url, None, None
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, sep, password = userinfo.partition(":")
    clean = urlunsplit((parts.scheme, hostport, parts.path, parts.query, parts.fragment))
    return clean, user or None, password if sep else None


def public_url(url: str) -> str:
    """`url` safe to show: its credentials (if any) are dropped, and a query string or fragment
    (where a token may be pasted) is shown as `***`."""
    parts = urlsplit(split_userinfo(url)[0])
    query = MASK if parts.query or "?" in url else ""
    fragment = MASK if parts.fragment or "#" in url else ""
    return urlunsplit(parts._replace(query=query, fragment=fragment))


def check_upstream_url(url: str) -> None:
    """ValueError unless `url` is an http(s) base URL without a query string or fragment.

    A query would be glued before `/chat/completions` (the wrong route) and is where a token gets
    pasted, which would then reach logs and clients' stores: the key belongs in the environment.
    The message never quotes the URL.
    """
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise ValueError("the upstream URL must be an http(s) URL like http://host:8080/v1")
    if "?" in url or "#" in url:
        raise ValueError(
            "the upstream URL must not have a query string or fragment ('?...' or '#...'): give "
            "the plain base URL (like http://host:8080/v1) and put the upstream key in the "
            "environment variable LLAMAKIT_UPSTREAM_API_KEY"
        )


class Scrubber:
    """Replaces each secret by `***` in every form the client's redaction knows (any letter case,
    JSON, percent and HTML escapes, UTF-16 NULs, base64, hex, split by whitespace: see
    `llamakit.client.secrets`), plus the forms only an upstream credential takes (HTTP Basic
    `user:secret` in base64, `quote_plus`)."""

    def __init__(self, secrets: Iterable[str | None], *, users: Iterable[str | None] = ()) -> None:
        forms: set[str] = set()
        given = [s for s in secrets if s]
        for secret in given:
            forms |= {quote(secret, safe=""), quote_plus(secret)}
            for user in [*(u for u in users if u), ""]:
                basic = f"{user}:{secret}".encode()
                forms.add(base64.b64encode(basic).decode())
            forms.add(base64.urlsafe_b64encode(secret.encode()).decode().rstrip("="))
        self._known = secrets_pattern(given)
        # Longest first, so a form that contains another is masked whole.
        ordered = sorted((f for f in forms if len(f) >= 4), key=len, reverse=True)
        self._pattern = (
            re.compile("|".join(re.escape(f) for f in ordered), re.IGNORECASE) if ordered else None
        )

    def __call__(self, text: str) -> str:
        if self._pattern is not None:
            text = self._pattern.sub(MASK, text)
        return self._known.sub(MASK, text) if self._known is not None else text

    def __repr__(self) -> str:
        return "Scrubber(***)"
