"""The ASGI application: routes, start-up and shutdown.

A request's path through the gateway is in :mod:`sluicegate.pipeline`:
parse -> authenticate -> route -> limits and budgets -> provider -> relay -> settle.
This module only wires the parts together and maps (method, path) to handlers.
"""

from __future__ import annotations

import gc
import os
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp

from sluicegate.api.admin import AdminApi, AdminContext
from sluicegate.api.admin.gate import admin_gate
from sluicegate.api.admin.listener import AdminListener
from sluicegate.api.asgi import (
    JSON_CONTENT,
    Receive,
    Request,
    Scope,
    Send,
    openai_path,
    request_id_header,
    send_bytes,
)
from sluicegate.api.health import liveliness, readiness
from sluicegate.api.metrics import MetricsServer, metrics_handler
from sluicegate.crypto.keyring_source import KeyringSource
from sluicegate.delivery.attempts import Deliverer
from sluicegate.delivery.setup import build_deliverer, close_deliverer, start_deliverer
from sluicegate.errors import (
    GatewayError,
    MethodNotAllowed,
    NotFound,
    render_anthropic,
    render_openai,
)
from sluicegate.fake_upstream import FakeUpstream
from sluicegate.lifecycle import draining, watch_stop_signals
from sluicegate.observe.alerts import AlertSink, install_alert_sink
from sluicegate.observe.hub import Observability
from sluicegate.observe.logging import RequestLog, configure_logging, logs_requests
from sluicegate.pipeline import Pipeline
from sluicegate.policy.auth import KeyCache, SigningSource
from sluicegate.policy.authenticator import Authenticator, build_authenticator
from sluicegate.policy.key_admin import key_pepper
from sluicegate.policy.setup import Governance
from sluicegate.providers.anthropic import AnthropicProvider
from sluicegate.providers.base import Provider
from sluicegate.providers.openai import OpenAIProvider
from sluicegate.routing.router import Router
from sluicegate.routing.sync import RouteSync
from sluicegate.settings import Secret, Settings, embedded_defaults, load_settings
from sluicegate.store.audit import AuditStore
from sluicegate.store.credentials import CredentialStore
from sluicegate.store.db import create_engine
from sluicegate.store.deployments import DeploymentStore
from sluicegate.store.keys import KeyStore
from sluicegate.store.ledger import LedgerStore
from sluicegate.store.partners import PartnerStore
from sluicegate.store.signing_keys import SigningKeyStore
from sluicegate.store.startup import ensure_schema

Handler = Callable[[Request, Receive, Send], Awaitable[object]]
CONFIG_ENV = "SLUICEGATE_CONFIG"
_GC_YOUNG_THRESHOLD = 20_000


@dataclass(slots=True)
class Components:
    """Everything started at boot and stopped at shutdown."""

    keys: KeyCache
    session: aiohttp.ClientSession
    engine: Any
    fake: FakeUpstream | None
    request_log: RequestLog
    governance: Governance
    observe: Observability
    alerts: AlertSink | None
    deliverer: Deliverer | None = None
    metrics_server: MetricsServer | None = None
    admin_listener: AdminListener | None = None
    routes: RouteSync | None = None
    auth: Authenticator | None = None

    async def close(self) -> None:
        # uvicorn calls this once in-flight requests finished (or shutdown_grace passed):
        # every request has settled, so the ledger flush below is complete.
        self.request_log.flush()
        if self.metrics_server is not None:
            await self.metrics_server.close()
        if self.admin_listener is not None:
            await self.admin_listener.close()
        await self.observe.close()
        await self.keys.stop()
        if self.auth is not None:
            await self.auth.close()
        if self.routes is not None:
            await self.routes.stop()
        await self.governance.close()
        if self.deliverer is not None:
            await close_deliverer(self.deliverer)
        await self.session.close()
        if self.fake is not None:
            await self.fake.stop()
        await self.engine.dispose()
        if self.alerts is not None:  # last: closing the rest may still raise alerts
            await self.alerts.aclose()


