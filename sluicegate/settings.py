"""One typed configuration tree, loaded from YAML and validated at start-up.

Unknown keys are errors that name their path (``server.max_body_sizee: unknown key``).
Secrets are never written in the file: they are references ``os.environ/NAME`` resolved
here, and a missing variable is an error naming both the path and the variable. Resolved
secrets are held in :class:`Secret`, whose ``repr``/``str`` never show the value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BeforeValidator,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from sluicegate.secret import (  # re-exported: Secret is part of the settings API
    ENV_PREFIX,
    LENIENT_SECRETS,
    RequiredSecretRef,
    SecretRef,
    _resolve_secret,
)
from sluicegate.secret import (
    Secret as Secret,
)
from sluicegate.settings_admin import AdminSettings, check_admin
from sluicegate.settings_auth import AuthSettings
from sluicegate.settings_delivery import RoutingSettings
from sluicegate.settings_observe import AlertSettings, MetricsSettings, TracingSettings
from sluicegate.settings_policy import (
    BudgetSettings,
    LedgerSettings,
    LimitSettings,
    PriceSetting,
    RateLimits,
)
from sluicegate.settings_policy import (
    Strict as _Strict,
)
from sluicegate.settings_security import SecretsSettings, SecuritySettings

DEFAULT_PORT = 8400
DEFAULT_ANTHROPIC_VERSION = "2023-06-01"
DEMO_MODEL = "demo"
# ``api_base: builtin:fake`` serves a model from the fake upstream running inside the
# gateway process (the offline quickstart and demos); resolved to its loopback URL at start.
BUILTIN_FAKE = "builtin:fake"


class ConfigError(Exception):
    """The configuration cannot be used; the message names the offending path."""


_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


def _parse_size(value: Any) -> Any:
    """Accept ``33554432``, ``"32MiB"`` or ``"10 MB"``."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", value)
        if not match or match.group(2).lower() not in _SIZE_UNITS:
            raise ValueError(f"{value!r} is not a size (examples: 33554432, 32MiB, 10MB)")
        return int(match.group(1)) * _SIZE_UNITS[match.group(2).lower()]
    return value


ByteSize = Annotated[int, BeforeValidator(_parse_size), Field(gt=0)]


def _env_or_literal(value: Any) -> Any:
    """``os.environ/NAME`` resolved to its value; anything else as written."""
    resolved = _resolve_secret(value) if isinstance(value, str) else value
    return resolved.reveal() if isinstance(resolved, Secret) else resolved


def _redact_url_password(url: str) -> str:
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"


class Timeouts(_Strict):
    """Upstream timeouts in seconds. ``first_byte`` covers connect + send + response headers."""

    connect: float = Field(10.0, gt=0)
    first_byte: float = Field(600.0, gt=0)
    idle: float = Field(300.0, gt=0, description="longest silence between stream chunks")
    total: float = Field(3600.0, gt=0)


class TimeoutOverrides(_Strict):
    connect: float | None = Field(None, gt=0)
    first_byte: float | None = Field(None, gt=0)
    idle: float | None = Field(None, gt=0)
    total: float | None = Field(None, gt=0)

    def over(self, base: Timeouts) -> Timeouts:
        return base.model_copy(update=self.model_dump(exclude_none=True))


