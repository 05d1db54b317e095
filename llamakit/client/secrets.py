"""Keeping secrets (API keys, credentials inside a URL) out of every log line and message.

Keys of every client built in this process, and the password of a ``base_url`` like
``http://user:SECRET@host/v1``, are registered here (they are in memory anyway, each client holds
its own) so that ``redact``, the one redaction path, and the log filter can scrub them from any
text. A server that echoes a secret may change its case or its encoding, so each secret is matched
in any case and in every form an echo can take: plain, JSON ``\\uXXXX``, percent and HTML escapes
(character by character, so mixed forms match too), UTF-16/32 text read as UTF-8 (NULs between
the characters), base64 at any alignment (an echoed ``Authorization: Basic`` header), hex of its
bytes, and (for secrets of 12 characters or more) split by spaces or line breaks.
Independently of what is registered, ``scheme://user:password@`` in any URL and the value after an
auth header name are masked by shape.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Iterable
from typing import Any
from urllib.parse import unquote

_SECRETS: set[str] = set()
_LOCK = threading.Lock()
_PATTERN: re.Pattern[str] | None = None
# httpx/httpcore debug logs print header lists; mask the value after an auth header name too.
_AUTH_HEADER = re.compile(
    r"(?i)((?:x-api-key|authorization)['\"]?\s*[:,=]\s*(?:b?['\"])?)"
    r"(?:(?:bearer|basic)\s+)?[^'\"\s,)\]]+"
)
_URL_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)[^\s/?#@'\"<>]+@")
_FILTERED_LOGGERS = (
    "httpx",
    "httpcore",
    "httpcore.connection",
    "httpcore.http11",
    "httpcore.http2",
    "httpcore.proxy",
    "hpack",
    "llamakit",
)
# Secrets shorter than this are not matched as substrings (a one-letter password would mask
# every such letter in every message); URLs carrying them are still masked by shape.
MIN_SECRET_CHARS = 4
# Whitespace inside a match is tolerated only for secrets at least this long: "a b c d" in a
# reply must not be masked because a password is "abcd", while 12 characters in a row, with
# only whitespace between them, do not occur by chance.
MIN_SPLIT_SECRET_CHARS = 12
_SPLIT_GAP = r"(?:[\s\x00]|\\\x00*[nrt])*"
_MIN_BASE64_CHARS = 8


def register_secret(secret: str) -> None:
    global _PATTERN
    if not isinstance(secret, str) or len(secret) < MIN_SECRET_CHARS:
        return
    with _LOCK:
        if secret not in _SECRETS:
            _SECRETS.add(secret)
            _PATTERN = None


def register_url_password(password: str) -> None:
    """A URL's password in both forms a reply can echo: as written in the URL (percent-encoded,
    ``pa%40ss``) and as sent (decoded, ``pa@ss``: what HTTP Basic auth carries)."""
    register_secret(password)
    register_secret(unquote(password))


def redact(text: str) -> str:
    """``text`` with every known secret (in any case and encoding), any credentials inside a
    URL, and any auth header value replaced by ``***``."""
    text = mask_known(text)
    text = _URL_USERINFO.sub(r"\1***@", text)
    return _AUTH_HEADER.sub(r"\1***", text)


def mask_known(text: str) -> str:
    """``text`` with only the registered secrets masked: for content that is data (a model's
    reply), where text that merely looks like a header or a URL must stay as it is."""
    pattern = _pattern()
    return text if pattern is None else pattern.sub("***", text)


def mask_known_in(value: Any) -> Any:
    """``mask_known`` applied to every string inside decoded JSON (dicts, lists, strings)."""
    pattern = _pattern()
    return value if pattern is None else _masked_in(value, pattern)


def _masked_in(value: Any, pattern: re.Pattern[str]) -> Any:
    if isinstance(value, str):
        return pattern.sub("***", value)
    if isinstance(value, list):
        return [_masked_in(v, pattern) for v in value]
    if isinstance(value, dict):
        return {_masked_in(k, pattern): _masked_in(v, pattern) for k, v in value.items()}
    return value


def json_may_hold_known(text: str) -> bool:
    """Whether a string inside the JSON document ``text`` may hold a registered secret (then
    ``mask_known_in`` must walk the decoded document). False only when none is registered, or
    when ``text`` has no escape (so each of its strings is a verbatim piece of it: a match in one
    is a match in ``text``) and no secret matches ``text`` as a whole: one search instead of one
    per string."""
    pattern = _pattern()
    if pattern is None:
        return False
    return "\\" in text or pattern.search(text) is not None


def _pattern() -> re.Pattern[str] | None:
    global _PATTERN
    with _LOCK:
        if _PATTERN is None and _SECRETS:
            _PATTERN = secrets_pattern(_SECRETS)
        return _PATTERN


def secrets_pattern(secrets: Iterable[str]) -> re.Pattern[str] | None:
    """One case-insensitive pattern matching each of ``secrets`` in every form an echo can take
    (see the module's docstring); None when there is none to match. Also used by the server for
    its upstream credentials."""
    # Longest first, so a secret containing another is masked whole.
    ordered = sorted((s for s in secrets if len(s) >= MIN_SECRET_CHARS), key=len, reverse=True)
    if not ordered:
        return None
    return re.compile("|".join(_forms(s) for s in ordered), re.IGNORECASE)


def _forms(secret: str) -> str:
    chars = []
    for ch in secret:
        code = ord(ch)
        alternatives = [re.escape(ch), rf"\\u{code:04x}", rf"&#0*{code};", rf"&#x0*{code:x};"]
        if code < 0x80:
            alternatives.append(rf"%{code:02x}")
        chars.append("(?:" + "|".join(alternatives) + ")")
    # Between characters: the NULs of UTF-16/32 read as UTF-8, and, for a secret long enough
    # that no ordinary text spells it out with gaps, the line breaks and spaces of a wrapped
    # or reformatted echo (also as the escapes a JSON string or a repr shows them as).
    gap = _SPLIT_GAP if len(secret) >= MIN_SPLIT_SECRET_CHARS else r"\x00*"
    forms = [gap.join(chars)]
    forms += [re.escape(b) for b in _base64_fragments(secret.encode())]
    # Hex of the UTF-8 bytes (an echoed header dumped as hex); either case, as the pattern is.
    forms.append(r"\x00*".join(secret.encode().hex()))
    return "|".join(forms)


def _base64_fragments(raw: bytes) -> list[str]:
    """The base64 text that ``raw`` always produces, at each of the three alignments it can have
    inside a longer encoded string (groups that mix in unknown neighbouring bytes are cut)."""
    out = []
    for offset in range(3):
        encoded = base64.b64encode(b"\0" * offset + raw).decode()
        start = 4 if offset else 0
        end = 4 * ((offset + len(raw)) // 3)
        fragment = encoded[start:end]
        if len(fragment) >= _MIN_BASE64_CHARS:
            out += [fragment, fragment.replace("+", "-").replace("/", "_")]
    return out


class RedactingFilter(logging.Filter):
    """Rewrites a record whose formatted message would contain a secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is the logging system's problem, not ours
            return True
        clean = redact(message)
        if clean != message:
            record.msg, record.args = clean, None
        return True


_FILTER = RedactingFilter()


def install_log_filter() -> None:
    """Attach the filter to httpx's, httpcore's and our loggers (a logger's filters only see
    records logged on it, not on its children, hence the explicit list). Idempotent."""
    for name in _FILTERED_LOGGERS:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
