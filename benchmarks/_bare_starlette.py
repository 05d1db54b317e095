"""The floor for the stand-in server: a bare Starlette app under the same uvicorn, same JSON.

It reads and parses the request body (any server must) and answers every ``POST /v1/{slug}`` with a
``chat.completion`` object of the same shape and about the same size as ``llamakit serve
--backend scripted`` sends, built per request (fresh id and timestamp) as llamakit builds it. No
auth, no validation, no tokenizer, no ledger: what is left is the cost of uvicorn (h11 on asyncio,
as llamakit serve runs it), Starlette's routing and JSON in and out, on this machine.

Usage: ``python benchmarks/_bare_starlette.py [--port 0]``; prints ``bare starlette: <url>`` once
it listens. Run by ``server_throughput.py`` side by side with ``llamakit serve``.
"""

from __future__ import annotations

import argparse
import json
import socket
import time
import uuid
from typing import Any

# What the scripted backend answers to the benchmark's prompts at max_tokens=16.
REPLY = "Here is a concise answer about the sea. Start from a concrete example, then general"


async def chat(request: Any) -> Any:
    from starlette.responses import JSONResponse

    json.loads(await request.body())
    slug = request.path_params["slug"]
    return JSONResponse(
        {
            "id": str(uuid.uuid4()),
            "object": "chat.completion",
            "created": int(time.time()),
            "model": slug,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": REPLY},
                    "finish_reason": "length",
                }
            ],
            "usage": {"prompt_tokens": 19, "completion_tokens": 16, "total_tokens": 35},
        },
        headers={"x-remaining-credits": "999999.37", "x-request-id": str(uuid.uuid4())},
    )


def main() -> None:
    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Route

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    app = Starlette(routes=[Route("/v1/{slug}", chat, methods=["POST"])])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", args.port))
    sock.listen(128)
    host, port = sock.getsockname()[:2]
    print(f"bare starlette: http://{host}:{port}", flush=True)
    # h11 explicitly: the parser llamakit serve's guarded protocol is built on.
    config = uvicorn.Config(app, http="h11", log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
