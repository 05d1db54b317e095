"""Third-party clients work unmodified: the official `segmind` SDK 1.3.0 and the `openai` package."""

from __future__ import annotations

from decimal import Decimal

import httpx
import openai
import pytest
from segmind import SegmindClient
from segmind.exceptions import SegmindError

from .server_helpers import SLUG, ssl_context

MESSAGES = [{"role": "user", "content": "What is 6 * 7?"}]


@pytest.fixture
def sdk(shared):
    client = SegmindClient(api_key=shared.api_key, base_url=shared.url + "/v1")
    yield client
    client._client.close()


def test_sdk_chat_sync_v1(sdk):
    r = sdk.chat_sync(SLUG, messages=MESSAGES, max_tokens=50)
    assert r.text == "6 * 7 = 42"
    assert r.finish_reason == "stop"
    assert r.usage["total_tokens"] == r.usage["prompt_tokens"] + r.usage["completion_tokens"]


def test_sdk_chat_goes_through_v2(sdk, shared):
    before = shared.stats()["requests"]
    r = sdk.chat(SLUG, messages=MESSAGES)
    assert r.text == "6 * 7 = 42"
    after = shared.stats()["requests"]
    # submit + at least one status poll + the result fetch
    assert after["200"] - before["200"] >= 3


def test_sdk_prompt_field(sdk):
    assert sdk.chat_sync(SLUG, prompt="What is 1 + 1?").text == "1 + 1 = 2"


def test_sdk_run_sync_exposes_the_credits_header(sdk, shared):
    r = sdk.run_sync(SLUG, messages=MESSAGES)
    assert r.status_code == 200
    assert Decimal(r.headers["x-remaining-credits"]) == shared.balance()


@pytest.mark.parametrize(
    ("make", "status"),
    [
        (
            lambda url, key: SegmindClient(api_key="SG_wrong", base_url=url).chat_sync(
                SLUG, messages=MESSAGES
            ),
            401,
        ),
        (
            lambda url, key: SegmindClient(api_key=key, base_url=url).chat_sync(
                "no-such-model", messages=MESSAGES
            ),
            404,
        ),
        # The SDK only POSTs; POST on the GET-only balance route is the 405 it can meet.
        (
            lambda url, key: SegmindClient(api_key=key, base_url=url).run_sync("get-user-credits"),
            405,
        ),
    ],
)
def test_sdk_errors_carry_the_status(shared, make, status):
    with pytest.raises(SegmindError) as info:
        make(shared.url + "/v1", shared.api_key)
    assert info.value.status == status
    assert isinstance(info.value.detail, str) and info.value.detail


def test_sdk_406_when_out_of_credits(make_server):
    srv = make_server(credits=0.0)
    client = SegmindClient(api_key=srv.api_key, base_url=srv.url + "/v1")
    with pytest.raises(SegmindError) as info:
        client.chat_sync(SLUG, messages=MESSAGES)
    assert info.value.status == 406
    assert "credits" in info.value.detail.lower()
    with pytest.raises(SegmindError) as info:
        client.chat(SLUG, messages=MESSAGES)  # v2 submit is refused the same way
    assert info.value.status == 406


def test_openai_client_gets_completions(shared):
    client = openai.OpenAI(
        api_key=shared.api_key,
        base_url=shared.url + "/v1",
        http_client=httpx.Client(verify=ssl_context()),
        max_retries=0,
    )
    r = client.chat.completions.create(model=SLUG, messages=MESSAGES, max_tokens=50)
    assert r.choices[0].message.content == "6 * 7 = 42"
    assert r.choices[0].finish_reason == "stop"
    assert r.usage.total_tokens > 0
    cut = client.chat.completions.create(
        model=SLUG, messages=[{"role": "user", "content": "Describe the ocean"}], max_tokens=3
    )
    assert cut.choices[0].finish_reason == "length"
    assert cut.usage.completion_tokens <= 3
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(
            api_key="SG_wrong", base_url=shared.url + "/v1", max_retries=0
        ).chat.completions.create(model=SLUG, messages=MESSAGES)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
