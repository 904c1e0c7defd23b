"""Known Anthropic model ids, used to list what a wildcard route such as ``claude-*`` serves.

``GET /v1/models`` must answer fast without calling the provider, so wildcard routes are
expanded against this list. Release dates are not tracked here: Anthropic's model object
allows the epoch for an unknown date.
"""

from __future__ import annotations

ANTHROPIC_MODELS: tuple[str, ...] = (
    "claude-opus-5-5",
    "claude-sonnet-5-5",
    "claude-haiku-5-5",
    "claude-opus-5",
    "claude-sonnet-5",
    "claude-opus-4-8",
    "claude-opus-4-7",
    "claude-opus-4-6",
    "claude-sonnet-4-6",
    "claude-opus-4-5",
    "claude-sonnet-4-5",
    "claude-haiku-4-5",
)

UNKNOWN_RELEASE = "1970-01-01T00:00:00Z"


def display_name(model_id: str) -> str:
    """``claude-sonnet-4-6`` -> ``Claude Sonnet 4.6``; other ids are shown as they are."""
    parts = model_id.split("-")
    if len(parts) < 2 or parts[0] != "claude" or not all(p.isdigit() for p in parts[2:]):
        return model_id
    version = ".".join(parts[2:])
    return f"Claude {parts[1].capitalize()} {version}".rstrip()
