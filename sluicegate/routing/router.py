"""Model alias -> deployments.

Clients name a model; the configuration's ``model_list`` maps names (exact, or wildcard
patterns such as ``claude-*``) to deployments: provider, upstream base URL, key and the
upstream model id. Several entries with one ``model_name`` are several deployments of that
alias (other keys, regions or providers), chosen per request by the delivery layer.
Exact names win over patterns; patterns are tried in config order.

Deployments may also be defined in the database (``sluicegate.store.deployments``) and name a
stored provider credential instead of a key. :mod:`sluicegate.routing.sync` rebuilds the
routes when those change, with :meth:`Router.replace`: the whole table is built aside and
swapped in with one assignment, so a request resolves against one consistent table (in
flight, it keeps the routes it resolved), and resolving costs what it did before.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from sluicegate.catalog import ANTHROPIC_MODELS
from sluicegate.settings import ModelEntry, Secret, Timeouts, deployment_ids
from sluicegate.translate.quirks import OpenAIQuirks

_MEMO_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Deployment:
    name: str  # the deployment id (see ModelEntry.deployment_id): logs, headers, limits
    provider: str
    api_base: str
    api_key: Secret | None
    upstream_model: str | None  # None: send the model name the client asked for
    timeouts: Timeouts
    default_max_tokens: int = 4096
    auth_style: str = "bearer"  # provider openai: bearer | api-key | none
    extra_headers: tuple[tuple[str, str], ...] = ()
    quirks: OpenAIQuirks = field(default_factory=OpenAIQuirks)
    alias: str = ""  # the config entry's model_name (an exact name or a pattern)
    weight: float = 1.0
    context_window: int | None = None


@dataclass(frozen=True, slots=True)
class Route:
    """One way to serve a requested model: the deployment and the upstream model id."""

    deployment: Deployment
    upstream_model: str


@dataclass(frozen=True, slots=True)
class RouteTable:
    """One immutable generation of the routes (the memo is its private cache)."""

    exact: dict[str, tuple[Deployment, ...]]
    patterns: tuple[tuple[re.Pattern[str], tuple[Deployment, ...]], ...]
    memo: dict[str, tuple[Deployment, ...]]
    has_windows: bool
    # Deployment name -> why it is left out (a credential that is missing or cannot be opened,
    # a name the config file already uses): such a deployment serves nothing until fixed.
    skipped: dict[str, str]


def _deployment(
    entry: ModelEntry,
    name: str,
    api_base: str,
    api_key: Secret | None,
    default_timeouts: Timeouts,
) -> Deployment:
    return Deployment(
        name=name,
        provider=entry.provider,
        api_base=api_base,
        api_key=api_key,
        upstream_model=entry.model,
        timeouts=entry.timeouts.over(default_timeouts),
        default_max_tokens=entry.default_max_tokens,
        auth_style=entry.auth_style,
        extra_headers=tuple(entry.extra_headers.items()),
        quirks=OpenAIQuirks(
            stream_options=entry.stream_options,
            max_tokens_field=entry.max_tokens_field,
        ),
        alias=entry.model_name,
        weight=entry.weight,
        context_window=entry.context_window,
    )


def build_table(
    entries: Sequence[ModelEntry],
    default_timeouts: Timeouts,
    builtin_fake: tuple[str, Secret] | None = None,
    credentials: Mapping[str, Secret] | None = None,
    stored: Sequence[ModelEntry] = (),
) -> RouteTable:
    """The routes of the config file's ``entries`` (their deployment names as
    :func:`deployment_ids` gives them), then of ``stored`` entries (each with its own
    ``deployment_id``). An entry naming a credential gets that credential's secret; one whose
    credential is not in ``credentials``, or a stored entry whose name the config file
    uses, is left out and listed in ``skipped``."""
    secrets = credentials or {}
    grouped: dict[str, list[Deployment]] = {}
    skipped: dict[str, str] = {}
    named = list(zip(entries, deployment_ids(entries), strict=True))
    config_names = {name for _, name in named}
    for entry in stored:
        name = entry.deployment_id or entry.model_name
        if name in config_names:
            skipped[name] = "the config file has a deployment of this name"
            continue
        named.append((entry, name))
    for entry, name in named:
        api_base, api_key = entry.api_base, entry.api_key
        if entry.uses_builtin_fake:
            if builtin_fake is None:
                raise ValueError(f"{entry.model_name}: the built-in fake upstream is off")
            api_base, api_key = builtin_fake
        elif entry.credential is not None:
            api_key = secrets.get(entry.credential)
            if api_key is None:
                skipped[name] = f"credential {entry.credential!r} is missing or cannot be opened"
                continue
        deployment = _deployment(entry, name, api_base, api_key, default_timeouts)
        grouped.setdefault(entry.model_name, []).append(deployment)
    exact: dict[str, tuple[Deployment, ...]] = {}
    patterns: list[tuple[re.Pattern[str], tuple[Deployment, ...]]] = []
    for alias, deployments in grouped.items():
        if "*" in alias:
            patterns.append((re.compile(fnmatch.translate(alias)), tuple(deployments)))
        else:
            exact[alias] = tuple(deployments)
    windows = any(d.context_window is not None for group in grouped.values() for d in group)
    return RouteTable(exact, tuple(patterns), {}, windows, skipped)


class Router:
    def __init__(
        self,
        entries: Sequence[ModelEntry],
        default_timeouts: Timeouts,
        builtin_fake: tuple[str, Secret] | None = None,
    ) -> None:
        """``builtin_fake``: URL and key of the in-process fake upstream, when one runs.
        Entries that name a credential serve once :meth:`replace` gave the credentials."""
        self._default_timeouts = default_timeouts
        self._builtin_fake = builtin_fake
        self._table = build_table(entries, default_timeouts, builtin_fake)

    def replace(
        self,
        entries: Sequence[ModelEntry],
        credentials: Mapping[str, Secret],
        stored: Sequence[ModelEntry] = (),
    ) -> RouteTable:
        """Rebuild every route (see :func:`build_table`) and swap the new table in with one
        assignment. Requests that resolved before keep their routes. Returns the table."""
        table = build_table(
            entries, self._default_timeouts, self._builtin_fake, credentials, stored
        )
        self._table = table
        return table

    @property
    def table(self) -> RouteTable:
        return self._table

    def _deployments_for(self, model: str) -> tuple[Deployment, ...]:
        table = self._table  # one read: the whole lookup sees one generation
        found = table.exact.get(model)
        if found is not None:
            return found
        memo = table.memo
        cached = memo.get(model)
        if cached is not None:
            return cached
        found = next((d for p, d in table.patterns if p.match(model)), ())
        if len(memo) >= _MEMO_LIMIT:  # client-chosen names: keep the memo bounded
            memo.clear()
        memo[model] = found
        return found

    def resolve(self, model: str) -> list[Route]:
        """Every route that may serve ``model`` (its alias's deployments, in config order);
        empty when none is configured. The delivery layer orders and falls back."""
        return [Route(d, d.upstream_model or model) for d in self._deployments_for(model)]

    def has_context_windows(self) -> bool:
        return self._table.has_windows

    def deployments_of(self, alias: str) -> tuple[Deployment, ...]:
        """The deployments of a configured model_name (exact or pattern), as configured."""
        table = self._table
        exact = table.exact.get(alias)
        if exact is not None:
            return exact
        return next((d for _, d in table.patterns if d[0].alias == alias), ())

    def deployment_names(self) -> set[str]:
        """The names of every deployment that serves now."""
        table = self._table
        groups = [*table.exact.values(), *(d for _, d in table.patterns)]
        return {d.name for group in groups for d in group}

    def listed_models(self) -> list[str]:
        """Model names to advertise: exact aliases, then catalog ids a pattern serves."""
        table = self._table
        names = list(table.exact)
        for pattern, _ in table.patterns:
            names.extend(m for m in ANTHROPIC_MODELS if pattern.match(m) and m not in names)
        return names
