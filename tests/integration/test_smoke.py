import anthropic

from sluicegate.fake_upstream import FakeUpstream
from tests.gateway_harness import UPSTREAM_KEY, Gateway


def test_sdk_roundtrip_reaches_upstream_with_provider_key(
    gateway: Gateway, fake: FakeUpstream
) -> None:
    client = anthropic.Anthropic(base_url=gateway.url, api_key=gateway.keys["full"], max_retries=0)
    message = client.messages.create(
        model="claude-sonnet-4-6", max_tokens=32, messages=[{"role": "user", "content": "ping"}]
    )
    assert "You said: ping" in message.content[0].text  # type: ignore[union-attr]
    assert fake.call_count() == 1
    sent = fake.calls[0]
    assert sent.headers["x-api-key"] == UPSTREAM_KEY
    assert gateway.keys["full"] not in str(sent.headers)
