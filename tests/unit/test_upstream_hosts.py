"""security.allowed_upstream_hosts: which api_base hosts a deployment may use."""

from __future__ import annotations

from typing import Any

import pytest

from sluicegate.settings import ConfigError, settings_from_mapping
from sluicegate.settings_security import SecuritySettings, upstream_host

ALLOWED = ["api.anthropic.com", "*.openai.azure.com", "127.0.0.1", "[::1]", "Local.Test."]


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://api.anthropic.com", True),
        ("https://API.Anthropic.com./v1", True),
        ("https://api.anthropic.com:8443/prefix", True),
        ("https://east.openai.azure.com/openai", True),
        ("https://a.b.openai.azure.com", True),
        ("https://openai.azure.com", False),  # the pattern is for names below it only
        ("https://evilopenai.azure.com", False),
        ("https://api.anthropic.com.evil.test", False),
        ("https://evil.test/api.anthropic.com", False),
        ("https://api.anthropic.com@evil.test", False),  # userinfo: the host is evil.test
        ("https://evil.test@api.anthropic.com", True),  # ...and here api.anthropic.com
        ("https://evil.test%2F@api.anthropic.com", True),
        ("http://127.0.0.1:8080", True),
        ("http://127.0.0.2", False),
        ("http://[::1]:9000", True),
        ("http://local.test", True),
        ("http://xn--bcher-kva.example", False),
        ("not a url", False),
    ],
)
def test_allows(url: str, allowed: bool) -> None:
    assert SecuritySettings(allowed_upstream_hosts=ALLOWED).allows(url) is allowed


def test_empty_list_allows_any_host() -> None:
    assert SecuritySettings().allows("https://anything.example")
    assert SecuritySettings().refusal("https://anything.example") is None


def test_host_is_what_the_http_client_connects_to() -> None:
    assert upstream_host("https://bücher.example/v1") == "xn--bcher-kva.example"
    assert upstream_host("http://[::1]:80/x") == "::1"
    assert upstream_host("http://x:99999") is None


@pytest.mark.parametrize("bad", ["", "http://x.test", "a b", "*.", "*", "x/y", "ex*ample.com"])
def test_patterns_are_validated(bad: str) -> None:
    with pytest.raises(ConfigError, match="allowed_upstream_hosts"):
        settings_from_mapping({"security": {"allowed_upstream_hosts": [bad]}})


def _config(api_base: str, **extra: Any) -> dict[str, Any]:
    return {
        "security": {"allowed_upstream_hosts": ["api.anthropic.com", "*.corp.test"]},
        "model_list": [
            {"model_name": "ok", "provider": "anthropic", "api_base": "https://x.corp.test"},
            {"model_name": "bad-one", "provider": "anthropic", "api_base": api_base, **extra},
        ],
    }


def test_config_entries_outside_the_list_are_config_errors_naming_the_entry() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(_config("https://attacker.test/v1"))
    message = str(caught.value)
    assert "model_list[1].api_base (bad-one)" in message
    assert "'attacker.test' is not in security.allowed_upstream_hosts" in message
    # The built-in fake runs inside the gateway: no host to allow.
    settings_from_mapping(_config("builtin:fake"))
    settings_from_mapping(_config("https://api.anthropic.com"))
