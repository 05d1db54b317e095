"""Fuzzing the server's request parsing over real HTTP (hypothesis).

Property, for any bytes a client can send: the server answers within the timeout (never hangs),
with a documented status (200 401 404 405 406 413 422 429), never a 500, always a JSON body (an
error body is `{"error": "<str>"}`), and it still serves a valid call afterwards.
Inputs: random JSON of any type, chat-shaped bodies with wrong types and odd Unicode (lone
surrogates, RTL marks, combining characters, NUL), invalid UTF-8, truncated JSON, deeply nested
arrays and objects, huge bodies around the size cap, random headers, methods and paths.
"""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from reliability_helpers import FUZZED

DOCUMENTED = {200, 401, 404, 405, 406, 413, 422, 429}
SLUG = "llama-v3-8b-instruct"
INFERENCE = [f"/v1/{SLUG}", "/v1/chat/completions", f"/v2/{SLUG}", "/v1/llama-v3p1-8b-instruct"]
TIMEOUT_S = 15.0  # a hang is a failure: no request here needs more than milliseconds

# The same inputs on every run (CI must be reproducible); no example database in the repo.
FUZZ = settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        # One server per test function on purpose: examples share it, as clients share a server.
        HealthCheck.function_scoped_fixture,
    ],
)

# Every code point, including lone surrogates (category Cs), which only JSON escapes can carry.
ANY_CHAR = st.characters(codec=None, exclude_categories=())
ODD = st.sampled_from(
    ["\u202e", "\u0301", "\ufeff", "\x00", "\ud800", "\udfff", "\U0001f600", "\u2028", "\u200d"]
)
# st.text() never yields lone surrogates, so strings are joined from single characters.
TEXT = st.lists(st.one_of(ANY_CHAR, ODD), max_size=40).map("".join)
# Values generators reach rarely but that break naive validation: drawn on purpose.
EDGE = st.sampled_from(
    [
        math.inf,
        -math.inf,
        math.nan,
        -0.0,
        1e308,
        5e-324,
        2**63,
        -(2**63) - 1,
        10**40,
        10**400,
        0,
        -1,
    ]
    + ["", " ", "\ud800", "\x00", [], {}, None, True, False]
)
SCALARS = st.one_of(
    EDGE,
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=True, allow_infinity=True),
    TEXT,
)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=16,
)
ROLE = st.one_of(st.sampled_from(["user", "system", "assistant", "USER", "tool", ""]), JSON)
CONTENT = st.one_of(
    TEXT,
    JSON,
    st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url"]), "text": JSON})),
)
MESSAGE = st.one_of(
    st.fixed_dictionaries({"role": ROLE, "content": CONTENT}),
    st.fixed_dictionaries({}, optional={"role": ROLE, "content": CONTENT, "name": JSON}),
    JSON,
)
PARAM_NAMES = [
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "stop",
    "n",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "response_format",
    "stream",
    "prompt",
    "model",
    "tools",
]
PLAUSIBLE = st.one_of(
    st.integers(-5, 10_000),
    st.floats(-3, 3),
    st.sampled_from([SLUG, "gpt-4", "", [SLUG], {"type": "json_object"}, {"type": "json_schema"}]),
    st.fixed_dictionaries({"type": st.sampled_from(["json_schema", "text"]), "json_schema": JSON}),
    st.lists(TEXT, max_size=6),
)
CHAT_BODY = st.fixed_dictionaries(
    {"messages": st.one_of(st.lists(MESSAGE, max_size=4), JSON)},
    optional={name: st.one_of(PLAUSIBLE, JSON) for name in PARAM_NAMES},
)
# A valid call with odd text and each parameter valid, at an edge, or of a wrong type: most of
# these get past the first checks, so they reach the deeper code (token counting, the backend).
VALID_PARAM = {
    "max_tokens": st.integers(1, 8192),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0, 1),
    "top_k": st.integers(0, 100),
    "seed": st.integers(),
    "stop": st.one_of(TEXT.filter(bool), st.lists(TEXT.filter(bool), min_size=1, max_size=4)),
    "response_format": st.one_of(
        st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object", "json_schema"])}),
        st.fixed_dictionaries(
            {
                "type": st.just("json_schema"),
                "json_schema": st.one_of(JSON, st.just({"schema": {}})),
            }
        ),
    ),
    "prompt": TEXT,
}
ALMOST_VALID = st.fixed_dictionaries(
    {
        "messages": st.lists(
            st.fixed_dictionaries(
                {"role": st.sampled_from(["user", "system", "assistant"]), "content": TEXT}
            ),
            min_size=1,
            max_size=3,
        )
    },
    optional={name: st.one_of(v, v, EDGE, JSON) for name, v in VALID_PARAM.items()},
)


