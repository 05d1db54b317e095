"""Origins (RFC 6454: scheme, host, port) and URLs safe to show.

The API key is sent only to ``base_url``'s origin: the v2 path polls URLs the server's reply
names (or a stored job journal recorded), and a reply naming another host must not receive the
key. ``display_url`` is the form of a URL that may appear in a repr, an error or the store: any
``user:password@`` is replaced by ``***@``, a query or fragment by ``***``.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Origin:
    scheme: str
    host: str
    port: int | None

    @classmethod
    def of(cls, url: str) -> Origin:
        """The origin of ``url``; an unparsable URL has an origin that matches nothing."""
        # Every attempt asks (the key goes only to base_url's origin), nearly always of the same
        # few URLs: parsed once each.
        return _origin_of(url)

    @classmethod
    def _parse(cls, url: str) -> Origin:
        try:
            parts = urlsplit(url)
            scheme = parts.scheme.lower()
            port = parts.port or _DEFAULT_PORTS.get(scheme)
            host = (parts.hostname or "").rstrip(".")
        except ValueError:
            return cls("invalid", url[:0], None)
        return cls(scheme, host, port)

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}" + ("" if self.port is None else f":{self.port}")


@functools.lru_cache(maxsize=256)
def _origin_of(url: str) -> Origin:
    return Origin._parse(url)


def display_url(url: str) -> str:
    """``url`` without the credentials it may carry: ``user:password@`` becomes ``***@``, and a
    query string or fragment (where tokens are pasted) becomes ``?***`` / ``#***``."""
    try:
        parts = urlsplit(url)
    except ValueError:
        url = url.split("?", 1)[0].split("#", 1)[0]
        return url.rpartition("@")[2] if "@" in url else url
    if "@" in parts.netloc:
        parts = parts._replace(netloc="***@" + parts.netloc.rpartition("@")[2])
    if parts.query or "?" in url:
        parts = parts._replace(query="***")
    if parts.fragment or "#" in url:
        parts = parts._replace(fragment="***")
    return urlunsplit(parts)
