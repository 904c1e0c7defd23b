"""Raw HTTP to a gateway for the admin-security tests: any method, any header (``Host``
included), the answer's status, JSON body (or None) and headers (lower-case names)."""

from __future__ import annotations

import http.client
import json
from typing import Any
from urllib.parse import urlsplit

from tests.gateway_harness import ADMIN_TOKEN, Gateway

Answer = tuple[int, Any, dict[str, str]]


def send(
    base_url: str,
    method: str,
    path: str,
    body: Any = None,
    headers: dict[str, str] | None = None,
    *,
    token: str | None = None,
) -> Answer:
    parts = urlsplit(base_url)
    connection = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=10)
    sent = dict(headers or {})
    if token is not None:
        sent["authorization"] = f"Bearer {token}"
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        sent.setdefault("content-type", "application/json")
    try:
        connection.request(method, path, body=data, headers=sent)
        response = connection.getresponse()
        raw = response.read()
        answer_headers = {name.lower(): value for name, value in response.getheaders()}
    finally:
        connection.close()
    try:
        payload = json.loads(raw) if raw else None
    except ValueError:
        payload = raw.decode(errors="replace")
    return response.status, payload, answer_headers


def admin(gateway: Gateway, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    """An admin API call with the harness's admin token: status and JSON answer."""
    status, payload, _ = send(gateway.url, method, path, body, token=ADMIN_TOKEN)
    return status, payload