def _encode(value: Any, ascii_only: bool) -> bytes:
    # allow_nan: Python's json emits NaN/Infinity, which many clients send and the server parses.
    text = json.dumps(value, ensure_ascii=ascii_only, allow_nan=True)
    # Without ASCII escapes a lone surrogate becomes invalid UTF-8 bytes (CESU-8): also a test.
    return text.encode("utf-8", "surrogatepass")


BODIES = st.one_of(
    st.builds(_encode, ALMOST_VALID, st.booleans()),
    st.builds(_encode, CHAT_BODY, st.booleans()),
    st.builds(_encode, JSON, st.booleans()),
    st.binary(max_size=300),
    # Valid JSON cut short at a random point.
    st.tuples(st.builds(_encode, CHAT_BODY, st.just(True)), st.integers(0, 400)).map(
        lambda t: t[0][: t[1]]
    ),
)


@pytest.fixture
def http(fuzz_server: Any) -> Any:
    with httpx.Client(base_url=fuzz_server.url, timeout=TIMEOUT_S) as client:
        yield client


@pytest.fixture(autouse=True)
def still_healthy_afterwards(fuzz_server: Any, http: httpx.Client) -> Any:
    """After each fuzz target: a valid call still works and nothing was ever answered 500."""
    yield
    healthy(fuzz_server, http)
    assert "500" not in fuzz_server.stats()["requests"]


def check(fuzz_server: Any, response: httpx.Response) -> None:
    """The property every response must satisfy."""
    assert response.status_code in DOCUMENTED, (response.status_code, response.text[:300])
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        # `stream: true` on the OpenAI route: a complete SSE stream, never a half one.
        assert response.status_code == 200 and response.text.endswith("data: [DONE]\n\n")
        assert "500" not in fuzz_server.stats()["requests"]
        return
    body = response.json()  # always JSON (unless streamed), whatever the status
    if response.status_code != 200:
        assert isinstance(body, dict) and isinstance(body.get("error"), str), body
    if response.status_code == 429:
        assert float(response.headers["retry-after"]) >= 0
    assert "500" not in fuzz_server.stats()["requests"]


def reset(fuzz_server: Any) -> None:
    """Undo whatever a fuzzed admin body managed to set, before the next example."""
    fuzz_server.set_faults(latency_ms=0, latency_jitter_ms=0, fail_rate=0, rate_429=0, drop_rate=0)
    fuzz_server.set_faults(slow_body_s=0, retry_after_s=1)
    fuzz_server.set_credits(1e9)


def healthy(fuzz_server: Any, http: httpx.Client) -> None:
    r = http.post(
        f"/v1/{SLUG}",
        json={"messages": [{"role": "user", "content": "still there?"}]},
        headers={"x-api-key": fuzz_server.api_key},
    )
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"]


@FUZZ
@given(path=st.sampled_from(INFERENCE), body=BODIES)
def test_any_body_on_an_inference_route_gets_a_documented_status(
    fuzz_server: Any, http: httpx.Client, path: str, body: bytes
) -> None:
    FUZZED["inference bodies"] += 1
    r = http.post(path, content=body, headers={"x-api-key": fuzz_server.api_key})
    check(fuzz_server, r)
    if r.status_code == 200 and path.startswith("/v2/"):
        assert r.json()["status"] in ("QUEUED", "PROCESSING", "COMPLETED")


@FUZZ
@given(body=st.builds(_encode, st.one_of(ALMOST_VALID, CHAT_BODY), st.booleans()))
def test_the_openai_route_and_the_admin_routes_validate_too(
    fuzz_server: Any, http: httpx.Client, body: bytes
) -> None:
    FUZZED["openai + admin bodies"] += 3
    key = {"x-api-key": fuzz_server.api_key}
    try:
        check(fuzz_server, http.post("/v1/chat/completions", content=body, headers=key))
        # Admin bodies: fault settings and credits are validated like any request body.
        check(fuzz_server, http.post("/_llamakit/credits", content=body, headers=key))
        check(fuzz_server, http.post("/_llamakit/faults", content=body, headers=key))
    finally:
        reset(fuzz_server)


ADMIN_VALUES = st.one_of(
    EDGE,
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(2**70), max_value=2**70),
    JSON,
)


