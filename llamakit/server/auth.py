"""API-key lookup. Keys live only here, in memory; everything else sees their labels."""

from __future__ import annotations

import hmac
from collections.abc import Iterable

from starlette.requests import HTTPConnection

from .config import key_label


class KeyRing:
    def __init__(self, keys: Iterable[str]) -> None:
        self._keys: dict[bytes, str] = {k.encode("utf-8"): key_label(k) for k in keys}
        self._by_label: dict[str, bytes] = {v: k for k, v in self._keys.items()}

    @property
    def labels(self) -> list[str]:
        return list(self._by_label)

    def add(self, key: str) -> str:
        label = key_label(key)
        self._keys[key.encode("utf-8")] = label
        self._by_label[label] = key.encode("utf-8")
        return label

    def match(self, presented: str | None) -> str | None:
        """The label of `presented`, or None. Compares against every key in constant time each,
        so neither a key's content nor its position can be learnt from response timing."""
        if not presented:
            return None
        candidate = presented.encode("utf-8", "surrogateescape")
        found: str | None = None
        for key, label in self._keys.items():
            if hmac.compare_digest(candidate, key):
                found = label
        return found


def presented_key(conn: HTTPConnection) -> str | None:
    """`x-api-key` (Segmind's documented header), else `Authorization: Bearer` (OpenAI clients)."""
    key = conn.headers.get("x-api-key")
    if key:
        return key.strip()
    auth = conn.headers.get("authorization", "")
    scheme, _, token = auth.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return None
