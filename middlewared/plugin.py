"""A plugin: services, events, dependencies and a paired setup/teardown, declared in one place."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Awaitable, Callable

if TYPE_CHECKING:
    from middlewared.middleware import Middleware
    from middlewared.service import Service

Hook = Callable[["Middleware"], Awaitable[None]]


async def _nothing(middleware: "Middleware") -> None:
    return None


@dataclass(frozen=True)
class EventSpec:
    """An event clients may subscribe to, and the roles that may."""

    name: str
    description: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class Plugin:
    """What a plugin brings: services, events, dependencies, setup and teardown."""

    name: str
    services: tuple[type["Service"], ...] = ()
    events: tuple[EventSpec, ...] = ()
    depends: tuple[str, ...] = ()
    setup: Hook = field(default=_nothing)
    teardown: Hook = field(default=_nothing)
