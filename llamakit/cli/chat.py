"""`llamakit chat "text"`: one turn with the model, then the credits left."""

from __future__ import annotations

import argparse
from typing import Any

from .args import nonempty_name, nonempty_text, sampling_param


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "chat",
        help="send one message and print the reply and the credits left",
        description="Send one message (hosted API if SEGMIND_API_KEY is set, else a local server).",
    )
    parser.add_argument("text", type=nonempty_text, help="the user message")
    parser.add_argument("--system", help="a system prompt")
    parser.add_argument(
        "--max-tokens",
        type=sampling_param("max_tokens", int),
        help="cap on the reply length, in tokens",
    )
    parser.add_argument(
        "--temperature",
        type=sampling_param("temperature", float),
        help="sampling temperature (0 to 2)",
    )
    parser.add_argument(
        "--model", type=nonempty_name, help="model slug (default llama-v3-8b-instruct)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..server.connect import connect

    messages = [{"role": "user", "content": args.text}]
    if args.system:
        messages.insert(0, {"role": "system", "content": args.system})
    params = {
        name: value
        for name, value in (("max_tokens", args.max_tokens), ("temperature", args.temperature))
        if value is not None
    }
    with connect(**({"model": args.model} if args.model else {})) as client:
        response = client.chat(messages, **params)
    print(response.text)
    left = "unknown" if response.credits_remaining is None else f"{response.credits_remaining:.6f}"
    print(f"credits left: {left}")
    return 0
