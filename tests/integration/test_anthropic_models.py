"""``GET /v1/models`` on the Anthropic surface: list shape, pagination, per-key filtering."""

from __future__ import annotations

from datetime import datetime

import anthropic
import pytest

from sluicegate.fake_upstream import FakeUpstream
from tests.gateway_harness import Gateway
from tests.integration.test_anthropic_support import (
    API_VERSION,
    RawResponse,
    assert_gateway_error,
    raw_request,
    sdk,
)

CONFIGURED_EXACT = {"claude-sonnet-4-6", "team-alias", "slow-model", "prefixed", "unreachable"}


def get_models(gateway: Gateway, query: str = "", **headers: str) -> RawResponse:
    sent = {"anthropic-version": API_VERSION, **headers}
    return raw_request(gateway.url, "GET", "/v1/models" + query, headers=sent)


def assert_model_list(body: dict[str, object]) -> list[str]:
    assert set(body) >= {"data", "has_more", "first_id", "last_id"}, body
    data = body["data"]
    assert isinstance(data, list) and data
    ids = []
    for model in data:
        assert model["type"] == "model"
        assert isinstance(model["id"], str) and model["id"]
        assert isinstance(model["display_name"], str) and model["display_name"]
        datetime.fromisoformat(model["created_at"].replace("Z", "+00:00"))
        ids.append(model["id"])
    assert len(ids) == len(set(ids))
    assert body["first_id"] == ids[0]
    assert body["last_id"] == ids[-1]
    assert isinstance(body["has_more"], bool)
    return ids


def test_models_list_with_x_api_key(gateway: Gateway, fake: FakeUpstream) -> None:
    response = get_models(gateway, "?limit=1000", **{"x-api-key": gateway.keys["full"]})

    assert response.status == 200, response.body
    assert response.headers["content-type"].startswith("application/json")
    assert response.request_id.startswith("req_")
    body = response.json()
    ids = assert_model_list(body)
    assert body["has_more"] is False
    assert set(ids) >= CONFIGURED_EXACT
    # The claude-* route advertises concrete ids (what Claude Code keeps), never the pattern.
    assert "claude-haiku-4-5" in ids
    assert not any("*" in i for i in ids)
    display = {m["id"]: m["display_name"] for m in body["data"]}
    assert display["claude-sonnet-4-6"] == "Claude Sonnet 4.6"
    assert fake.call_count() == 0  # answered by the gateway, no provider round trip


def test_models_list_with_bearer(gateway: Gateway) -> None:
    response = get_models(gateway, authorization=f"Bearer {gateway.keys['full']}")
    assert response.status == 200
    assert_model_list(response.json())


def test_limited_key_sees_only_its_models(gateway: Gateway) -> None:
    response = get_models(gateway, "?limit=1000", **{"x-api-key": gateway.keys["limited"]})

    assert response.status == 200
    ids = assert_model_list(response.json())
    assert sorted(ids) == ["claude-sonnet-4-6", "team-alias"]


def test_limit_and_pagination(gateway: Gateway) -> None:
    key = {"x-api-key": gateway.keys["full"]}
    everything = assert_model_list(get_models(gateway, "?limit=1000", **key).json())

    first = get_models(gateway, "?limit=1", **key).json()
    assert [m["id"] for m in first["data"]] == everything[:1]
    assert first["has_more"] is True
    assert first["first_id"] == first["last_id"] == everything[0]

    following = get_models(gateway, f"?limit=2&after_id={everything[0]}", **key).json()
    assert [m["id"] for m in following["data"]] == everything[1:3]


def test_sdk_lists_models_with_auto_pagination(gateway: Gateway) -> None:
    client = sdk(gateway)
    everything = [m.id for m in client.models.list(limit=1000)]
    paged = [m.id for m in client.models.list(limit=3)]  # follows after_id page by page

    assert paged == everything
    assert "claude-sonnet-4-6" in everything
    limited = [m.id for m in sdk(gateway, gateway.keys["limited"]).models.list()]
    assert sorted(limited) == ["claude-sonnet-4-6", "team-alias"]


@pytest.mark.parametrize("credentials", [{}, {"x-api-key": "sk-sg-not-a-key-0000000000"}])
def test_models_need_a_key(gateway: Gateway, credentials: dict[str, str]) -> None:
    response = get_models(gateway, **credentials)
    assert_gateway_error(response, 401, "authentication_error")

    with pytest.raises(anthropic.AuthenticationError):
        sdk(gateway, key="sk-sg-not-a-key-0000000000").models.list()


def test_models_never_redirect(gateway: Gateway) -> None:
    key = {"x-api-key": gateway.keys["full"]}
    for query in ("", "?limit=1000", "?beta=true"):
        response = get_models(gateway, query, **key)
        assert response.status == 200, (query, response.status, response.headers)
        assert "location" not in response.headers
    trailing = raw_request(gateway.url, "GET", "/v1/models/", headers=key)
    assert trailing.status == 200
    assert "location" not in trailing.headers


@pytest.mark.parametrize("limit", ["0", "1001", "abc"])
def test_bad_limit_is_invalid_request(gateway: Gateway, limit: str) -> None:
    response = get_models(gateway, f"?limit={limit}", **{"x-api-key": gateway.keys["full"]})
    assert_gateway_error(response, 400, "invalid_request_error")
