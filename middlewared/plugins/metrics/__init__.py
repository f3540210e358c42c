"""GET /metrics: Prometheus text exposition of per-VM statistics and the daemon's own figures.

Authentication is ``Authorization: Bearer <API key or token>`` (what Prometheus' ``authorization`` scrape
setting sends). READONLY_ADMIN (or FULL_ADMIN) sees everything; VM_READ, global or scoped, sees the series
of the VMs it may read and none of the daemon's figures.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Sequence

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from middlewared import roles as roles_
from middlewared.credentials import Credentials
from middlewared.plugin import Plugin
from middlewared.plugins.auth.login import SUCCESS, check_api_key, split_key, token_outcome
from middlewared.plugins.metrics.collector import Snapshot, SnapshotCollector, daemon_figures
from middlewared.plugins.vm import vm_service
from middlewared.plugins.vm.model import domain_name

if TYPE_CHECKING:
    from middlewared.middleware import Middleware

logger = logging.getLogger(__name__)

VM_READ = ("VM_READ",)
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="middlewared"'}


async def bearer_credentials(middleware: "Middleware", request: web.Request) -> Credentials | None:
    """The credentials of the request's bearer API key (``<id>-<secret>``) or token, or None."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        return None
    if split_key(value) is not None:
        outcome = await check_api_key(middleware, value, None)
    else:
        outcome = token_outcome(middleware, value, request.remote)
    if outcome.response_type != SUCCESS or outcome.credentials is None or outcome.credentials.expired:
        return None
    return outcome.credentials


async def snapshot_for(middleware: "Middleware", credentials: Credentials) -> Snapshot:
    """The figures these credentials may see."""
    service = vm_service(middleware)
    vms = [{"id": vm_id, "name": r["name"], "state": service.hypervisor.status(domain_name(vm_id, r["name"])).state}
           for vm_id, r in (await service.stored_vms()).items()]
    vms = middleware.visible_rows("vm.query", VM_READ, vms, credentials)
    ids = {vm["id"] for vm in vms}
    sampler = service.stats_sampler
    snapshot = Snapshot(vms=vms, stats={i: e for i, e in sampler.table.latest.items() if i in ids},
                        sample_seconds=sampler.last_cost)
    if credentials.has_role((roles_.READONLY_ADMIN,)):
        daemon_figures(middleware, snapshot)
    return snapshot


def routes(middleware: "Middleware") -> Sequence[web.RouteDef]:
    """The /metrics route."""
    async def metrics(request: web.Request) -> web.Response:
        credentials = await bearer_credentials(middleware, request)
        if credentials is None:
            raise web.HTTPUnauthorized(text="A valid API key or token is required (Authorization: Bearer ...)",
                                       headers=CHALLENGE)
        if not (credentials.has_role((roles_.READONLY_ADMIN, *VM_READ)) or "VM_READ" in credentials.scoped_roles()):
            raise web.HTTPForbidden(text="Not authorized: VM_READ or READONLY_ADMIN is needed")
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SnapshotCollector(await snapshot_for(middleware, credentials)))
        response = web.Response(body=generate_latest(registry), headers={"Cache-Control": "no-store"})
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response
    return [web.get("/metrics", metrics)]


PLUGIN = Plugin(name="metrics", depends=("vm", "auth"), routes=routes)
