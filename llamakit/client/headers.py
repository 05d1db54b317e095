"""Response headers read as their standards say: ``Retry-After`` (RFC 9110 §10.2.3, its dates in
any of the three forms of §5.6.7, always GMT) and ``x-remaining-credits`` (a plain decimal).

Pure functions; nothing here depends on the machine's time zone or locale (``time.strptime``'s
``%a``/``%b`` do, and ``email.utils`` reads the asctime form as local time).
"""

from __future__ import annotations

import calendar
import math
import re
import time
from datetime import datetime, timezone
from decimal import Decimal

from .parse import credit_amount

_MONTHS = {m: i for i, m in enumerate(calendar.month_abbr) if m}  # English, whatever the locale
_TIME = r"(\d{2}):(\d{2}):(\d{2})"
# Sun, 06 Nov 1994 08:49:37 GMT  (IMF-fixdate, the preferred form)
_IMF = re.compile(rf"^[A-Za-z]{{3}}, (\d{{2}}) ([A-Za-z]{{3}}) (\d{{4}}) {_TIME} GMT$")
# Sunday, 06-Nov-94 08:49:37 GMT  (obsolete RFC 850 form)
_RFC850 = re.compile(rf"^[A-Za-z]+, (\d{{2}})-([A-Za-z]{{3}})-(\d{{2}}) {_TIME} GMT$")
# Sun Nov  6 08:49:37 1994  (obsolete asctime form; GMT although it does not say so)
_ASCTIME = re.compile(rf"^[A-Za-z]{{3}} ([A-Za-z]{{3}}) +(\d{{1,2}}) {_TIME} (\d{{4}})$")
_DELTA = re.compile(r"^-?\d+(\.\d+)?$", re.ASCII)
_CREDITS = re.compile(r"^\d+(\.\d+)?([eE][+-]?\d+)?$", re.ASCII)


def parse_http_date(value: str, now: float | None = None) -> float | None:
    """Seconds since the epoch of an HTTP-date in any RFC 9110 form, or None if it is not one."""
    value = value.strip()
    if m := _IMF.match(value):
        day, mon, year, hh, mm, ss = m.groups()
    elif m := _RFC850.match(value):
        day, mon, yy, hh, mm, ss = m.groups()
        year = str(_two_digit_year(int(yy), now))
    elif m := _ASCTIME.match(value):
        mon, day, hh, mm, ss, year = m.groups()
    else:
        return None
    month = _MONTHS.get(mon.capitalize())
    if month is None:
        return None
    try:
        when = datetime(int(year), month, int(day), int(hh), int(mm), int(ss), tzinfo=timezone.utc)
    except (ValueError, OverflowError):  # 32 Nov, 25:00, ...
        return None
    return when.timestamp()


def _two_digit_year(yy: int, now: float | None) -> int:
    """RFC 9110: a two-digit year more than 50 years in the future means the past century."""
    this_year = time.gmtime(time.time() if now is None else now).tm_year
    year = this_year - this_year % 100 + yy
    return year - 100 if year > this_year + 50 else year


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP-date); None when
    unusable. A date in the past, or a negative delay, means no wait (0.0)."""
    if value is None:
        return None
    value = value.strip()
    if _DELTA.match(value):
        seconds = float(value)
    else:
        when = parse_http_date(value, now)
        if when is None:
            return None
        seconds = when - (time.time() if now is None else now)
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


def parse_credits_header(raw: str) -> tuple[Decimal | None, str | None]:
    """``(balance, None)`` for a well-formed ``x-remaining-credits``, else ``(None, why)``.

    Well-formed: an unsigned decimal such as ``0.99937`` (an exponent is tolerated), finite. NaN,
    infinities, overflowing values, signs, ``1_000`` (Python's float() would accept it) and empty
    values are malformed: the balance is then unknown, never guessed.
    """
    text = raw.strip()
    if not text:
        return None, "it is empty"
    if not _CREDITS.match(text):
        return None, "it is not an unsigned decimal number"
    try:
        return credit_amount(text), None  # the one parser of credit figures: exact Decimals
    except ValueError:
        return None, "it is too large to be a balance"
