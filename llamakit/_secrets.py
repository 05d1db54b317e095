"""Keeping the API key out of every log line and message.

Keys of every client built in this process are registered here (they are in memory anyway, each
client holds its own) so that ``redact`` and the log filter can scrub them from any text.
"""

from __future__ import annotations

import logging
import re

_SECRETS: set[str] = set()
# httpx/httpcore debug logs print header lists; mask the value after an auth header name too.
_AUTH_HEADER = re.compile(
    r"(?i)((?:x-api-key|authorization)['\"]?\s*[:,=]\s*(?:b?['\"])?)(?:bearer\s+)?[^'\"\s,)\]]+"
)
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


def register_secret(secret: str) -> None:
    _SECRETS.add(secret)


def redact(text: str) -> str:
    """``text`` with every known key, and any auth header value, replaced by ``***``."""
    for secret in list(_SECRETS):
        if secret in text:
            text = text.replace(secret, "***")
    return _AUTH_HEADER.sub(r"\1***", text)


class RedactingFilter(logging.Filter):
    """Rewrites a record whose formatted message would contain a key."""

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
