"""Process life cycle: knowing that the process is draining, from the stop signal on.

uvicorn handles SIGTERM by closing its listening socket and idle connections (after up to one
0.1 s tick), waiting up to ``server.shutdown_grace`` for in-flight requests, cancelling the
rest and only then sending the ASGI lifespan shutdown. Readiness must turn false before all
that, at the signal itself, so a load balancer stops sending traffic while requests drain.
The app chains a flag onto the stop-signal handlers uvicorn installed before the app
started (in every worker process), instead of replacing or patching uvicorn's server.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

_draining = False


def draining() -> bool:
    """True once this process was told to stop (SIGTERM or SIGINT)."""
    return _draining


def mark_draining() -> None:
    global _draining
    _draining = True


def watch_stop_signals() -> None:
    """Raise the draining flag when SIGTERM or SIGINT arrives, then run the handler that was
    there (uvicorn's, which starts the drain). Called at application start-up, when the
    server's handlers are in place; uvicorn restores its own saved handlers at exit."""
    if threading.current_thread() is not threading.main_thread():
        return  # signals are delivered to the main thread only; nothing to chain onto
    for sig in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(sig)
        if callable(previous):
            signal.signal(sig, _chained(previous))


def _chained(previous: Any) -> Any:
    def handler(signum: int, frame: FrameType | None) -> None:
        mark_draining()
        previous(signum, frame)

    return handler
