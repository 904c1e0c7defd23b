"""What one request did: filled in along the data path, then logged and ledgered."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sluicegate.api.sse import Usage
from sluicegate.store.ledger import LedgerValues

if TYPE_CHECKING:
    from sluicegate.observe.tracing import RequestTrace


@dataclass(slots=True)
class RequestRecord:
    """What one request did; becomes the structured log line and the ledger row."""

    request_id: str
    endpoint: str
    started: float = field(default_factory=time.perf_counter)
    key_id: str | None = None
    key_name: str | None = None
    partner_id: str | None = None
    partner_name: str | None = None
    model: str | None = None
    deployment: str | None = None
    upstream_model: str | None = None
    upstream_request_id: str | None = None
    stream: bool = False
    status: int = 0
    error_type: str | None = None
    first_token_at: float | None = None
    usage: Usage | None = None
    session_id: str | None = None
    agent_id: str | None = None
    cost_usd: float = 0.0
    committed: bool = False  # has the response (status line) been handed to the relay?
    served_by: str | None = None  # the name a fallback is priced by (see Pipeline._exchange)
    attempts: int = 0  # upstream calls made for this request
    alias: str | None = None  # the configured model_name the request was routed to
    served_alias: str | None = None  # the alias whose deployment answered (a fallback's)
    surface: str = ""  # "anthropic" | "openai": the wire format the client speaks
    provider: str = ""  # "anthropic" | "openai": the upstream family that served it
    finished_at: float = 0.0  # perf_counter at settle
    upstream_started: float | None = None  # perf_counter of the first upstream call
    queue_wait: float = 0.0  # seconds spent in the fair queue before admission
    # The gateway's own time (see observe.gateway_metrics); None until the answer is sent.
    overhead: float | None = None
    limited: tuple[str, str] | None = None  # (limit, scope kind) of a rate-limit refusal
    trace: RequestTrace | None = None
    # Only with server.log_bodies (opt-in): the request body and a JSON answer's body.
    request_body: bytes | None = None
    response_body: bytes | None = None

    def fields(self) -> dict[str, Any]:
        now = time.perf_counter()
        out: dict[str, Any] = {
            "request_id": self.request_id,
            "endpoint": self.endpoint,
            "status": self.status,
            "key_name": self.key_name,
            "partner": self.partner_name,
            "model": self.model,
            "deployment": self.deployment,
            "upstream_model": self.upstream_model,
            "stream": self.stream,
            "upstream_request_id": self.upstream_request_id,
            "latency_ms": round((now - self.started) * 1000, 2),
        }
        if self.attempts:
            out["attempts"] = self.attempts
        if self.overhead is not None:
            out["overhead_ms"] = round(self.overhead * 1000, 3)
        if self.first_token_at is not None:
            out["ttft_ms"] = round((self.first_token_at - self.started) * 1000, 2)
        if self.usage is not None:
            out.update(
                input_tokens=self.usage.input_tokens,
                output_tokens=self.usage.output_tokens,
                cache_read_tokens=self.usage.cache_read_input_tokens,
                cache_write_tokens=self.usage.cache_creation_input_tokens,
            )
            out["cost_usd"] = self.cost_usd
        if self.error_type:
            out["error_type"] = self.error_type
        if self.session_id:
            out["client_session_id"] = self.session_id
        if self.trace is not None:
            out["trace_id"] = self.trace.trace_id
        if self.request_body is not None:
            out["request_body"] = _body_text(self.request_body)
        if self.response_body is not None:
            out["response_body"] = _body_text(self.response_body)
        return out

    def ledger_values(self) -> LedgerValues:
        """The ledger row, in ``LEDGER_COLUMNS`` order (a test keeps the two in step).
        Strings that come from clients or upstreams are cut to their columns here; the rest
        the gateway made itself."""
        now = time.perf_counter()
        usage = self.usage or _NO_USAGE
        inp, out = usage.input_tokens, usage.output_tokens
        read, write = usage.cache_read_input_tokens, usage.cache_creation_input_tokens
        if not (
            0 <= inp <= _INT32_MAX
            and 0 <= out <= _INT32_MAX
            and 0 <= read <= _INT32_MAX
            and 0 <= write <= _INT32_MAX
        ):  # as reported upstream, within the columns' range
            inp, out, read, write = _count(inp), _count(out), _count(read), _count(write)
        return (
            time.time(),
            self.request_id,
            self.key_id,
            self.key_name,
            self.partner_id,
            self.partner_name,
            self.model,
            self.deployment,
            self.upstream_model,
            self.endpoint,
            self.stream,
            self.status,
            self.error_type[:64] if self.error_type else None,
            inp,
            out,
            read,
            write,
            self.cost_usd,
            round((now - self.started) * 1000, 2),
            (
                round((self.first_token_at - self.started) * 1000, 2)
                if self.first_token_at is not None
                else None
            ),
            self.upstream_request_id[:200] if self.upstream_request_id else None,
            self.session_id[:200] if self.session_id else None,
            self.agent_id[:200] if self.agent_id else None,
        )


_NO_USAGE = Usage()
_LOGGED_BODY_LIMIT = 64 * 1024


def _body_text(body: bytes) -> str:
    """A body for the opt-in body log: text, cut at 64 KiB (the cut is marked)."""
    text = body[:_LOGGED_BODY_LIMIT].decode("utf-8", errors="replace")
    return text if len(body) <= _LOGGED_BODY_LIMIT else text + "...[cut]"


_INT32_MAX = 2**31 - 1


def _count(tokens: int) -> int:
    """A token count as reported upstream, within the column's range."""
    return tokens if 0 <= tokens <= _INT32_MAX else min(max(tokens, 0), _INT32_MAX)
