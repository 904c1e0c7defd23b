"""Who is calling, as the data path needs it: :class:`Principal`, built once per load of the
key table (never per request) with its limits, budgets, models and IP allow-lists ready.

A principal comes from a gateway key (and its partner), or, for a JWT, from the partner its
claims name (:meth:`Principal.for_partner`, with the token's subject and models filled in).
"""

from __future__ import annotations

import fnmatch
import ipaddress
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from sluicegate.policy.budgets import Budget
from sluicegate.settings_auth import Network
from sluicegate.state.base import RateLimit
from sluicegate.store.keys import KeyRecord
from sluicegate.store.partners import PartnerRecord

log = logging.getLogger("sluicegate.auth")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the gateway key, its partner, and what they may do and spend.

    Built once per key-table load, never per request: the limits and budgets below are
    ready for the governor as they are.
    """

    key_id: str
    key_name: str
    key_hash: str
    models: tuple[str, ...]
    expires_at: float | None  # unix time
    partner_id: str | None = None
    partner_name: str | None = None
    weight: float = 1.0  # the partner's share in fair admission
    limits: tuple[RateLimit, ...] = ()  # the key's and the partner's own rate limits
    budgets: tuple[Budget, ...] = ()
    # IP allow-lists (the key's, the partner's): every one must admit the client.
    networks: tuple[tuple[Network, ...], ...] = ()

    def may_use(self, model_name: str) -> bool:
        if not self.models:
            return True
        return any(fnmatch.fnmatchcase(model_name, pattern) for pattern in self.models)

    def admits(self, address: Address | None) -> bool:
        """May a request from ``address`` use this principal? (Unknown address: no.)"""
        if not self.networks:
            return True
        if address is None:
            return False
        return all(any(address in network for network in allowed) for allowed in self.networks)

    @property
    def fairness_group(self) -> str:
        """Who shares one fair-queue slot: the partner, or a key of its own without one."""
        return f"partner:{self.partner_id}" if self.partner_id else f"key:{self.key_id}"

    @classmethod
    def from_record(cls, record: KeyRecord, partner: PartnerRecord | None = None) -> Principal:
        key_scope = f"key:{record.id}"
        limits = [_rate_limit(key_scope, record.rpm, record.tpm, record.max_parallel)]
        budgets = [
            Budget.of(key_scope, f"key {record.name!r}", record.budget_usd, record.budget_period)
        ]
        networks = [_networks(record.allowed_ips, f"key {record.id}")]
        if partner is not None:
            template = cls.for_partner(partner)
            limits.extend(template.limits)
            budgets.extend(template.budgets)
            networks.extend(template.networks)
        return cls(
            key_id=record.id,
            key_name=record.name,
            key_hash=record.key_hash,
            models=tuple(record.models),
            expires_at=record.expires_at.timestamp() if record.expires_at else None,
            partner_id=partner.id if partner else None,
            partner_name=partner.name if partner else None,
            weight=partner.weight if partner else 1.0,
            limits=tuple(x for x in limits if x is not None),
            budgets=tuple(x for x in budgets if x is not None),
            networks=tuple(n for n in networks if n is not None),
        )

    @classmethod
    def for_partner(cls, partner: PartnerRecord) -> Principal:
        """The partner's part alone (limits, budget, weight, allow-list): what a JWT whose
        claims name this partner gets, with the token's subject and models filled in."""
        scope = f"partner:{partner.id}"
        limit = _rate_limit(scope, partner.rpm, partner.tpm, partner.max_parallel)
        label = f"partner {partner.name!r}"
        budget = Budget.of(scope, label, partner.budget_usd, partner.budget_period)
        networks = _networks(partner.allowed_ips, f"partner {partner.id}")
        return cls(
            key_id="",
            key_name="",
            key_hash="",
            models=(),
            expires_at=None,
            partner_id=partner.id,
            partner_name=partner.name,
            weight=partner.weight,
            limits=(limit,) if limit is not None else (),
            budgets=(budget,) if budget is not None else (),
            networks=(networks,) if networks is not None else (),
        )


def _rate_limit(
    scope: str, rpm: int | None, tpm: int | None, max_parallel: int | None
) -> RateLimit | None:
    if rpm is None and tpm is None and max_parallel is None:
        return None
    return RateLimit(scope, rpm, tpm, max_parallel)


def _networks(allowed: Sequence[str], owner: str) -> tuple[Network, ...] | None:
    """A stored allow-list, parsed; None when empty (no restriction). An entry that does not
    parse (the store validates on write, so only a hand-edited row) admits nobody: the list
    stays, smaller, and never turns into "anywhere"."""
    if not allowed:
        return None
    parsed: list[Network] = []
    for text in allowed:
        try:
            parsed.append(ipaddress.ip_network(text, strict=False))
        except ValueError:
            log.warning("%s: allowed_ips entry is not a network; ignored", owner)
    return tuple(parsed)
