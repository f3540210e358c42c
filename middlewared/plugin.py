"""A plugin: services, events, dependencies and a paired setup/teardown, declared in one place."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Optional, Sequence

from aiohttp import web

if TYPE_CHECKING:
    from middlewared.credentials import Credentials
    from middlewared.middleware import Middleware
    from middlewared.service import Service

Hook = Callable[["Middleware"], Awaitable[None]]
# HTTP routes a plugin serves on the daemon's port (handlers close over the middleware they are given).
Routes = Callable[["Middleware"], Sequence[web.RouteDef]]
# The part of one event message that credentials holding the event's roles only on some VMs may see
# (None: nothing), for events that carry several VMs at once.
ScopedView = Callable[["Middleware", dict[str, Any], "Credentials"], Optional[dict[str, Any]]]


async def _nothing(middleware: "Middleware") -> None:
    return None


def _no_routes(middleware: "Middleware") -> Sequence[web.RouteDef]:
    return ()


@dataclass(frozen=True)
class EventSpec:
    """An event clients may subscribe to, and the roles that may."""

    name: str
    description: str
    roles: tuple[str, ...]
    scoped_view: ScopedView | None = None
    # Whether core.subscribe's "since" replays it (not for periodic samples, which the next one replaces).
    replay: bool = True


@dataclass(frozen=True)
class Plugin:
    """What a plugin brings: services, events, HTTP routes, dependencies, setup and teardown."""

    name: str
    services: tuple[type["Service"], ...] = ()
    events: tuple[EventSpec, ...] = ()
    depends: tuple[str, ...] = ()
    setup: Hook = field(default=_nothing)
    teardown: Hook = field(default=_nothing)
    routes: Routes = field(default=_no_routes)
    # Run when the HTTP server begins to shut down, before requests still open are cancelled: where a plugin
    # closes its long-lived WebSockets with a proper close frame.
    stop_serving: Hook = field(default=_nothing)
