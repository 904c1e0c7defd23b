"""The OpenAI surface's doors: credential forms, paths with and without ``/v1``, and the
model list in OpenAI's shape (Anthropic's when the request carries ``anthropic-version``)."""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from sluicegate.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_harness import Gateway
from tests.integration.test_anthropic_support import API_VERSION, raw_request
from tests.integration.test_openai_support import openai_client, post_chat

BODY = {"model": "claude-sonnet-4-6", "messages": [{"role": "user", "content": "hi"}]}


@pytest.mark.parametrize(
    "credential",
    [
        pytest.param(lambda key: {"authorization": f"Bearer {key}"}, id="bearer"),
        pytest.param(lambda key: {"x-api-key": key}, id="x-api-key"),
        pytest.param(lambda key: {"authorization": f"Bearer {key}", "x-api-key": key}, id="both"),
    ],
)
def test_credential_forms(
    gateway: Gateway, fake: FakeUpstream, credential: Callable[[str], dict[str, str]]
) -> None:
    fake.script(Behaviour(text="welcome"))
    headers = {"content-type": "application/json", **credential(gateway.keys["full"])}
    response = raw_request(
        gateway.url, "POST", "/v1/chat/completions", json.dumps(BODY).encode(), headers
    )

    assert response.status == 200, response.body
    assert response.json()["choices"][0]["message"]["content"] == "welcome"
    assert fake.call_count() == 1


def test_no_credentials(gateway: Gateway, fake: FakeUpstream) -> None:
    response = raw_request(
        gateway.url,
        "POST",
        "/v1/chat/completions",
        json.dumps(BODY).encode(),
        {"content-type": "application/json"},
    )
    assert response.status == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
    assert fake.call_count() == 0


def test_path_without_v1(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="bare host"))
    completion = openai_client(gateway, v1=False).chat.completions.create(
        model="claude-sonnet-4-6", messages=[{"role": "user", "content": "hi"}]
    )
    assert completion.choices[0].message.content == "bare host"
    assert fake.calls[-1].route == "messages"


def test_query_string_is_ignored_for_routing(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(text="with query"))
    response = post_chat(gateway, BODY, path="/v1/chat/completions?api-version=2024-10-21")
    assert response.status == 200
    assert response.json()["choices"][0]["message"]["content"] == "with query"


def test_models_openai_shape(gateway: Gateway, fake: FakeUpstream) -> None:
    page = openai_client(gateway).models.list()
    ids = [m.id for m in page.data]

    assert "claude-sonnet-4-6" in ids
    assert "gpt-4o-mini" in ids
    assert "team-alias" in ids
    assert len(ids) == len(set(ids))
    assert all(m.object == "model" for m in page.data)
    assert all(isinstance(m.created, int) and isinstance(m.owned_by, str) for m in page.data)
    assert fake.call_count() == 0  # answered by the gateway itself

    raw = raw_request(
        gateway.url,
        "GET",
        "/v1/models",
        headers={"authorization": f"Bearer {gateway.keys['full']}"},
    )
    assert raw.status == 200
    body = raw.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ids
    assert "has_more" not in body


def test_models_without_v1(gateway: Gateway, fake: FakeUpstream) -> None:
    page = openai_client(gateway, v1=False).models.list()
    assert "claude-sonnet-4-6" in [m.id for m in page.data]


def test_models_follow_the_key_allow_list(gateway: Gateway, fake: FakeUpstream) -> None:
    ids = [m.id for m in openai_client(gateway, key=gateway.keys["limited"]).models.list().data]
    assert "claude-sonnet-4-6" in ids
    assert "team-alias" in ids
    assert "gpt-4o-mini" not in ids


def test_models_with_anthropic_version_use_anthropic_shape(
    gateway: Gateway, fake: FakeUpstream
) -> None:
    response = raw_request(
        gateway.url,
        "GET",
        "/v1/models?limit=1000",
        headers={"x-api-key": gateway.keys["full"], "anthropic-version": API_VERSION},
    )
    assert response.status == 200
    body = response.json()
    assert "object" not in body
    assert isinstance(body["has_more"], bool)
    assert body["first_id"] == body["data"][0]["id"]
    assert all(m["type"] == "model" for m in body["data"])
    assert all("display_name" in m and "created_at" in m for m in body["data"])


def test_models_wrong_key_openai_shape(gateway: Gateway, fake: FakeUpstream) -> None:
    response = raw_request(
        gateway.url, "GET", "/v1/models", headers={"authorization": "Bearer sk-wrong"}
    )
    assert response.status == 401
    assert set(response.json()) == {"error"}
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}
