"""Bad HTTP against the gateway process (issue 7 §5 and §6): huge and numerous headers, CR,
LF and NUL in header values, bytes outside ASCII in the path, broken framing, CORS
preflights, spoofed Host and forwarded headers, and the one answer to every bad key.

The head limits (api/http_protocol.py): request line + headers at most 64 KiB (431), at most
100 headers (431), a request target of at most 8 KiB (414). What the HTTP parser refuses is
a 400. All of these are JSON in the route's error shape, and the connection is closed.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

import pytest

from sluicegate.fake_upstream import FakeUpstream
from tests.gateway_harness import ADMIN_TOKEN, Gateway
from tests.integration.test_anthropic_support import JSON_BODY_HEADERS, RawResponse, raw_request
from tests.integration.test_bad_input_support import (
    assert_ready,
    assert_refusal,
    base_headers,
    message_request,
    no_gateway_errors,
    post,
    send_wire,
    surface_of,
    wire_request,
)

MAX_HEAD_BYTES = 64 * 1024
MAX_HEADERS = 100
PATHS = ("/v1/messages", "/v1/chat/completions", "/key/generate")


@pytest.fixture(autouse=True)
def _clean(gateway: Gateway) -> Iterator[None]:
    with no_gateway_errors(gateway):
        yield
    assert_ready(gateway)


def send(
    gateway: Gateway,
    path: bytes,
    extra: list[tuple[bytes, bytes]],
    *,
    method: bytes = b"POST",
    body: bytes | None = None,
) -> RawResponse:
    """A request to ``path`` with its usual headers plus ``extra`` (the last ones sent)."""
    headers = base_headers(gateway, path) + extra
    data = wire_request(method, path, headers, message_request() if body is None else body)
    answer = send_wire(gateway.url, data)
    assert answer is not None, "the gateway reset the connection without an answer"
    return answer.as_raw()


# -- header size and count ----------------------------------------------------------------


@pytest.mark.parametrize("path", PATHS)
def test_one_huge_header_is_431(gateway: Gateway, fake: FakeUpstream, path: str) -> None:
    response = send(gateway, path.encode(), [(b"x-padding", b"a" * 100_000)])
    error = assert_refusal(response, 431, surface_of(path))
    assert "64" in error["message"] or str(MAX_HEAD_BYTES) in error["message"]
    assert response.headers.get("connection") == "close"
    assert fake.call_count() == 0


@pytest.mark.parametrize("path", PATHS)
def test_too_many_headers_is_431(gateway: Gateway, fake: FakeUpstream, path: str) -> None:
    extra = [(b"x-h%d" % i, b"v") for i in range(500)]
    error = assert_refusal(send(gateway, path.encode(), extra), 431, surface_of(path))
    assert str(MAX_HEADERS) in error["message"]
    assert fake.call_count() == 0


def test_headers_up_to_the_limits_are_served(gateway: Gateway, fake: FakeUpstream) -> None:
    path = b"/v1/messages"
    sent = len(base_headers(gateway, path)) + 1  # + content-length
    at_count = [(b"x-h%d" % i, b"v") for i in range(MAX_HEADERS - sent)]
    assert send(gateway, path, at_count).status == 200
    over_count = [*at_count, (b"x-one-more", b"v")]
    assert_refusal(send(gateway, path, over_count), 431, "anthropic")
    # 60 KB of headers are served; a long anthropic-beta list among them goes upstream
    # intact (the fake upstream, aiohttp, takes header values up to 8 KB).
    betas = b",".join(b"beta-feature-%05d" % i for i in range(300))
    big = [(b"x-padding", b"p" * 54_000), (b"anthropic-beta", betas)]
    assert send(gateway, path, big).status == 200
    assert fake.call_count() == 2
    assert fake.calls[1].headers["anthropic-beta"] == betas.decode()


def test_long_request_target_is_414(gateway: Gateway, fake: FakeUpstream) -> None:
    target = b"/v1/messages?pad=" + b"a" * 9_000
    answer = send_wire(gateway.url, wire_request(b"POST", target, base_headers(gateway, target)))
    assert answer is not None
    assert_refusal(answer.as_raw(), 414, "anthropic")
    assert fake.call_count() == 0


def test_endless_header_is_cut_off(gateway: Gateway, fake: FakeUpstream) -> None:
    """A header that never ends: the gateway answers 431 and closes the connection after
    about the limit, instead of buffering what the client sends. (The client gets a few MB
    out before the reset: the kernel's socket buffers on both sides, not the gateway.)"""
    url = urlsplit(gateway.url)
    ceiling = 64 * 1024 * 1024  # far past both sockets' buffers
    sent = 0
    answer = b""
    with socket.create_connection((url.hostname or "", url.port or 80), timeout=10) as s:
        s.sendall(b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-endless: ")
        try:
            while sent < ceiling:
                s.sendall(b"a" * 65536)
                sent += 65536
        except (BrokenPipeError, ConnectionResetError):
            pass
        try:
            while chunk := s.recv(65536):
                answer += chunk
        except (ConnectionResetError, TimeoutError):
            pass
    assert sent < ceiling, "the gateway kept reading an endless header"
    if answer:  # the reset may beat the answer to the client
        assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert fake.call_count() == 0


# -- what the HTTP parser refuses ----------------------------------------------------------

MALFORMED_HEADERS: dict[str, list[tuple[bytes, bytes]]] = {
    "bare CR in a value": [(b"x-note", b"a\rb")],
    "bare LF in a value": [(b"x-note", b"a\nx-injected: 1")],
    "NUL in a value": [(b"x-note", b"a\x00b")],
    "NUL in the key": [(b"x-api-key", b"sk-sg-\x00")],
    "CR in anthropic-beta": [(b"anthropic-beta", b"tools-2024\rx-injected: 1")],
    "obs-fold continuation": [(b"x-note", b"a\r\n folded")],
    "space before the colon": [(b"x-note ", b"a")],
    "control byte in a name": [(b"x-n\x01te", b"a")],
    "empty name": [(b"", b"a")],
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("case", list(MALFORMED_HEADERS))
def test_malformed_headers_are_400(
    gateway: Gateway, fake: FakeUpstream, path: str, case: str
) -> None:
    response = send(gateway, path.encode(), MALFORMED_HEADERS[case])
    error = assert_refusal(response, 400, surface_of(path))
    assert "malformed" in error["message"]
    assert fake.call_count() == 0


MALFORMED_REQUESTS: dict[str, tuple[bytes, bytes, list[tuple[bytes, bytes]]]] = {
    "invalid UTF-8 in the path": (b"POST", b"/v1/mess\xffages", []),
    "UTF-8 in the path": (b"POST", "/v1/méssages".encode(), []),
    "space in the path": (b"POST", b"/v1/messages /x", []),
    "unknown method": (b"FROB", b"/v1/messages", []),
    "two content lengths": (b"POST", b"/v1/messages", [(b"content-length", b"3")]),
    "content length and chunked": (
        b"POST",
        b"/v1/messages",
        [(b"transfer-encoding", b"chunked")],
    ),
    "bad transfer encoding": (b"POST", b"/v1/messages", [(b"transfer-encoding", b"gzip, x")]),
}


@pytest.mark.parametrize("case", list(MALFORMED_REQUESTS))
def test_malformed_requests_are_400(gateway: Gateway, fake: FakeUpstream, case: str) -> None:
    method, target, extra = MALFORMED_REQUESTS[case]
    headers = base_headers(gateway, b"/v1/messages") + extra
    answer = send_wire(gateway.url, wire_request(method, target, headers, message_request()))
    assert answer is not None
    assert_refusal(answer.as_raw(), 400, "anthropic")
    assert fake.call_count() == 0


@pytest.mark.parametrize(
    "target",
    [b"/v1/%ff%fe", b"/v1/messages/../messages", b"/v1/messages%2f..%2fkey%2fgenerate",
     b"//v1/messages", b"/v1/./messages", b"/V1/MESSAGES"],
)  # fmt: skip
def test_path_tricks_route_nowhere(gateway: Gateway, fake: FakeUpstream, target: bytes) -> None:
    """Paths are matched exactly, never normalised: a trick reaches no other route."""
    answer = send_wire(gateway.url, wire_request(b"POST", target, base_headers(gateway, target)))
    assert answer is not None
    assert_refusal(answer.as_raw(), 404, "anthropic")
    assert fake.call_count() == 0


# -- CORS: off ------------------------------------------------------------------------------


@pytest.mark.parametrize("path", [*PATHS, "/v1/models", "/health/readiness", "/openapi.json"])
def test_no_cors_preflight(gateway: Gateway, path: str) -> None:
    headers = {
        "origin": "https://evil.example",
        "access-control-request-method": "POST",
        "access-control-request-headers": "x-api-key, content-type",
    }
    response = raw_request(gateway.url, "OPTIONS", path, None, headers)
    assert response.status == 405, (response.status, response.body)
    assert not [h for h in response.headers if h.startswith("access-control-")]


def test_no_cors_headers_on_answers(gateway: Gateway, fake: FakeUpstream) -> None:
    origin = {"origin": "https://evil.example"}
    for path in ("/v1/messages", "/v1/chat/completions"):
        headers = {**JSON_BODY_HEADERS, "x-api-key": gateway.keys["full"], **origin}
        answer = raw_request(gateway.url, "POST", path, message_request(), headers)
        assert answer.status == 200
        assert not [h for h in answer.headers if h.startswith("access-control-")]
    partners = raw_request(
        gateway.url, "GET", "/partner/list", None, {"x-api-key": ADMIN_TOKEN, **origin}
    )
    assert partners.status == 200
    assert not [h for h in partners.headers if h.startswith("access-control-")]


# -- Host and forwarded headers never authorise ---------------------------------------------

SPOOFS: dict[str, dict[str, str]] = {
    "host": {"host": "localhost"},
    "host with port": {"host": "127.0.0.1:8400"},
    "x-forwarded-for": {"x-forwarded-for": "127.0.0.1"},
    "x-real-ip": {"x-real-ip": "127.0.0.1"},
    "forwarded": {"forwarded": "for=127.0.0.1;host=localhost;proto=https"},
    "x-forwarded-host": {"x-forwarded-host": "admin.internal", "x-forwarded-proto": "https"},
    "x-original-url": {"x-original-url": "/health/readiness", "x-rewrite-url": "/"},
}


def comparable(response: RawResponse) -> tuple[int, bytes, list[tuple[str, str]]]:
    """Status, body and headers, less what differs per request (id, date)."""
    headers = sorted((k, v) for k, v in response.headers.items() if k not in {"request-id", "date"})
    return response.status, response.body, headers


@pytest.mark.parametrize("spoof", list(SPOOFS))
def test_spoofed_headers_do_not_authorise(gateway: Gateway, fake: FakeUpstream, spoof: str) -> None:
    wrong = {**JSON_BODY_HEADERS, "x-api-key": "sk-sg-" + uuid.uuid4().hex}
    plain = raw_request(gateway.url, "POST", "/v1/messages", message_request(), wrong)
    spoofed = raw_request(
        gateway.url, "POST", "/v1/messages", message_request(), {**wrong, **SPOOFS[spoof]}
    )
    assert_refusal(spoofed, 401, "anthropic")
    assert comparable(spoofed) == comparable(plain)
    admin = raw_request(gateway.url, "GET", "/partner/list", None, SPOOFS[spoof])
    assert_refusal(admin, 401, "anthropic")
    good = {**JSON_BODY_HEADERS, "x-api-key": gateway.keys["full"], **SPOOFS[spoof]}
    assert raw_request(gateway.url, "POST", "/v1/messages", message_request(), good).status == 200
    assert fake.call_count() == 1


# -- one answer to every bad key -------------------------------------------------------------


@pytest.fixture(scope="module")
def bad_keys(gateway: Gateway) -> dict[str, str]:
    """Keys that must all fail alike: wrong, unknown, expired, revoked."""
    expired = gateway.create_key(f"expired-{uuid.uuid4().hex[:8]}", "--expires", "1s")
    revoked_name = f"revoked-{uuid.uuid4().hex[:8]}"
    revoked = gateway.create_key(revoked_name)
    answer = post(gateway, "/key/delete", {"key_aliases": [revoked_name]})
    assert answer.status == 200, answer.body
    time.sleep(1.2)  # past the expiry
    return {
        "wrong": "not-a-key",
        "unknown": "sk-sg-" + uuid.uuid4().hex + uuid.uuid4().hex[:11],
        "expired": expired,
        "revoked": revoked,
        "valid key with a suffix": gateway.keys["full"] + "x",
    }


BAD_KEY_ROUTES = [
    ("POST", "/v1/messages", "x-api-key"),
    ("POST", "/v1/messages", "bearer"),
    ("POST", "/v1/messages/count_tokens", "x-api-key"),
    ("POST", "/v1/chat/completions", "bearer"),
    ("POST", "/v1/chat/completions", "x-api-key"),
    ("GET", "/v1/models", "bearer"),
    ("GET", "/models", "x-api-key"),
]


def bad_key_request(gateway: Gateway, route: tuple[str, str, str], key: str) -> RawResponse:
    method, path, scheme = route
    headers = dict(JSON_BODY_HEADERS)
    if path not in ("/v1/messages", "/v1/messages/count_tokens"):
        del headers["anthropic-version"]  # what an OpenAI client sends
    if scheme == "bearer":
        headers["authorization"] = f"Bearer {key}"
    else:
        headers["x-api-key"] = key
    body = message_request() if method == "POST" else None
    return raw_request(gateway.url, method, path, body, headers)


def test_every_bad_key_gets_the_same_answer(
    gateway: Gateway, fake: FakeUpstream, bad_keys: dict[str, str]
) -> None:
    """Per route: status, body and headers (less request id and date) are identical for
    wrong, unknown, expired, revoked and almost-right keys. Sent concurrently, so the
    key-table checks that misses trigger are shared."""
    cases = [(route, name) for route in BAD_KEY_ROUTES for name in bad_keys]
    with ThreadPoolExecutor(max_workers=len(cases)) as pool:
        responses = list(
            pool.map(lambda case: bad_key_request(gateway, case[0], bad_keys[case[1]]), cases)
        )
    by_route: dict[tuple[str, str, str], set[str]] = {}
    for (route, _), response in zip(cases, responses, strict=True):
        assert_refusal(response, 401, "anthropic" if "messages" in route[1] else "openai")
        assert response.headers.get("x-should-retry") == "false"
        by_route.setdefault(route, set()).add(repr(comparable(response)))
    assert all(len(answers) == 1 for answers in by_route.values()), by_route
    assert fake.call_count() == 0
