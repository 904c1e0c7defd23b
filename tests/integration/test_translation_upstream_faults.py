"""An upstream answer that cannot be translated is the upstream's fault: 502, never a 500."""

from __future__ import annotations

import anthropic
import pytest

from sluicegate.fake_upstream import Behaviour, FakeUpstream
from tests.gateway_harness import Gateway


def test_completion_without_choices_is_a_bad_gateway(gateway: Gateway, fake: FakeUpstream) -> None:
    fake.script(Behaviour(route="chat_completions", body={"id": "chatcmpl-x", "choices": []}))
    client = anthropic.Anthropic(base_url=gateway.url, api_key=gateway.keys["full"], max_retries=0)
    with pytest.raises(anthropic.APIStatusError) as caught:
        client.messages.create(
            model="gpt-4o-mini", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )
    assert caught.value.status_code == 502
    assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert "choice" in caught.value.body["error"]["message"]  # type: ignore[index]
    assert fake.call_count() == 1
