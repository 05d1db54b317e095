"""The Llama 3 Instruct chat template, written out in Python.

Meta's ``tokenizer_config.json`` for Meta-Llama-3-8B-Instruct ships this Jinja template::

    {% set loop_messages = messages %}{% for message in loop_messages %}
    {% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'
                     + message['content'] | trim + '<|eot_id|>' %}
    {% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}
    {{ content }}{% endfor %}
    {% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}

Jinja's ``trim`` filter is Python's ``str.strip()`` and binds tighter than ``+``, so only the
content is stripped, never the role. ``<|begin_of_text|>`` is only emitted together with the first
message, so an empty conversation renders as the bare generation prompt. We always add the
generation prompt because every request asks the model for the next assistant turn.

This module only turns messages into that string (and into its parts); counting is
``llamakit.tokens``'s job.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from ..errors import ValidationError

BOS = "<|begin_of_text|>"
START_HEADER = "<|start_header_id|>"
END_HEADER = "<|end_header_id|>"
EOT = "<|eot_id|>"
HEADER_SEPARATOR = "\n\n"
GENERATION_PROMPT = f"{START_HEADER}assistant{END_HEADER}{HEADER_SEPARATOR}"


class HasRoleContent(Protocol):
    """Anything with ``role`` and ``content`` attributes, such as ``llamakit.Message``."""

    @property
    def role(self) -> str: ...

    @property
    def content(self) -> Any: ...


MessageLike = Mapping[str, Any] | HasRoleContent
#: What every token function accepts: a bare prompt (one user turn) or a list of messages.
MessagesLike = str | Sequence[MessageLike]


def as_pairs(messages: MessagesLike) -> list[tuple[str, str]]:
    """Return ``(role, content)`` pairs, content already trimmed the way the template trims it.

    Raises ``ValidationError`` (field ``messages[i].role`` / ``messages[i].content``) for a
    message the template cannot render, so a bad prompt fails before anything is sent.
    """
    if isinstance(messages, str):
        return [("user", messages.strip())]
    if hasattr(messages, "role") and hasattr(messages, "content"):
        return [_pair(0, messages)]  # a single Message
    if isinstance(messages, Mapping) or not isinstance(messages, Iterable):
        raise ValidationError(
            "messages must be a string or a list of messages with role and content",
            field="messages",
        )
    return [_pair(i, message) for i, message in enumerate(messages)]


def _pair(index: int, message: Any) -> tuple[str, str]:
    if isinstance(message, Mapping):
        role, content = message.get("role"), message.get("content")
    else:
        role, content = getattr(message, "role", None), getattr(message, "content", None)
    if not isinstance(role, str) or not role:
        raise ValidationError(
            f"message {index} needs a non-empty string role, got {role!r}",
            field=f"messages[{index}].role",
        )
    return role, _text(index, content).strip()


def _text(index: int, content: Any) -> str:
    if isinstance(content, str):
        return content
    # OpenAI-style content parts: the provider flattens text parts before templating. vLLM joins
    # them with a newline for string-content templates such as Llama 3's; we do the same.
    if isinstance(content, list) and all(
        isinstance(part, Mapping)
        and part.get("type") == "text"
        and isinstance(part.get("text"), str)
        for part in content
    ):
        return "\n".join(part["text"] for part in content)
    raise ValidationError(
        f"message {index} content must be a string or a list of text parts, "
        f"got {type(content).__name__}",
        field=f"messages[{index}].content",
    )


def render(messages: MessagesLike) -> str:
    """The exact prompt string the model is given, special tokens included."""
    pairs = as_pairs(messages)
    turns = "".join(
        f"{START_HEADER}{role}{END_HEADER}{HEADER_SEPARATOR}{content}{EOT}"
        for role, content in pairs
    )
    return (BOS if pairs else "") + turns + GENERATION_PROMPT
