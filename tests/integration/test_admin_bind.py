"""Where the admin API is served: under ``/admin`` (and at the root unless
``admin.root_paths: false``) on the API port, or with ``admin.port`` only on a listener of
its own, in every ``--workers`` process (SO_REUSEPORT)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anthropic
import pytest

from sluicegate.fake_upstream import FakeUpstream
from tests.gateway_harness import ADMIN_TOKEN, Gateway, free_port, start_gateway
from tests.integration.admin_http import send

SERVER = {"key_sync_interval": 0.5, "max_body_size": "1MiB", "log_level": "info"}


@pytest.fixture(scope="module")
def own_port(
    upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Gateway, str]]:
    port = free_port()
    gateway = start_gateway(
        tmp_path_factory.mktemp("admin-bind"),
        upstream,
        extra_config={"admin": {"host": "127.0.0.1", "port": port}},
    )
    yield gateway, f"http://127.0.0.1:{port}"
    gateway.stop()


ADMIN_GETS = ["/admin/key/list", "/key/list", "/admin/partner/list", "/admin/audit/list",
              "/admin/openapi.json", "/openapi.json"]  # fmt: skip


@pytest.mark.parametrize("path", ADMIN_GETS)
def test_admin_port_serves_the_admin_api(own_port: tuple[Gateway, str], path: str) -> None:
    _, admin_url = own_port
    status, body, headers = send(admin_url, "GET", path, token=ADMIN_TOKEN)
    assert status == 200, body
    assert headers["request-id"].startswith("req_")


@pytest.mark.parametrize("path", ADMIN_GETS)
def test_api_port_no_longer_serves_it(own_port: tuple[Gateway, str], path: str) -> None:
    gateway, _ = own_port
    status, body, _ = send(gateway.url, "GET", path, token=ADMIN_TOKEN)
    assert status == 404 and body["error"]["type"] == "not_found_error"
    status, _, _ = send(gateway.url, "POST", path, {}, token=ADMIN_TOKEN)
    assert status == 404


def test_admin_port_serves_nothing_else(own_port: tuple[Gateway, str]) -> None:
    _, admin_url = own_port
    for method, path in (("POST", "/v1/messages"), ("GET", "/health/readiness"),
                         ("GET", "/metrics"), ("POST", "/v1/chat/completions")):  # fmt: skip
        status, body, _ = send(admin_url, method, path, {} if method == "POST" else None)
        assert status == 404 and body["type"] == "error", path
    status, body, _ = send(admin_url, "DELETE", "/admin/key/list", token=ADMIN_TOKEN)
    assert status == 405 and body["error"]["type"] == "invalid_request_error"
    assert send(admin_url, "GET", "/admin/key/list")[0] == 401  # still needs a token


def test_keys_made_on_the_admin_port_work_on_the_api_port(
    own_port: tuple[Gateway, str], fake: FakeUpstream
) -> None:
    gateway, admin_url = own_port
    status, made, _ = send(
        admin_url, "POST", "/admin/key/generate", {"key_alias": "bound"}, token=ADMIN_TOKEN
    )
    assert status == 200
    client = anthropic.Anthropic(base_url=gateway.url, api_key=made["key"], max_retries=0)
    message = client.messages.create(
        model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
    assert "You said: hi" in message.content[0].text  # type: ignore[union-attr]
    # An SDK pointed at the admin port finds no API there.
    stray = anthropic.Anthropic(base_url=admin_url, api_key=made["key"], max_retries=0)
    with pytest.raises(anthropic.NotFoundError):
        stray.messages.create(
            model="claude-sonnet-4-6", max_tokens=8, messages=[{"role": "user", "content": "x"}]
        )


def test_every_worker_serves_the_admin_port(
    upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    port = free_port()
    gateway = start_gateway(
        tmp_path_factory.mktemp("admin-workers"),
        upstream,
        extra_config={"server": {**SERVER, "workers": 2}, "admin": {"port": port}},
    )
    admin_url = f"http://127.0.0.1:{port}"
    try:
        with ThreadPoolExecutor(8) as pool:
            statuses = list(
                pool.map(
                    lambda n: send(
                        admin_url,
                        "POST",
                        "/admin/partner/new",
                        {"name": f"worker-{n}"},
                        token=ADMIN_TOKEN,
                    )[0],
                    range(40),
                )
            )
        assert statuses == [200] * 40
        _, listed, _ = send(admin_url, "GET", "/admin/partner/list", token=ADMIN_TOKEN)
        assert len(listed["partners"]) == 40
        assert send(gateway.url, "GET", "/admin/partner/list", token=ADMIN_TOKEN)[0] == 404
        assert "cannot listen" not in gateway.log_text()
    finally:
        gateway.stop()
    assert gateway.process.returncode == 0


def test_root_paths_can_be_turned_off(
    upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    gateway = start_gateway(
        tmp_path_factory.mktemp("admin-no-root"),
        upstream,
        extra_config={"admin": {"root_paths": False}},
    )
    try:
        assert send(gateway.url, "GET", "/admin/key/list", token=ADMIN_TOKEN)[0] == 200
        for path in ("/key/list", "/openapi.json", "/partner/list"):
            status, body, _ = send(gateway.url, "GET", path, token=ADMIN_TOKEN)
            assert status == 404 and body["error"]["type"] == "not_found_error"
        _, document, _ = send(gateway.url, "GET", "/admin/openapi.json")
        assert "/admin/key/generate" in document["paths"]
    finally:
        gateway.stop()
    assert gateway.process.returncode == 0


def test_a_taken_admin_port_stops_the_start(
    upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        workdir = Path(tmp_path_factory.mktemp("admin-taken"))
        with pytest.raises(RuntimeError, match="gateway exited early"):
            start_gateway(workdir, upstream, extra_config={"admin": {"port": port}})
        assert (
            f"admin.port: cannot listen on 127.0.0.1:{port}"
            in (workdir / "gateway.log").read_text()
        )