class Gateway:
    """ASGI callable. Routes on the path alone; any query string is ignored for routing."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._routes: dict[tuple[str, str], Handler] = {}
        self._paths: set[str] = set()
        self._components: Components | None = None
        self._started_at: float | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if len(path) > 1 and path.endswith("/"):
                path = path.rstrip("/")
            handler = self._routes.get((scope["method"], path))
            if handler is None:
                await self._no_route(path, Request(scope), send)
                return
            await handler(Request(scope), receive, send)
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)

    async def _no_route(self, path: str, request: Request, send: Send) -> None:
        if path in self._paths:
            error: GatewayError = MethodNotAllowed("Method not allowed.")
        else:
            error = NotFound(f"No route for {path[:200]}.")
        render = render_openai if _openai_client(path, request) else render_anthropic
        status, body, extra = render(error)
        await send_bytes(send, status, body, [JSON_CONTENT, request_id_header(), *extra])

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.start()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.stop()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def start(self) -> None:
        settings = self.settings
        watch_stop_signals()  # readiness turns false the moment SIGTERM arrives
        configure_logging(settings.server.log_level)
        alerts = install_alert_sink(settings.alerts)
        if alerts is not None:
            await alerts.start()
        observe = Observability(settings)
        await observe.start()
        await ensure_schema(settings.database_url, auto_migrate=settings.migrate_on_start)
        engine = create_engine(settings.database_url)
        store = KeyStore(engine)
        partners = PartnerStore(engine)
        pepper = await key_pepper(settings, store)
        governance = Governance.build(settings, engine)
        await governance.start()
        keys = KeyCache(
            store,
            pepper,
            settings.server.key_sync_interval,
            partners,
            on_reload=governance.on_keys_loaded,
            signing=SigningSource(SigningKeyStore(engine), KeyringSource(settings.secrets)),
            load_signing=settings.auth.hmac.enabled,
        )
        await keys.start()
        fake = None
        builtin: tuple[str, Secret] | None = None
        if settings.uses_builtin_fake:
            fake_key = secrets.token_urlsafe(24)
            fake = FakeUpstream(api_key=fake_key)
            await fake.start()
            builtin = (fake.url, Secret(fake_key, source="builtin fake upstream"))
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(
                limit=settings.server.upstream_connections, ttl_dns_cache=300
            ),
            skip_auto_headers=("User-Agent",),
        )
        request_log = RequestLog(logs_requests(settings.server.log_level))
        self._components = Components(
            keys, session, engine, fake, request_log, governance, observe, alerts
        )
        router = Router(settings.model_list, settings.timeouts, builtin)
        providers: dict[str, Provider] = {
            "anthropic": AnthropicProvider(session, settings.anthropic_version),
            "openai": OpenAIProvider(session),
        }
        deliverer = build_deliverer(settings, router)
        await start_deliverer(deliverer)
        self._components.deliverer = deliverer
        credentials = CredentialStore(engine, KeyringSource(settings.secrets))
        # Stored deployments and credentials: routes built before the first request, then
        # kept in step with the database (routing/sync.py).
        routes = RouteSync(
            router,
            settings.model_list,
            DeploymentStore(engine),
            credentials,
            credentials.keys,
            settings.security,
            settings.server.key_sync_interval,
            deliverer=deliverer,
            governor=governance.governor,
        )
        await routes.start()
        self._components.routes = routes
        self._watch(observe, governance, deliverer)
        auth = build_authenticator(settings, keys)  # JWT, HMAC, IP allow-lists
        await auth.start()
        self._components.auth = auth
        pipeline = Pipeline(
            keys,
            router,
            providers,
            settings.server.max_body_size,
            request_log,
            governance.governor,
            governance.ledger if settings.ledger.enabled else None,
            deliverer,
            observe,
            settings.server.log_bodies,
            auth=auth,
        )
        admin = AdminApi(
            settings,
            AdminContext(
                store,
                partners,
                LedgerStore(engine),
                keys,
                pepper,
                audit=AuditStore(engine),
                credentials=credentials,
                deployments=routes,
            ),
        )
        self._set_routes(pipeline, admin)
        await self._serve_admin(admin)
        await self._serve_metrics(observe)
        self._started_at = time.monotonic()
        # Everything allocated so far (modules, config, pools) lives as long as the process:
        # move it out of the collector's generations so a full collection under load does
        # not walk it again and again (multi-millisecond pauses on every gen-2 pass).
        gc.collect()
        gc.freeze()
        # Each request leaves some cyclic garbage (coroutines, futures), so the young
        # generation fills every ~10 requests at the default threshold of 700, and every
        # collection walks the live objects of all requests in flight again. At 20,000 most
        # young objects are gone before the collector looks: collections cost ~80% less
        # and a request ~6% less CPU (measured with bench-style load), for a few MB more
        # garbage held between collections.
        gc.set_threshold(_GC_YOUNG_THRESHOLD, 20, 20)

    @staticmethod
    def _watch(observe: Observability, governance: Governance, deliverer: Deliverer) -> None:
        """What metrics read from the other parts: at scrape time, or when it happens."""
        governor = governance.governor
        governor.on_queue_wait = observe.queue_waited
        observe.watch_budgets(governor.budgets_left)
        observe.watch_queues(governor.queue.depths)
        deliverer.on_attempt = observe.attempted
        breakers = deliverer.breakers
        if breakers is not None:
            observe.watch_breakers(breakers.states)

    async def _serve_metrics(self, observe: Observability) -> None:
        config = self.settings.metrics
        if not config.enabled:
            return
        gate = None
        if config.auth == "admin_token":
            gate = admin_gate(self.settings)  # any admin token, whatever its scope
        if config.port is None:
            self._routes[("GET", config.path)] = metrics_handler(observe.exporter, gate)
            self._paths.add(config.path)
            return
        server = MetricsServer(
            observe.exporter, gate, self.settings.server.host, config.port, config.path
        )
        await server.start()
        assert self._components is not None
        self._components.metrics_server = server

    def _set_routes(self, pipeline: Pipeline, admin: AdminApi) -> None:
        alive = liveliness()
        # With admin.port the admin API is served only there (_serve_admin). Listed first:
        # the data path's own routes win should a root admin path ever equal one of them.
        own_port = self.settings.admin.port is not None
        self._routes = {
            **({} if own_port else admin.routes()),
            ("POST", "/v1/messages"): pipeline.messages,
            ("POST", "/v1/messages/count_tokens"): pipeline.count_tokens,
            ("GET", "/v1/models"): pipeline.list_models,
            ("POST", "/v1/chat/completions"): pipeline.chat_completions,
            # OpenAI clients are often pointed at the bare host: serve it without /v1 too.
            ("POST", "/chat/completions"): pipeline.chat_completions,
            ("GET", "/models"): pipeline.list_models,
            ("GET", "/health/liveliness"): alive,
            ("GET", "/health/liveness"): alive,
            ("GET", "/health/readiness"): readiness(self._readiness),
        }
        self._paths = {path for _, path in self._routes}

    async def _serve_admin(self, admin: AdminApi) -> None:
        config = self.settings.admin
        if config.port is None:
            return
        listener = AdminListener(
            admin.routes(),
            config.host or self.settings.server.host,
            config.port,
            self.settings.server.shutdown_grace,
        )
        await listener.start()
        assert self._components is not None
        self._components.admin_listener = listener

    def _readiness(self) -> tuple[bool, dict[str, str]]:
        components = self._components
        if components is None or self._started_at is None:
            return False, {"gateway": "starting"}
        if draining():
            # Stop signal received: take this instance out of rotation at once, while
            # in-flight requests finish (liveness stays 200: nothing to restart).
            return False, {"gateway": "ok", "server": "draining"}
        database_ok = components.keys.store_reachable
        checks = {"gateway": "ok", "database": "ok" if database_ok else "unreachable"}
        ready = database_ok
        backend = components.governance.backend
        if backend.name == "redis":
            redis_ok = backend.available()
            checks["redis"] = "ok" if redis_ok else "unreachable"
            # Failing open, the gateway serves on per-process limits: still ready.
            ready = ready and (redis_ok or self.settings.limits.on_redis_failure == "open")
        return ready, checks

    async def stop(self) -> None:
        if self._components is not None:
            await self._components.close()
            self._components = None


def _openai_client(path: str, request: Request) -> bool:
    """Does this request come from an OpenAI client? Anthropic's always send
    anthropic-version; otherwise the path tells."""
    if request.header("anthropic-version") is not None:
        return False
    return openai_path(path)


def create_app(settings: Settings) -> Gateway:
    return Gateway(settings)


def create_app_from_env() -> Gateway:
    """Factory for uvicorn (also in each ``--workers`` process): config path from the env."""
    path = os.environ.get(CONFIG_ENV)
    return Gateway(load_settings(path) if path else embedded_defaults())