@FUZZ
@given(
    name=st.sampled_from(
        ["latency_ms", "latency_jitter_ms", "fail_rate", "rate_429", "retry_after_s", "drop_rate"]
        + ["slow_body_s", "seed", "credits"]
    ),
    value=ADMIN_VALUES,
)
def test_admin_settings_reject_values_that_would_break_the_server(
    fuzz_server: Any, http: httpx.Client, name: str, value: Any
) -> None:
    """NaN, infinities and absurd numbers must be a 422, not a 500 or a server that then hangs."""
    FUZZED["admin values"] += 1
    key = {"x-api-key": fuzz_server.api_key}
    route = "/_llamakit/credits" if name == "credits" else "/_llamakit/faults"
    try:
        r = http.post(route, content=_encode({name: value}, True), headers=key)
        check(fuzz_server, r)
        if r.status_code == 200:
            # Accepted values must leave the server usable: settings and balance read back as JSON.
            check(fuzz_server, http.get("/_llamakit/faults", headers=key))
            check(fuzz_server, http.get("/v1/get-user-credits", headers=key))
    finally:
        reset(fuzz_server)


HEADER_BYTES = st.binary(max_size=60).map(
    # h11 (the client) refuses control characters in header values, and outer whitespace.
    lambda b: bytes(c for c in b if c >= 0x20 and c != 0x7F).strip()
)


@FUZZ
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
    path=st.one_of(
        st.sampled_from(
            INFERENCE
            + [
                "/v1/get-user-credits",
                "/_llamakit/stats",
                "/_llamakit/faults",
                "/_llamakit/credits",
            ]
            + ["/v2/requests/x/status", "/v2/requests/x", "/v1/requests/x", "/", "/v1/", "/v3/x"]
        ),
        st.text(st.characters(min_codepoint=33, max_codepoint=0x2FFF), max_size=30).map(
            lambda s: "/" + s.replace("?", "").replace("#", "")
        ),
    ),
    key=st.one_of(st.none(), st.just("valid"), HEADER_BYTES),
    bearer=st.booleans(),
)
def test_any_method_path_and_key_gets_a_documented_status(
    fuzz_server: Any,
    http: httpx.Client,
    method: str,
    path: str,
    key: bytes | str | None,
    bearer: bool,
) -> None:
    FUZZED["methods, paths, keys"] += 1
    headers: list[tuple[bytes, bytes]] = []
    if key is not None:
        raw = fuzz_server.api_key.encode() if key == "valid" else key
        header = (b"authorization", (b"Bearer " + raw).strip()) if bearer else (b"x-api-key", raw)
        headers.append(header)
    try:
        request = http.build_request(method, path, headers=headers, content=b"{}")
    except httpx.InvalidURL:
        return  # the client refuses the URL; nothing reaches the server
    r = http.send(request)
    if method == "HEAD":
        assert r.status_code in DOCUMENTED
        return
    check(fuzz_server, r)
    if key != "valid" and r.status_code not in (404, 405):
        assert r.status_code == 401, (method, path, r.status_code)


DEPTHS = st.integers(min_value=1, max_value=300_000)


@settings(FUZZ, max_examples=40)
@given(depth=DEPTHS, kind=st.sampled_from(["array", "object", "messages"]))
def test_deeply_nested_json_is_a_422_not_a_crash(
    fuzz_server: Any, http: httpx.Client, depth: int, kind: str
) -> None:
    FUZZED["deep nesting"] += 1
    if kind == "array":
        body = b"[" * depth + b"]" * depth
    elif kind == "object":
        body = b'{"a":' * depth + b"1" + b"}" * depth
    else:
        body = b'{"messages":' + b"[" * depth + b"]" * depth + b"}"
    r = http.post(f"/v1/{SLUG}", content=body, headers={"x-api-key": fuzz_server.api_key})
    check(fuzz_server, r)
    assert r.status_code in (413, 422)


def test_bodies_around_the_size_cap(fuzz_server: Any, http: httpx.Client) -> None:
    """Just under the cap is parsed (then judged on content), just over and far over is a 413."""
    key = {"x-api-key": fuzz_server.api_key}
    cap = 1024 * 1024
    for size, expected in [(cap - 64, {200, 422}), (cap + 1, {413}), (8 * cap, {413})]:
        FUZZED["size cap"] += 1
        prefix = b'{"messages":[{"role":"user","content":"'
        suffix = b'"}]}'
        body = prefix + b"a" * (size - len(prefix) - len(suffix)) + suffix
        assert len(body) == size
        r = http.post(f"/v1/{SLUG}", content=body, headers=key)
        check(fuzz_server, r)
        assert r.status_code in expected, (size, r.status_code, r.text[:200])
    # A huge number literal (CPython refuses to parse > 4300 digits) is a client mistake too.
    FUZZED["size cap"] += 1
    r = http.post(f"/v1/{SLUG}", content=b'{"max_tokens": ' + b"9" * 5000 + b"}", headers=key)
    check(fuzz_server, r)
    assert r.status_code == 422
