"""Master-key rotation under live traffic (issue 7 §2 and §6): no request fails.

A gateway reads its master keys from a key file holding key1, and serves two models whose
provider key is a stored credential (one named by a config-file entry, one a deployment made
through the admin API). While several clients (the anthropic SDK and raw HTTP, streaming and
not) send requests without pause, the operator's procedure runs: the key file becomes
key2 + key1, ``sluicegate secrets rotate`` re-wraps every stored value, the key file becomes
key2 alone, and traffic goes on past a reload interval; then the gateway restarts with key2
alone and serves more. Every request must succeed, the fake provider (which checks its key)
must have seen the right key on every call, and every stored row must be wrapped by key2.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anthropic
import pytest

from sluicegate.crypto.envelope import Keyring, generate_master_key, parse_master_key
from sluicegate.fake_upstream import FakeUpstream
from tests.gateway_harness import ADMIN_TOKEN, Gateway, running_fake, start_gateway
from tests.integration.test_anthropic_support import key_headers, message_body, raw_request

PROVIDER_KEY = "sk-ant-rotation-provider-4e1b9c7d2a0f"
KEY1 = generate_master_key()
KEY2 = generate_master_key()
SYNC_INTERVAL = 0.5
MODELS = ("cfg-model", "db-model")
CLIENTS = 4  # concurrent workers per model: SDK, SDK streaming, raw HTTP, raw HTTP streaming
MAX_REQUESTS_PER_WORKER = 2000  # a bound, far above what the phases take


def key_id(key: str) -> str:
    return Keyring(parse_master_key(key)).primary.id


def write_keys(path: Path, *keys: str) -> None:
    """Replace the key file in one step (a reader never sees it half-written)."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text("".join(f"{key}\n" for key in keys))
    os.replace(temporary, path)


