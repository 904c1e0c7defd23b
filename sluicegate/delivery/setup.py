"""Building the delivery layer from the settings: breakers (in-process or shared through
Redis) and the deliverer that plans and runs attempts."""

from __future__ import annotations

import logging

from sluicegate.delivery.attempts import Deliverer
from sluicegate.delivery.breaker import Breakers, BreakerSettings, BreakerState, SharedBreakers
from sluicegate.routing.router import Router
from sluicegate.settings import Settings

log = logging.getLogger("sluicegate.breaker")


def _breaker_changed(name: str, old: BreakerState, new: BreakerState) -> None:
    # One event per transition: operators see a deployment leave and rejoin the pool. An
    # opening this process tripped is also a WARNING alert (breaker.opened, from breaker.py);
    # one learned from another process through Redis was alerted there.
    log.info(
        "breaker.%s",
        new.value,
        extra={"deployment": name, "from_state": old.value, "to_state": new.value},
    )


def build_breakers(settings: Settings) -> Breakers | None:
    config = settings.routing.breaker
    if not config.enabled:
        return None
    breaker_settings = BreakerSettings(**config.model_dump(exclude={"enabled", "shared"}))
    redis_url = settings.redis_url
    if redis_url is not None and config.shared != "no":  # "auto" and "yes" share
        return SharedBreakers(breaker_settings, redis_url.reveal(), on_change=_breaker_changed)
    return Breakers(breaker_settings, on_change=_breaker_changed)


def build_deliverer(settings: Settings, router: Router) -> Deliverer:
    return Deliverer(settings.routing, router, build_breakers(settings))


async def start_deliverer(deliverer: Deliverer) -> None:
    if isinstance(deliverer.breakers, SharedBreakers):
        await deliverer.breakers.start()


async def close_deliverer(deliverer: Deliverer) -> None:
    if isinstance(deliverer.breakers, SharedBreakers):
        await deliverer.breakers.close()
