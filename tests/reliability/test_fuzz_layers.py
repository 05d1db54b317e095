"""Fuzzing the client-side layers (hypothesis): message validation, parameter validation, template
rendering, response parsing, and whole calls over real HTTP.

Property: any input gives a result of the documented shape or a typed llamakit error
(LlamakitError and its subclasses) that names what was wrong; never a TypeError, KeyError,
AttributeError or any other crash from inside llamakit.
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

import llamakit as lk
from llamakit.client.messages import normalize_messages, validate_params
from llamakit.client.retry import RetryPolicy
from llamakit.client.types import ChatResponse, Message
from llamakit.errors import APIError, APIStatusError, ValidationError
from llamakit.experiment.templates import parse_prompts

FUZZ = settings(
    max_examples=250,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
ROLES = ("system", "user", "assistant")

# st.text() never yields lone surrogates, so strings are joined from single characters.
CHARS = st.one_of(
    st.characters(codec=None, exclude_categories=()),
    st.sampled_from(["\u202e", "\u0301", "\ufeff", "\x00", "\ud800", "\U0001f600", "{", "}", "%"]),
)
TEXT = st.lists(CHARS, max_size=30).map("".join)
EDGE = st.sampled_from(
    [math.inf, -math.inf, math.nan, -0.0, 2**63, 10**400, "", [], {}, None, True]
)
SCALARS = st.one_of(EDGE, st.none(), st.booleans(), st.integers(), st.floats(), TEXT)
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=10,
)
MESSAGE = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(ROLES), "content": TEXT}),
    st.fixed_dictionaries(
        {}, optional={"role": st.one_of(st.sampled_from(ROLES), JSON), "content": JSON}
    ),
    st.builds(Message, role=st.one_of(st.sampled_from(ROLES), TEXT), content=st.one_of(TEXT, JSON)),
    JSON,
)
MESSAGES = st.one_of(TEXT, st.lists(MESSAGE, max_size=4), JSON)
PARAM_NAMES = [
    "max_tokens",
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "response_format",
    "stream",
    "extra_body",
    "prompt",
    "temprature",
]
PARAMS = st.dictionaries(
    st.one_of(st.sampled_from(PARAM_NAMES), TEXT),
    st.one_of(st.integers(-2, 600), st.floats(-3, 3), JSON, st.lists(TEXT, max_size=5)),
    max_size=4,
)


@FUZZ
@given(messages=MESSAGES)
def test_normalize_messages_returns_wire_messages_or_a_validation_error(messages: Any) -> None:
    FUZZED["client messages"] += 1
    try:
        out = normalize_messages(messages)
    except ValidationError as exc:
        assert exc.field and str(exc)
        return
    assert out and all(m["role"] in ROLES and isinstance(m["content"], str) for m in out)
    json.dumps(out)  # what goes on the wire serialises


@FUZZ
@given(params=PARAMS)
def test_validate_params_returns_a_body_or_a_validation_error(params: dict[str, Any]) -> None:
    FUZZED["client params"] += 1
    try:
        out = validate_params(params)
    except ValidationError as exc:
        assert exc.field and str(exc)
        return
    assert isinstance(out, dict)


FRAGMENTS = st.sampled_from(
    [
        "{{ q }}",
        "{{ q.upper() }}",
        "{{ q|length }}",
        "{{ q * 3 }}",
        "{{ a + b }}",
        "{{ a / b }}",
        "{{ a[0] }}",
        "{{ q['x'] }}",
        "{{ missing }}",
        "{{ ''.__class__.__mro__ }}",
        "{{ q.__init__.__globals__ }}",
        "{% for x in a %}{{ x }}{% endfor %}",
        "{% if q %}yes{% endif %}",
        "{% if q %}",
        "{{",
        "}}",
        "{#",
        "{% raw %}{{{% endraw %}",
        "{{ range(10)|list }}",
        "{{ q|int }}",
        "{{ a|join(',') }}",
        # Amplifiers and escapes (issue 11): refused within the render bound.
        "{{ range(100000)|join('x' * 999999) }}",
        "{% for i in range(100000) %}{% for j in a %}{% endfor %}{% endfor %}",
        "{{ q|indent(999999) }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ self }}",
    ]
)
TEMPLATE = st.lists(st.one_of(FRAGMENTS, TEXT), min_size=1, max_size=4).map("".join)
PROMPTS = st.one_of(
    TEMPLATE,
    st.dictionaries(st.one_of(st.sampled_from(["a", "b"]), TEXT), TEMPLATE, max_size=3),
    st.lists(
        st.one_of(
            st.fixed_dictionaries({"role": st.sampled_from(ROLES), "content": TEMPLATE}), JSON
        ),
        max_size=3,
    ),
    JSON,
)
ROW = st.dictionaries(st.sampled_from(["q", "a", "b", "x"]), JSON, max_size=4)


@FUZZ
@given(prompts=PROMPTS, row=ROW)
def test_templates_render_or_raise_a_validation_error(prompts: Any, row: dict[str, Any]) -> None:
    """Sandboxed, strict rendering of any template with any row: messages or ValidationError."""
    FUZZED["templates"] += 1
    try:
        templates = parse_prompts(prompts)
        for t in templates:
            messages = t.render(row, item_id="item-1")
            assert all(m["role"] in ROLES and isinstance(m["content"], str) for m in messages)
    except ValidationError as exc:
        assert str(exc) and exc.field


HEADER_TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20)
REPLY = st.fixed_dictionaries(
    {
        "status": st.one_of(
            st.sampled_from([200, 200, 200, 401, 404, 405, 406, 422, 429, 500, 503]),
            st.integers(100, 599),
        ),
        "body": st.one_of(
            st.builds(
                lambda v: json.dumps(v, allow_nan=True).encode("utf-8", "surrogatepass"), JSON
            ),
            st.builds(
                lambda content, finish, usage: json.dumps(
                    {
                        "choices": [{"message": {"content": content}, "finish_reason": finish}],
                        "usage": usage,
                    },
                    allow_nan=True,
                ).encode("utf-8", "surrogatepass"),
                st.one_of(TEXT, JSON),
                JSON,
                JSON,
            ),
            st.binary(max_size=200),
        ),
        "credits": st.one_of(
            st.none(), HEADER_TEXT, st.sampled_from(["0.5", "nan", "inf", "-1", "1e400", ""])
        ),
        "retry_after": st.one_of(
            st.none(),
            HEADER_TEXT,
            st.sampled_from(["0", "0.01", "-5", "nan", "Wed, 21 Oct 2015 07:28:00 GMT"]),
        ),
        "content_type": st.sampled_from(["application/json", "text/html", "text/plain", ""]),
    }
)


def _mock_client(reply: dict[str, Any]) -> lk.Client:
    def handler(request: httpx.Request) -> httpx.Response:
        headers = {}
        if reply["credits"] is not None:
            headers["x-remaining-credits"] = reply["credits"]
        if reply["retry_after"] is not None:
            headers["retry-after"] = reply["retry_after"]
        if reply["content_type"]:
            headers["content-type"] = reply["content_type"]
        return httpx.Response(reply["status"], content=reply["body"], headers=headers)

    return lk.Client(
        "SG_fuzz_layers_key",
        base_url="https://api.segmind.invalid/v1",
        transport=httpx.MockTransport(handler),
        retry_policy=RetryPolicy(max_retries=0),
        check_context=False,
    )


@FUZZ
@given(reply=REPLY)
def test_any_reply_is_a_chat_response_or_a_typed_error(reply: dict[str, Any]) -> None:
    """Response parsing: whatever a server (or a proxy in front of it) answers."""
    FUZZED["replies"] += 1
    with _mock_client(reply) as client:
        try:
            r = client.chat("hi", max_tokens=8)
        except APIStatusError as exc:
            assert exc.status == reply["status"] and str(exc)
        except APIError as exc:
            assert str(exc)
        else:
            assert reply["status"] < 300 and isinstance(r, ChatResponse) and isinstance(r.text, str)
            assert r.credits_remaining is None or math.isfinite(r.credits_remaining)
        try:
            value = client.credits()
        except APIError as exc:
            assert str(exc)
        else:
            assert math.isfinite(value)


@pytest.fixture
def real_client(fuzz_server: Any) -> Any:
    with fuzz_server.client(max_retries=0) as client:
        yield client


@pytest.mark.parametrize("content", ["\ud800", "ok \udfff ok"])
def test_a_lone_surrogate_in_a_message_is_a_validation_error(
    real_client: Any, content: str
) -> None:
    with pytest.raises(ValidationError):
        real_client.chat([{"role": "user", "content": content}], max_tokens=8)


@pytest.mark.parametrize(
    "template,row",
    [
        ("{{ a / b }}", {"a": [1], "b": [2]}),
        ("{{ q|int }}", {"q": math.inf}),
        ("{{ a + b }}", {"a": 1, "b": "x"}),
    ],
)
def test_a_template_runtime_error_is_a_validation_error(template: str, row: dict[str, Any]) -> None:
    (t,) = parse_prompts(template)
    with pytest.raises(ValidationError):
        t.render(row, item_id="7")


@FUZZ
@given(messages=MESSAGES, params=PARAMS)
def test_any_call_over_real_http_is_a_reply_or_a_typed_error(
    fuzz_server: Any, real_client: Any, messages: Any, params: dict[str, Any]
) -> None:
    """Client validation in front of the real server: whatever gets past the client is either
    answered or refused by the server with a documented status, and surfaces as a typed error."""
    FUZZED["client calls"] += 1
    try:
        r = real_client.chat(messages, **params)
    except ValidationError as exc:
        assert exc.field
    except APIStatusError as exc:
        assert exc.status in (413, 422), (exc.status, str(exc))
    else:
        assert isinstance(r.text, str)
    assert "500" not in fuzz_server.stats()["requests"]
