"""The Velocity REST API (/u, /m, /v) on the daemon's port, over the same accounts, groups and VMs."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from aiohttp import web

from middlewared.plugin import Plugin
from middlewared.plugins.velocity import groups, media, mediastore, users, vms, vmstate
from middlewared.plugins.velocity.endpoint import Endpoint, Velocity, route_table

if TYPE_CHECKING:
    from middlewared.middleware import Middleware

ENDPOINTS: tuple[Endpoint, ...] = (*users.ENDPOINTS, *groups.ENDPOINTS, *vms.ENDPOINTS, *vmstate.ENDPOINTS,
                                   *media.ENDPOINTS)


def routes(middleware: "Middleware") -> Sequence[web.RouteDef]:
    """Every endpoint, sharing one set of authkeys."""
    return route_table(Velocity(middleware), list(ENDPOINTS))


async def setup(middleware: "Middleware") -> None:
    """Media pool directories ready, leftovers of interrupted uploads gone."""
    await mediastore.prepare_pools(middleware)


PLUGIN = Plugin(name="velocity", depends=("core", "vm", "auth", "account"), setup=setup, routes=routes)
