"""Prompt templates: each message's content is a Jinja2 template rendered with a dataset row.

Rendering is strict (a missing variable is an error, never an empty string), sandboxed and bounded
(a spec file shared by a colleague cannot reach Python internals through a template, nor render
gigabytes, nor loop for minutes): every template goes through ``sandbox``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..errors import ValidationError
from ..templating.sandbox import Template, compile_template

_ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class PromptTemplate:
    """One prompt variant: a list of (role, template source), compiled in the one sandbox."""

    variant: str
    messages: tuple[tuple[str, str], ...]  # (role, template source)
    # The variant's own sampling params (fixed values or lists to grid over), merged over the
    # experiment's params; None when it has none.
    params: Mapping[str, Any] | None = None

    @functools.cached_property
    def compiled(self) -> list[Template]:
        """Each message's template, compiled once (ValidationError if one is invalid)."""
        return [
            compile_template(
                source,
                where=f"prompt {self.variant!r} message {i}",
                field=f"prompts.{self.variant}[{i}].content",
            )
            for i, (_, source) in enumerate(self.messages)
        ]

    @property
    def variables(self) -> frozenset[str]:
        """The row fields the variant's messages read."""
        return frozenset().union(*(t.variables for t in self.compiled))

    def render(self, row: Mapping[str, Any], *, item_id: str) -> list[dict[str, str]]:
        """The chat messages for one row; ValidationError naming the variant, message and item."""
        return [
            {"role": role, "content": template.render(row, item_id=item_id)}
            for (role, _), template in zip(self.messages, self.compiled, strict=True)
        ]


def _parse_messages(variant: str, value: Any) -> tuple[tuple[str, str], ...]:
    if isinstance(value, str):
        return (("user", value),)
    if not isinstance(value, Sequence) or not value:
        raise ValidationError(
            f"prompt {variant!r} must be a template string or a non-empty list of messages, "
            f"got {type(value).__name__}",
            field=f"prompts.{variant}",
        )
    messages = []
    for i, message in enumerate(value):
        field = f"prompts.{variant}[{i}]"
        if isinstance(message, str):
            message = {"role": "user", "content": message}
        elif hasattr(message, "role") and hasattr(message, "content"):
            message = {"role": message.role, "content": message.content}
        if not isinstance(message, Mapping):
            raise ValidationError(f"{field} must be a dict with role and content", field=field)
        extra = set(message) - {"role", "content"}
        if extra:
            raise ValidationError(f"{field} has unknown keys {sorted(extra)}", field=field)
        role, content = message.get("role"), message.get("content")
        if role not in _ROLES:
            raise ValidationError(
                f"{field}.role must be one of {list(_ROLES)}, got {role!r}", field=f"{field}.role"
            )
        if not isinstance(content, str):
            raise ValidationError(
                f"{field}.content must be a template string", field=f"{field}.content"
            )
        messages.append((role, content))
    return tuple(messages)


def _split_params(variant: str, value: Any) -> tuple[Any, Mapping[str, Any] | None]:
    # {"messages": ..., "params": {...}}: a variant with sampling params of its own.
    if not isinstance(value, Mapping):
        return value, None
    extra = set(value) - {"messages", "params"}
    if "messages" not in value or extra:
        raise ValidationError(
            f"prompt {variant!r} as a mapping takes 'messages' (a template or message list) and "
            f"optionally 'params'; got keys {sorted(map(str, value))}",
            field=f"prompts.{variant}",
        )
    params = value.get("params")
    if params is not None and not isinstance(params, Mapping):
        raise ValidationError(
            f"prompts.{variant}.params must be a dict of sampling params, got "
            f"{type(params).__name__}",
            field=f"prompts.{variant}.params",
        )
    return value["messages"], (dict(params) if params else None)


def parse_prompts(prompts: Any) -> list[PromptTemplate]:
    """Variant name -> template(s); a single string or message list becomes variant "default".

    A variant may carry sampling params of its own: ``{"messages": template_or_list,
    "params": {"max_tokens": 256}}``; the experiment merges them over its params grid.

    Every template is compiled here, so a syntax error is reported before any call.
    """
    if isinstance(prompts, str) or (
        isinstance(prompts, Sequence) and not isinstance(prompts, Mapping)
    ):
        prompts = {"default": prompts}
    if not isinstance(prompts, Mapping) or not prompts:
        raise ValidationError(
            "prompts must be a non-empty dict of variant name -> template", field="prompts"
        )
    templates = []
    for variant, value in prompts.items():
        if not isinstance(variant, str) or not variant:
            raise ValidationError(
                f"prompt variant names must be non-empty strings: {variant!r}", field="prompts"
            )
        value, params = _split_params(variant, value)
        template = PromptTemplate(variant, _parse_messages(variant, value), params)
        template.compiled  # noqa: B018 (compiling reports a bad template now)
        templates.append(template)
    return templates