@dataclass
class Traffic:
    """Clients that keep sending until stopped; every outcome is counted."""

    gateway_url: str
    key: str
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> None:
        kinds: list[Callable[[str], None]] = [
            self._sdk,
            self._sdk_stream,
            self._raw,
            self._raw_stream,
        ]
        for model in MODELS:
            for kind in kinds[:CLIENTS]:
                thread = threading.Thread(target=self._loop, args=(kind, model), daemon=True)
                thread.start()
                self._threads.append(thread)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=60)
        assert not any(t.is_alive() for t in self._threads)

    def _loop(self, kind: Callable[[str], None], model: str) -> None:
        for _ in range(MAX_REQUESTS_PER_WORKER):
            if self._stop.is_set():
                return
            try:
                kind(model)
            except Exception as exc:  # every failure is recorded, none may happen
                with self._lock:
                    self.failures.append(f"{kind.__name__} {model}: {type(exc).__name__}: {exc}")
            else:
                with self._lock:
                    self.ok += 1

    def _client(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(
            base_url=self.gateway_url, api_key=self.key, max_retries=0, timeout=30
        )

    def _sdk(self, model: str) -> None:
        message = self._client().messages.create(
            model=model, max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
        assert "You said: hi" in message.content[0].text  # type: ignore[union-attr]

    def _sdk_stream(self, model: str) -> None:
        with self._client().messages.stream(
            model=model, max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        ) as stream:
            assert "You said: hi" in stream.get_final_text()

    def _raw(self, model: str) -> None:
        response = raw_request(
            self.gateway_url,
            "POST",
            "/v1/messages",
            json.dumps(message_body(model, "hi")).encode(),
            key_headers(self.key),
        )
        assert response.status == 200, response.body[:300]
        assert "You said: hi" in json.loads(response.body)["content"][0]["text"]

    def _raw_stream(self, model: str) -> None:
        response = raw_request(
            self.gateway_url,
            "POST",
            "/v1/messages",
            json.dumps(message_body(model, "hi", stream=True)).encode(),
            key_headers(self.key),
        )
        assert response.status == 200, response.body[:300]
        assert b"event: message_stop" in response.body, response.body[-300:]
        assert b"event: error" not in response.body, response.body[-300:]


def admin(gateway: Gateway, path: str, body: dict[str, Any]) -> dict[str, Any]:
    headers = {
        "content-type": "application/json",
        "authorization": f"Bearer {ADMIN_TOKEN}",
    }
    response = raw_request(gateway.url, "POST", path, json.dumps(body).encode(), headers)
    assert response.status == 200, response.body[:300]
    result: dict[str, Any] = json.loads(response.body)
    return result


def wait_served(gateway: Gateway, key: str, model: str) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        response = raw_request(
            gateway.url,
            "POST",
            "/v1/messages",
            json.dumps(message_body(model)).encode(),
            key_headers(key),
        )
        if response.status == 200:
            return
        time.sleep(0.1)
    raise AssertionError(f"{model} not served in time:\n{gateway.log_text()[-3000:]}")


def stored_key_ids(database: Path) -> list[str]:
    with sqlite3.connect(database) as conn:
        rows = conn.execute(
            "SELECT master_key_id FROM provider_credentials "
            "UNION ALL SELECT master_key_id FROM signing_keys"
        ).fetchall()
    return [row[0] for row in rows]


@pytest.fixture
def provider() -> Iterator[FakeUpstream]:
    with running_fake(PROVIDER_KEY) as fake:  # any other key: a 401, a failed request
        yield fake


def test_rotation_under_live_traffic_fails_no_request(
    provider: FakeUpstream, tmp_path: Path
) -> None:
    key_file = tmp_path / "master.keys"
    write_keys(key_file, KEY1)
    models: list[dict[str, object]] = [
        {
            "model_name": "cfg-model",
            "provider": "anthropic",
            "api_base": provider.url,
            "credential": "provider-cfg",
        }
    ]
    extra = {
        "secrets": {"master_key_file": str(key_file)},
        "server": {"key_sync_interval": SYNC_INTERVAL, "log_level": "info"},
    }
    env = {"PROVIDER_SECRET": PROVIDER_KEY}
    workdir = tmp_path / "gateway"
    gateway = start_gateway(workdir, provider, model_list=models, extra_config=extra, env=env)
    try:
        key = gateway.create_key("traffic")
        # Credentials sealed under key1: one by the CLI, one through the admin API, which
        # also defines the second model.
        gateway.cli(
            "credentials",
            "set",
            "provider-cfg",
            "--provider",
            "anthropic",
            "--from-env",
            "PROVIDER_SECRET",
            "--config",
            str(gateway.config),
        )
        admin(
            gateway,
            "/credentials/new",
            {"credential_name": "provider-db", "provider": "anthropic", "api_key": PROVIDER_KEY},
        )
        admin(
            gateway,
            "/model/new",
            {
                "model_name": "db-model",
                "params": {
                    "provider": "anthropic",
                    "api_base": provider.url,
                    "credential": "provider-db",
                },
            },
        )
        for model in MODELS:
            wait_served(gateway, key, model)
        database = workdir / "sluicegate.db"
        assert set(stored_key_ids(database)) == {key_id(KEY1)}

        provider.reset()
        log_start = len(gateway.log_text())
        traffic = Traffic(gateway.url, key)
        traffic.start()
        try:
            time.sleep(1.0)
            write_keys(key_file, KEY2, KEY1)  # seal with key2, still open key1
            time.sleep(4 * SYNC_INTERVAL)
            rotated = gateway.cli("secrets", "rotate", "--json", "--config", str(gateway.config))
            report = json.loads(rotated.stdout)
            assert report["primary_key_id"] == key_id(KEY2)
            assert report["rewrapped"] == 2 and report["failed"] == 0
            time.sleep(4 * SYNC_INTERVAL)
            write_keys(key_file, KEY2)  # key1 is gone
            time.sleep(6 * SYNC_INTERVAL)  # past several reloads
        finally:
            traffic.stop()
        assert traffic.failures == [], traffic.failures[:10]
        assert traffic.ok >= 40, traffic.ok  # the clients really ran throughout
        # Nothing was ever left out or unopenable once traffic began.
        log = gateway.log_text()[log_start:]
        assert "cannot be opened" not in log and "left out:" not in log
        # Rebuilt three times: key file key2 + key1, the rotation, key file key2 alone.
        assert log.count("model routes rebuilt") >= 3, log[-3000:]
    finally:
        gateway.stop()

    assert set(stored_key_ids(database)) == {key_id(KEY2)}
    status = gateway.cli("secrets", "status", "--json", "--config", str(gateway.config))
    rows = json.loads(status.stdout)
    assert [row["master_key_id"] for row in rows if row["role"] == "primary"] == [key_id(KEY2)]
    assert all(row["master_key_id"] == key_id(KEY2) for row in rows if row["provider_credentials"])

    # A restart with key2 alone: both stored credentials open, every request succeeds.
    restarted = start_gateway(workdir, provider, model_list=models, extra_config=extra, env=env)
    try:
        for model in MODELS:
            wait_served(restarted, key, model)
        after = Traffic(restarted.url, key)
        after.start()
        time.sleep(2.0)
        after.stop()
        assert after.failures == [], after.failures[:10]
        assert after.ok >= 8
        assert "cannot be opened" not in restarted.log_text()
    finally:
        restarted.stop()

    calls = provider.calls
    # Every request reached the provider once, with the right key (no retries configured).
    assert len(calls) >= traffic.ok + after.ok
    assert {c.headers.get("x-api-key") for c in calls} == {PROVIDER_KEY}
    assert {c.path for c in calls} == {"/v1/messages"}
