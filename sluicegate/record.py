"""What one request did: filled in along the data path, then logged and ledgered."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from sluicegate.api.sse import Usage
from sluicegate.store.ledger import LedgerValues


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
    served_by: str | None = None  # the alias (model_name) of the deployment that answered
    attempts: int = 0  # upstream calls made for this request

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
        if self.attempts > 1:
            out["attempts"] = self.attempts
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
        return out

    def ledger_values(self) -> LedgerValues:
        """The ledger row, in ``LEDGER_COLUMNS`` order (a test keeps the two in step).
        Strings that come from clients or upstreams are cut to their columns here; the rest
        the gateway made itself."""
        now = time.perf_counter()
        usage = self.usage or _NO_USAGE
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
            _count(usage.input_tokens),
            _count(usage.output_tokens),
            _count(usage.cache_read_input_tokens),
            _count(usage.cache_creation_input_tokens),
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
_INT32_MAX = 2**31 - 1


def _count(tokens: int) -> int:
    """A token count as reported upstream, within the column's range."""
    return tokens if 0 <= tokens <= _INT32_MAX else min(max(tokens, 0), _INT32_MAX)
