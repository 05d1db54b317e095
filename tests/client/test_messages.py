"""Validation of messages and sampling parameters: every mistake named before any request."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from llamakit import Message, ValidationError
from llamakit.client.messages import KNOWN_PARAMS, ROLES, normalize_messages, validate_params


def test_string_is_one_user_turn() -> None:
    assert normalize_messages("hi") == [{"role": "user", "content": "hi"}]


def test_dicts_and_messages_mix() -> None:
    out = normalize_messages([Message("system", "be brief"), {"role": "user", "content": "hi"}])
    assert out == [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    assert normalize_messages(Message("user", "x")) == [{"role": "user", "content": "x"}]


@pytest.mark.parametrize(
    ("messages", "field"),
    [
        ([], "messages"),
        (None, "messages"),
        ({"role": "user", "content": "hi"}, "messages"),
        (b"bytes", "messages"),
        (["hi"], "messages[0]"),
        ([{"role": "user", "content": "a"}, {"role": "robot", "content": "b"}], "messages[1].role"),
        ([{"role": "user"}], "messages[0].content"),
        ([{"content": "x"}], "messages[0].role"),
        ([{"role": "user", "content": 3}], "messages[0].content"),
        ([{"role": "user", "content": None}], "messages[0].content"),
        ([{"role": "user", "content": "x", "name": "bob"}], "messages[0].name"),
        ([{"role": "User", "content": "x"}], "messages[0].role"),
        ([{"role": "user", "content": "ok \udfff ok"}], "messages[0].content"),
        ("\ud800", "messages[0].content"),
    ],
)
def test_bad_messages_name_the_field(messages: object, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        normalize_messages(messages)
    assert info.value.field == field


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"temperature": 3}, "params.temperature"),
        ({"temperature": -0.1}, "params.temperature"),
        ({"temperature": "0.5"}, "params.temperature"),
        ({"temperature": True}, "params.temperature"),
        ({"temperature": math.nan}, "params.temperature"),
        ({"max_tokens": 0}, "params.max_tokens"),
        ({"max_tokens": 1.5}, "params.max_tokens"),
        ({"max_tokens": 10**6}, "params.max_tokens"),
        ({"top_p": 1.5}, "params.top_p"),
        ({"repetition_penalty": 0}, "params.repetition_penalty"),
        ({"n": 2}, "params.n"),
        ({"stop": ""}, "params.stop"),
        ({"stop": ["a", 1]}, "params.stop[1]"),
        ({"stop": ["a"] * 5}, "params.stop"),
        ({"stop": 7}, "params.stop"),
        ({"stop": "\ud800"}, "params.stop"),
        ({"stop": ["a", "\ud800"]}, "params.stop[1]"),
        ({"stream": True}, "params.stream"),
        ({"response_format": {"type": "yaml"}}, "params.response_format"),
        ({"max_token": 5}, "params.max_token"),
        ({"messages": []}, "params.messages"),
        ({"extra_body": [1]}, "params.extra_body"),
    ],
)
def test_bad_params_name_the_field(params: dict[str, object], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        validate_params(params)
    assert info.value.field == field


def test_typo_suggests_the_known_name() -> None:
    with pytest.raises(ValidationError, match="did you mean 'max_tokens'"):
        validate_params({"max_token": 5})


def test_good_params_pass_through() -> None:
    params = {
        "max_tokens": 64,
        "temperature": 0,
        "top_p": 0.9,
        "top_k": 40,
        "stop": ("\n",),
        "seed": 7,
        "presence_penalty": -1.5,
        "frequency_penalty": 0.5,
        "repetition_penalty": 1.1,
        "response_format": {"type": "json_object"},
        "stream": False,
        "extra_body": {"logprobs": True},
    }
    out = validate_params(params)
    assert out["stop"] == ["\n"] and out["logprobs"] is True and "stream" not in out
    assert out["max_tokens"] == 64 and out["temperature"] == 0


# ---- fuzzing: any input either normalizes to the wire shape or raises ValidationError -------

anything = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=5)
    | st.binary(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
# st.text() never yields lone surrogates; join single characters to get them too.
text_with_surrogates = st.lists(
    st.characters(codec=None, exclude_categories=()) | st.sampled_from(["\ud800", "\udfff"]),
    max_size=10,
).map("".join)
message_like = st.fixed_dictionaries(
    {
        "role": st.sampled_from([*ROLES, "tool", "", None, 1]),
        "content": st.text() | text_with_surrogates | anything,
    }
)


@given(st.one_of(anything, st.lists(message_like | anything, max_size=4), st.text()))
def test_fuzz_normalize_never_crashes(value: object) -> None:
    try:
        out = normalize_messages(value)
    except ValidationError as exc:
        assert exc.field and exc.field.startswith("messages")
        return
    assert out and all(set(m) == {"role", "content"} for m in out)
    assert all(m["role"] in ROLES and isinstance(m["content"], str) for m in out)


@given(st.dictionaries(st.sampled_from([*KNOWN_PARAMS, "bogus", "model"]), anything, max_size=4))
def test_fuzz_validate_params_never_crashes(params: dict[str, object]) -> None:
    try:
        out = validate_params(params)
    except ValidationError as exc:
        assert exc.field and exc.field.startswith("params.")
        return
    assert isinstance(out, dict)
