"""Model alias -> deployments.

Clients name a model; the configuration's ``model_list`` maps names (exact, or wildcard
patterns such as ``claude-*``) to deployments: provider, upstream base URL, key and the
upstream model id. Several entries with one ``model_name`` are several deployments of that
alias (other keys, regions or providers), chosen per request by the delivery layer.
Exact names win over patterns; patterns are tried in config order.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
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


class Router:
    def __init__(
        self,
        entries: Sequence[ModelEntry],
        default_timeouts: Timeouts,
        builtin_fake: tuple[str, Secret] | None = None,
    ) -> None:
        """``builtin_fake``: URL and key of the in-process fake upstream, when one runs."""
        self._exact: dict[str, tuple[Deployment, ...]] = {}
        self._patterns: list[tuple[re.Pattern[str], tuple[Deployment, ...]]] = []
        self._memo: dict[str, tuple[Deployment, ...]] = {}
        grouped: dict[str, list[Deployment]] = {}
        for entry, name in zip(entries, deployment_ids(entries), strict=True):
            api_base, api_key = entry.api_base, entry.api_key
            if entry.uses_builtin_fake:
                if builtin_fake is None:
                    raise ValueError(f"{entry.model_name}: the built-in fake upstream is off")
                api_base, api_key = builtin_fake
            grouped.setdefault(entry.model_name, []).append(
                Deployment(
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
            )
        for alias, deployments in grouped.items():
            if "*" in alias:
                pattern = re.compile(fnmatch.translate(alias))
                self._patterns.append((pattern, tuple(deployments)))
            else:
                self._exact[alias] = tuple(deployments)

    def _deployments_for(self, model: str) -> tuple[Deployment, ...]:
        found = self._exact.get(model)
        if found is not None:
            return found
        memo = self._memo.get(model)
        if memo is not None:
            return memo
        found = next((d for p, d in self._patterns if p.match(model)), ())
        if len(self._memo) >= _MEMO_LIMIT:  # client-chosen names: keep the memo bounded
            self._memo.clear()
        self._memo[model] = found
        return found

    def resolve(self, model: str) -> list[Route]:
        """Every route that may serve ``model`` (its alias's deployments, in config order);
        empty when none is configured. The delivery layer orders and falls back."""
        return [Route(d, d.upstream_model or model) for d in self._deployments_for(model)]

    def has_context_windows(self) -> bool:
        every = [*self._exact.values(), *(d for _, d in self._patterns)]
        return any(d.context_window is not None for group in every for d in group)

    def deployments_of(self, alias: str) -> tuple[Deployment, ...]:
        """The deployments of a configured model_name (exact or pattern), as configured."""
        exact = self._exact.get(alias)
        if exact is not None:
            return exact
        return next((d for _, d in self._patterns if d[0].alias == alias), ())

    def listed_models(self) -> list[str]:
        """Model names to advertise: exact aliases, then catalog ids a pattern serves."""
        names = list(self._exact)
        for pattern, _ in self._patterns:
            names.extend(m for m in ANTHROPIC_MODELS if pattern.match(m) and m not in names)
        return names
