"""The Velocity REST API (/u, /m, /v) on the daemon's port, over the same accounts, groups and VMs."""
from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from aiohttp import web

from middlewared.plugin import Plugin
from middlewared.plugins.velocity import groups, media, mediastore, openapi, users, vms, vmstate
from middlewared.plugins.velocity.endpoint import Endpoint, Velocity, route_table

if TYPE_CHECKING:
    from middlewared.middleware import Middleware

ENDPOINTS: tuple[Endpoint, ...] = (*users.ENDPOINTS, *groups.ENDPOINTS, *vms.ENDPOINTS, *vmstate.ENDPOINTS,
                                   *media.ENDPOINTS)


def routes(middleware: "Middleware") -> Sequence[web.RouteDef]:
    """Every endpoint, sharing one set of authkeys, and the OpenAPI document at /v/openapi.json."""
    spec = openapi.document(ENDPOINTS)

    async def serve_spec(request: web.Request) -> web.Response:
        return web.json_response(spec)
    return [web.get("/v/openapi.json", serve_spec), *route_table(Velocity(middleware), list(ENDPOINTS))]


async def setup(middleware: "Middleware") -> None:
    """Media pool directories ready, leftovers of interrupted uploads gone."""
    await mediastore.prepare_pools(middleware)


PLUGIN = Plugin(name="velocity", depends=("core", "vm", "auth", "account"), setup=setup, routes=routes)
