"""Every default llamakit uses, named in one place."""

from __future__ import annotations

from decimal import Decimal

DEFAULT_BASE_URL = "https://api.segmind.com/v1"
DEFAULT_MODEL = "llama-v3-8b-instruct"

# Bounds each attempt as a whole (connect, send, headers, body): a full non-streamed generation
# fits; connect stays short so a dead host fails fast. No total deadline across retries unless set.
DEFAULT_TIMEOUT = 60.0
DEFAULT_DEADLINE: float | None = None
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_MAX_RETRIES = 4
# A run stops (APIUnreachableError) after this many connection failures in a row when nothing has
# answered yet; after an answer, only once the failures have also lasted DEFAULT_OUTAGE_GRACE_S, so
# a server restart or a network blip is ridden out by the ordinary retries.
DEFAULT_UNREACHABLE_AFTER = 3
DEFAULT_OUTAGE_GRACE_S = 30.0
# A 429 asking us to wait longer than this is surfaced instead of silently stalling a notebook.
DEFAULT_MAX_RETRY_AFTER = 60.0
# A chat reply is at most a few tens of KB (8,192 tokens); a larger one is refused, not buffered.
DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024
# rpm= is counted over a sliding window of this many seconds (Segmind's limits are per minute).
DEFAULT_RPM_WINDOW_S = 60.0

# Money is exact: every price here is a Decimal written as text, never a binary float (a float
# holds 0.0006315522434414854 only to about 15 digits, and sums of it drift in the last ones).
# Segmind's published average cost per llama-v3-8b-instruct request (llms.txt, 2026-08), in USD credits.
PUBLISHED_COST_PER_CALL = Decimal("0.0006315522434414854")
# The local server's default flat price per successful request (CONTRACT §6), in USD credits.
LOCAL_COST_PER_CALL = Decimal("0.00063")

# Segmind's published average cost per request of each sibling slug (llms.txt 2026-08, CONTRACT
# §6), in USD credits: what estimates assume for a model before any call to it was observed.
PUBLISHED_COST_BY_MODEL: dict[str, Decimal] = {
    "llama-v3-8b-instruct": PUBLISHED_COST_PER_CALL,
    "llama-v3p1-8b-instruct": Decimal("0.00002702273886072785"),
    "llama-v3p1-70b-instruct": Decimal("0.0019101056600713583"),
}
# The stand-in's flat price per request of the siblings: the published averages rounded to two
# significant figures, as LOCAL_COST_PER_CALL rounds llama-v3-8b-instruct's (about 1/23 and 3x
# of it), so cost comparisons between models are meaningful offline.
LOCAL_COST_BY_MODEL: dict[str, Decimal] = {
    "llama-v3p1-8b-instruct": Decimal("0.000027"),
    "llama-v3p1-70b-instruct": Decimal("0.0019"),
}

CONTEXT_WINDOW = 8192

ENV_API_KEY = "SEGMIND_API_KEY"
ENV_BASE_URL = "SEGMIND_BASE_URL"
ENV_HOME = "LLAMAKIT_HOME"
# Which local backend connect() starts when no key is set (smollm2 | scripted | upstream).
ENV_BACKEND = "LLAMAKIT_BACKEND"

LOCAL_HOST = "127.0.0.1"
LOCAL_PORT = 8787
