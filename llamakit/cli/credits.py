"""`llamakit credits`: the balance (credits + free credits) of the key in use."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "credits",
        help="print the credit balance",
        description="Print the balance from GET /v1/get-user-credits (free, never billed).",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..server.connect import connect

    with connect() as client:
        balance = client.credits()
    print(f"{balance:.6f}")
    return 0