class ServerSettings(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    workers: int = Field(1, ge=1, le=64)
    max_body_size: ByteSize = 32 * 1024 * 1024
    key_sync_interval: float = Field(
        2.0, gt=0, le=60, description="how often key changes by other processes are picked up"
    )
    shutdown_grace: float = Field(
        60.0,
        ge=0,
        description="drain deadline: seconds in-flight requests and streams may finish after "
        "SIGTERM; then they are cancelled (streams end with an error event)",
    )
    upstream_connections: int = Field(1000, ge=1, description="pooled upstream connections")
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_bodies: bool = Field(
        False,
        description="opt-in: request bodies and JSON response bodies in the request log line "
        "(they hold prompts and completions; off by default)",
    )


class ModelEntry(_Strict):
    model_name: str = Field(min_length=1, max_length=200)
    provider: Literal["anthropic", "openai"]
    model: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="upstream model id; defaults to the name the client sent",
    )
    api_base: str
    api_key: SecretRef | None = None
    credential: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="the name of a provider credential stored in the database (sluicegate "
        "credentials set), instead of api_key: the config file then holds no provider key",
    )
    timeouts: TimeoutOverrides = TimeoutOverrides()
    default_max_tokens: int = Field(
        4096, ge=1, description="max_tokens sent to Anthropic when an OpenAI client sets none"
    )
    # OpenAI-compatible servers (provider: openai) differ in small ways:
    auth_style: Literal["bearer", "api-key", "none"] = Field(
        "bearer",
        description="how the key is sent: Authorization: Bearer, api-key header "
        "(Azure style), or not at all (local servers)",
    )
    stream_options: bool = Field(
        True, description="the server accepts stream_options.include_usage (usage in streams)"
    )
    max_tokens_field: Literal["max_tokens", "max_completion_tokens"] = "max_tokens"
    extra_headers: dict[str, str] = Field(
        default_factory=dict, description="sent upstream with every request"
    )
    limits: RateLimits = Field(
        default_factory=RateLimits,
        description="this deployment's capacity, shared by all partners (fair queue)",
    )
    deployment_id: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        description="this deployment's name in logs, headers and limits; default: the "
        "model_name, or model_name#N when several entries serve one model_name",
    )
    weight: float = Field(
        1.0, ge=0, description="share of the alias's traffic (0: only when the others fail)"
    )
    context_window: int | None = Field(
        None,
        ge=1,
        description="input tokens the upstream model accepts; a larger request goes straight "
        "to the alias's context_window_fallbacks",
    )

    @field_validator("deployment_id")
    @classmethod
    def _id_chars(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r"[A-Za-z0-9._:@/#\-]+", value):
            raise ValueError("may contain letters, digits and . _ : @ / # -")
        return value

    @field_validator("model_name")
    @classmethod
    def _name_chars(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z0-9._:@/*\-\[\]]+", value):
            raise ValueError("may contain letters, digits, . _ : @ / - and * wildcards")
        return value

    @field_validator("api_base")
    @classmethod
    def _base_url(cls, value: str) -> str:
        if value == BUILTIN_FAKE:
            return value
        if not re.match(r"^https?://[^/\s?#]+", value) or any(c in value for c in "?# \t"):
            raise ValueError("must be an http(s) URL without query or fragment")
        return value.rstrip("/")

    @field_validator("credential")
    @classmethod
    def _credential_name(cls, value: str | None) -> str | None:
        if value is not None and (
            value != value.strip() or any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value)
        ):
            raise ValueError("must be a credential name (no outer spaces or control characters)")
        return value

    @model_validator(mode="after")
    def _one_key_source(self) -> ModelEntry:
        if self.credential is not None and self.api_key is not None:
            raise ValueError("give api_key or credential, not both")
        if self.credential is not None and self.uses_builtin_fake:
            raise ValueError(f"credential: {BUILTIN_FAKE} needs no key")
        return self

    @field_validator("extra_headers")
    @classmethod
    def _header_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name, header in value.items():
            if not re.fullmatch(r"[A-Za-z0-9-]+", name) or any(c in header for c in "\r\n"):
                raise ValueError(f"{name!r}: not a valid header")
            if name.lower() in {
                "authorization",
                "x-api-key",
                "api-key",
                "host",
                "content-length",
                "content-type",
            }:
                raise ValueError(f"{name!r} is set by the gateway itself")
        return {name.lower(): header for name, header in value.items()}

    @property
    def is_wildcard(self) -> bool:
        return "*" in self.model_name

    @property
    def uses_builtin_fake(self) -> bool:
        return self.api_base == BUILTIN_FAKE


def deployment_ids(entries: Sequence[ModelEntry]) -> list[str]:
    """Each entry's deployment name, in order: its ``deployment_id``, else its model_name
    when it alone serves that name, else ``model_name#N`` (N counts that name's entries)."""
    count: dict[str, int] = {}
    for entry in entries:
        count[entry.model_name] = count.get(entry.model_name, 0) + 1
    seen: dict[str, int] = {}
    ids = []
    for entry in entries:
        seen[entry.model_name] = seen.get(entry.model_name, 0) + 1
        if entry.deployment_id is not None:
            ids.append(entry.deployment_id)
        elif count[entry.model_name] == 1:
            ids.append(entry.model_name)
        else:
            ids.append(f"{entry.model_name}#{seen[entry.model_name]}")
    return ids


class Settings(_Strict):
    database_url: Annotated[str, BeforeValidator(_env_or_literal)] = (
        "sqlite:///./data/sluicegate.db"
    )
    auto_migrate: bool | None = Field(
        None,
        description="run migrations at start-up; default: yes on SQLite, no on "
        "PostgreSQL (run `sluicegate db upgrade` once per release there)",
    )
    admin_token: SecretRef | None = None
    admin: AdminSettings = AdminSettings()
    redis_url: SecretRef | None = Field(
        None, description="shared state for limits and budgets across processes and hosts"
    )
    key_hash_secret: RequiredSecretRef | None = Field(
        None,
        description="pepper for gateway-key hashes; when unset one is generated and "
        "kept in the database",
    )
    anthropic_version: str = Field(
        DEFAULT_ANTHROPIC_VERSION, description="sent upstream when the client sends none"
    )
    server: ServerSettings = ServerSettings()
    timeouts: Timeouts = Timeouts()
    model_list: list[ModelEntry] = Field(default_factory=list)
    limits: LimitSettings = LimitSettings()
    budgets: BudgetSettings = BudgetSettings()
    ledger: LedgerSettings = LedgerSettings()
    prices: dict[str, PriceSetting] = Field(
        default_factory=dict, description="per model name or pattern; overrides the shipped table"
    )
    routing: RoutingSettings = RoutingSettings()
    metrics: MetricsSettings = MetricsSettings()
    tracing: TracingSettings = TracingSettings()
    alerts: AlertSettings = AlertSettings()
    secrets: SecretsSettings = SecretsSettings()
    security: SecuritySettings = SecuritySettings()
    auth: AuthSettings = AuthSettings()

    @field_validator("database_url")
    @classmethod
    def _db_scheme(cls, value: str) -> str:
        if not re.match(r"^(sqlite|postgres|postgresql)(\+\w+)?://", value):
            raise ValueError("must start with sqlite:/// or postgresql://")
        return value

    @model_validator(mode="after")
    def _checks(self) -> Settings:
        ids: set[str] = set()
        for index, name in enumerate(self.deployment_ids()):
            if name in ids:
                raise ValueError(
                    f"model_list[{index}].deployment_id: {name!r} names two deployments"
                )
            ids.add(name)
        for index, entry in enumerate(self.model_list):
            refusal = None if entry.uses_builtin_fake else self.security.refusal(entry.api_base)
            if refusal is not None:
                raise ValueError(f"model_list[{index}].api_base ({entry.model_name}): {refusal}")
            if entry.credential is not None and not (
                self.secrets.master_key is not None or self.secrets.master_key_file is not None
            ):
                raise ValueError(
                    f"model_list[{index}].credential ({entry.model_name}): stored credentials "
                    "need secrets.master_key or secrets.master_key_file"
                )
        aliases = {entry.model_name for entry in self.model_list}
        routing = self.routing
        for table, mapping in (
            ("fallbacks", routing.fallbacks),
            ("context_window_fallbacks", routing.context_window_fallbacks),
        ):
            for alias, targets in mapping.items():
                unknown = [t for t in [alias, *targets] if t not in aliases]
                if unknown:
                    raise ValueError(
                        f"routing.{table}.{alias}: {unknown[0]!r} is not a model_name in model_list"
                    )
        if self.limits.backend == "redis" and self.redis_url is None:
            raise ValueError("limits.backend: redis needs redis_url")
        if self.metrics.port is not None and self.metrics.port == self.server.port:
            raise ValueError(
                "metrics.port: must differ from server.port (leave it unset to serve "
                "/metrics on the API port)"
            )
        if (
            self.metrics.auth == "admin_token"
            and self.admin_token is None
            and not self.admin.tokens
        ):
            raise ValueError("metrics.auth: admin_token needs admin_token or admin.tokens")
        check_admin(self.admin, self.admin_token, self.server.port, self.metrics.port)
        return self

    def deployment_ids(self) -> list[str]:
        """Each model_list entry's deployment name, in order."""
        return deployment_ids(self.model_list)

    def redacted(self) -> dict[str, Any]:
        """The resolved configuration as plain data, secrets replaced by their source."""
        data = self.model_dump(mode="json", by_alias=True)
        data["database_url"] = _redact_url_password(self.database_url)
        return data

    @property
    def migrate_on_start(self) -> bool:
        if self.auto_migrate is not None:
            return self.auto_migrate
        return self.database_url.startswith("sqlite")

    @property
    def uses_builtin_fake(self) -> bool:
        return any(entry.uses_builtin_fake for entry in self.model_list)


def _format_location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith("function-") or part.endswith("]"):
            continue  # validator bookkeeping, not a path segment
        else:
            out += f".{part}" if out else part
    return out or "(top level)"


def format_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        path = _format_location(tuple(item["loc"]))
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        message = message.removeprefix("Value error, ")
        lines.append(f"{path}: {message}")
    return "\n".join(lines)


def settings_from_mapping(data: Mapping[str, Any], *, lenient: bool = False) -> Settings:
    """Validate ``data``. ``lenient``: unset provider keys / admin token are not errors (for
    commands that never call a provider)."""
    try:
        return Settings.model_validate(dict(data), context={LENIENT_SECRETS: lenient})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def load_settings(path: str | Path, *, lenient: bool = False) -> Settings:
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {file}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file} is not valid YAML: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{file}: the top level must be a mapping of settings")
    return settings_from_mapping(data, lenient=lenient)


def default_data_dir() -> Path:
    return Path(os.environ.get("SLUICEGATE_DATA_DIR", "./data"))


def embedded_defaults() -> Settings:
    """What ``sluicegate serve`` runs with no ``--config``.

    SQLite under the data directory, in-process state, the ``demo`` model served by the
    built-in fake upstream, and ``claude-*`` routed to Anthropic when ANTHROPIC_API_KEY is
    set — otherwise to the fake upstream too, so the quickstart works offline unchanged.
    """
    data_dir = default_data_dir()
    models: list[dict[str, Any]] = [
        {"model_name": DEMO_MODEL, "provider": "anthropic", "api_base": BUILTIN_FAKE},
    ]
    if os.environ.get("ANTHROPIC_API_KEY"):
        models.append(
            {
                "model_name": "claude-*",
                "provider": "anthropic",
                "api_base": os.environ.get("ANTHROPIC_BASE_URL", "https://api.anthropic.com"),
                "api_key": "os.environ/ANTHROPIC_API_KEY",
            }
        )
    else:
        models.append({"model_name": "claude-*", "provider": "anthropic", "api_base": BUILTIN_FAKE})
    data: dict[str, Any] = {
        "database_url": f"sqlite:///{data_dir}/sluicegate.db",
        "model_list": models,
    }
    if os.environ.get("SLUICEGATE_ADMIN_TOKEN"):
        data["admin_token"] = ENV_PREFIX + "SLUICEGATE_ADMIN_TOKEN"
    return settings_from_mapping(data)
