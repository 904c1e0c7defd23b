"""uvicorn's httptools protocol with limits on the request head, and JSON refusals.

uvicorn over httptools bounds neither the size nor the number of request headers: llhttp
hands each header to Python whole, and httptools concatenates the pieces of one header until
it ends, so a client could grow one endless header in the gateway's memory (copied again at
every chunk), or send thousands of them. This protocol counts the head while it is parsed
and answers 431 (414 when the request target alone is too long) as soon as a limit is
crossed, before anything reaches the application; the connection is then closed, as for
every request the HTTP parser refuses.

Requests the parser refuses (a bare CR or a NUL in a header value, bytes outside ASCII in
the path, broken framing) get uvicorn's 400, but as a gateway error in the client's shape
(JSON with a ``request-id``) instead of uvicorn's plain text.

``sluicegate serve`` runs uvicorn with this class as its ``http`` protocol.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from sluicegate.api.asgi import openai_path, request_id_header
from sluicegate.errors import (
    GatewayError,
    HeadersTooLarge,
    InvalidRequest,
    UriTooLong,
    render_anthropic,
    render_openai,
)

# The request line and all headers together. SDK and Claude Code requests carry 1-4 KiB of
# headers (long anthropic-beta lists and trace headers included); proxies add a few more.
# 64 KiB leaves ample room for those and is what one request may hold in memory.
MAX_HEAD_BYTES = 64 * 1024
# Apache's LimitRequestFields default; clients send about 20, proxies add a handful.
MAX_HEADERS = 100
# The gateway's paths are short; only admin GETs carry query strings, and those are short.
MAX_TARGET_BYTES = 8 * 1024

MALFORMED = "The HTTP request is malformed (request line, a header, or the body's framing)."


class _HeadRefused(Exception):
    """Raised in a parser callback to stop parsing a head that crossed a limit."""


class GatewayHttpProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._target_bytes = 0
        self._chunk_bytes = 0
        self._in_head = False
        self._head_began_in_chunk = False
        self._unfinished_head = 0
        self._refusal: GatewayError | None = None

    # -- counting (parser callbacks) ---------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._target_bytes = 0
        self._unfinished_head = 0
        self._in_head = self._head_began_in_chunk = True

    def on_url(self, url: bytes) -> None:
        self._target_bytes += len(url)
        if self._target_bytes > MAX_TARGET_BYTES:
            self._stop(UriTooLong(f"The request target is longer than {MAX_TARGET_BYTES} bytes."))
        super().on_url(url)

    def on_headers_complete(self) -> None:
        # Checked once the head is complete rather than per header: a per-header hook is a
        # Python call for each of a request's ~20 headers. Memory is bounded meanwhile by
        # data_received (a head spread over several reads is counted there).
        self._in_head = False
        headers = self.headers
        if len(headers) > MAX_HEADERS:
            self._stop(HeadersTooLarge(f"The request has more than {MAX_HEADERS} headers."))
        if not self._head_began_in_chunk or self._chunk_bytes > MAX_HEAD_BYTES:
            # A head that came whole in a read no larger than the limit cannot be over it;
            # one spread over several reads (or in a larger read) is added up.
            size = self._target_bytes + sum(len(n) + len(v) + 4 for n, v in headers)
            if size > MAX_HEAD_BYTES:
                self._stop(
                    HeadersTooLarge(f"The request's headers exceed {MAX_HEAD_BYTES} bytes.")
                )
        super().on_headers_complete()

    def _stop(self, error: GatewayError) -> None:
        # httptools turns the exception into HttpParserCallbackError; uvicorn then calls
        # send_400_response, which answers with this refusal instead.
        self._refusal = error
        raise _HeadRefused

    # -- the unfinished header ---------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self._chunk_bytes = len(data)
        super().data_received(data)
        if not self._in_head or self._refusal is not None or self.transport.is_closing():
            return
        # The head is still unfinished after this chunk, and httptools holds its last,
        # incomplete header outside the callbacks above. Every later chunk is head bytes
        # only, so count them; the chunk the request began in is skipped, since it may
        # also end the previous request on the connection. Memory stays below one read
        # (at most 256 KiB) plus the limit.
        if self._head_began_in_chunk:
            self._head_began_in_chunk = False
            return
        self._unfinished_head += len(data)
        if self._unfinished_head > MAX_HEAD_BYTES:
            self._answer(HeadersTooLarge(f"The request's headers exceed {MAX_HEAD_BYTES} bytes."))

    # -- answers -----------------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to anything the parser refused (``msg`` is its generic text)."""
        self._answer(self._refusal or InvalidRequest(MALFORMED))

    def _answer(self, error: GatewayError) -> None:
        status, body, extra = (render_openai if self._openai_client() else render_anthropic)(error)
        headers = [
            *self.server_state.default_headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            request_id_header(),
            *extra,
            (b"connection", b"close"),
        ]
        parts = [STATUS_LINE[status]]
        for name, value in headers:
            parts += [name, b": ", value, b"\r\n"]
        parts += [b"\r\n", body]
        self.transport.write(b"".join(parts))
        self.transport.close()

    def _openai_client(self) -> bool:
        """The same rule as the application's (path namespace, unless anthropic-version),
        applied to whatever part of the head was parsed."""
        url: bytes = getattr(self, "url", None) or b""
        headers: list[tuple[bytes, bytes]] = self.headers or []
        if any(name == b"anthropic-version" for name, _ in headers):
            return False
        return openai_path(url.split(b"?", 1)[0].decode("latin-1"))
