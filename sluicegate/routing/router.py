"""Model alias -> deployment.

Clients name a model; the configuration's ``model_list`` maps names (exact, or wildcard
patterns such as ``claude-*``) to a deployment: provider, upstream base URL, key and the
upstream model id. Exact names win over patterns; patterns are tried in config order.
Today an alias has one deployment; the ordered list returned by :meth:`Router.resolve` is
the seam where weighted deployments and fallbacks plug in.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from sluicegate.catalog import ANTHROPIC_MODELS
from sluicegate.settings import ModelEntry, Secret, Timeouts
from sluicegate.translate.quirks import OpenAIQuirks

_MEMO_LIMIT = 4096


@dataclass(frozen=True, slots=True)
class Deployment:
    name: str  # the config entry's model_name, used in logs and response headers
    provider: str
    api_base: str
    api_key: Secret | None
    upstream_model: str | None  # None: send the model name the client asked for
    timeouts: Timeouts
    default_max_tokens: int = 4096
    auth_style: str = "bearer"  # provider openai: bearer | api-key | none
    extra_headers: tuple[tuple[str, str], ...] = ()
    quirks: OpenAIQuirks = field(default_factory=OpenAIQuirks)


@dataclass(frozen=True, slots=True)
class Route:
    """One way to serve a requested model: the deployment and the upstream model id."""

    deployment: Deployment
    upstream_model: str


class Router:
    def __init__(
        self,
        entries: Iterable[ModelEntry],
        default_timeouts: Timeouts,
        builtin_fake: tuple[str, Secret] | None = None,
    ) -> None:
        """``builtin_fake``: URL and key of the in-process fake upstream, when one runs."""
        self._exact: dict[str, Deployment] = {}
        self._patterns: list[tuple[re.Pattern[str], Deployment]] = []
        self._memo: dict[str, Deployment | None] = {}
        for entry in entries:
            api_base, api_key = entry.api_base, entry.api_key
            if entry.uses_builtin_fake:
                if builtin_fake is None:
                    raise ValueError(f"{entry.model_name}: the built-in fake upstream is off")
                api_base, api_key = builtin_fake
            deployment = Deployment(
                name=entry.model_name,
                provider=entry.provider,
                api_base=api_base,
                api_key=api_key,
                upstream_model=entry.model,
                timeouts=entry.timeouts.over(default_timeouts),
                default_max_tokens=entry.default_max_tokens,
                auth_style=entry.auth_style,
                extra_headers=tuple(entry.extra_headers.items()),
                quirks=OpenAIQuirks(
                    stream_options=entry.stream_options, max_tokens_field=entry.max_tokens_field
                ),
            )
            if entry.is_wildcard:
                pattern = re.compile(fnmatch.translate(entry.model_name))
                self._patterns.append((pattern, deployment))
            else:
                self._exact[entry.model_name] = deployment

    def _deployment_for(self, model: str) -> Deployment | None:
        found = self._exact.get(model)
        if found is not None:
            return found
        if model in self._memo:
            return self._memo[model]
        found = next((d for p, d in self._patterns if p.match(model)), None)
        if len(self._memo) >= _MEMO_LIMIT:  # client-chosen names: keep the memo bounded
            self._memo.clear()
        self._memo[model] = found
        return found

    def resolve(self, model: str) -> list[Route]:
        """The routes that may serve ``model``, best first; empty when none is configured."""
        deployment = self._deployment_for(model)
        if deployment is None:
            return []
        return [Route(deployment, deployment.upstream_model or model)]

    def listed_models(self) -> list[str]:
        """Model names to advertise: exact aliases, then catalog ids a pattern serves."""
        names = list(self._exact)
        for pattern, _ in self._patterns:
            names.extend(m for m in ANTHROPIC_MODELS if pattern.match(m) and m not in names)
        return names
