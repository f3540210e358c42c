"""vm.*: virtual machine records, lifecycle and libvirt domain XML."""
from __future__ import annotations

import asyncio
import json
import logging
from typing import TYPE_CHECKING, Sequence

from aiohttp import web

from middlewared.plugin import Plugin
from middlewared.plugins.vm.hypervisor import Hypervisor
from middlewared.plugins.vm.kvm import KvmProbe, cached_probe_kvm, host_fingerprint, remember, resolve_domain_type
from middlewared.plugins.vm.model import DomainType, VMState
from middlewared.plugins.vm.reconcile import reconcile
from middlewared.plugins.vm.service import VMService
from middlewared.plugins.vm.serial_api import follow_states, routes as serial_routes
from middlewared.plugins.vm.serial_console import SerialHub
from middlewared.plugins.vm.stats_api import EVENT as STATS_EVENT, Sampler

if TYPE_CHECKING:
    from middlewared.middleware import Middleware

logger = logging.getLogger(__name__)


def vm_service(middleware: "Middleware") -> VMService:
    """The vm service instance."""
    return middleware.service_of(VMService)


async def setup(middleware: "Middleware") -> None:
    """Connect to libvirt, settle the domain type, follow domain states, start autostart VMs."""
    service = vm_service(middleware)
    setting = middleware.config.libvirt.domain_type
    if setting == "auto":
        await recall_kvm_probe(middleware)
    domain_type, reason = await asyncio.to_thread(resolve_domain_type, setting)
    if setting == "auto":
        await store_kvm_probe(middleware)
    if reason:
        logger.warning("using TCG emulation (domain type qemu): %s", reason)
    service.domain_type = DomainType(domain_type)
    service.instance = await instance_uuid(middleware)
    service.hypervisor = Hypervisor(middleware.config.libvirt.uri)
    service.hypervisor.listeners.append(service.on_domain_state)
    service.serial_consoles = SerialHub()
    follow_states(service)
    await service.hypervisor.start()
    if service.hypervisor.connected.is_set():
        # Before the API opens: the first answers already see libvirt and the rows agree.
        await reconcile(service)
        later = autostart(service)
    else:
        later = reconcile_then_autostart(service)
    await service._records()
    service.background.add(asyncio.get_running_loop().create_task(later))
    service.stats_sampler = Sampler(service)
    service.background.add(asyncio.get_running_loop().create_task(service.stats_sampler.run()))


async def instance_uuid(middleware: "Middleware") -> str:
    """This daemon instance's UUID, made once by a migration."""
    rows = await middleware.db.fetchall("SELECT value FROM settings WHERE key = 'instance_uuid'")
    return str(rows[0]["value"])


async def reconcile_then_autostart(service: VMService) -> None:
    """Once libvirt answers (it did not at start-up): reconcile, then autostart."""
    await reconcile(service)
    await autostart(service)


KVM_PROBE_KEY = "vm.kvm_probe"


async def recall_kvm_probe(middleware: "Middleware") -> None:
    """Reuse the stored KVM verdict when the host has not changed since it was made (saves a QEMU boot)."""
    assert middleware.datastore is not None
    rows = await middleware.datastore.fetchall("SELECT value FROM settings WHERE key = ?", (KVM_PROBE_KEY,))
    if not rows:
        return
    try:
        stored = json.loads(rows[0]["value"])
    except ValueError:
        return
    if stored.get("fingerprint") == await asyncio.to_thread(host_fingerprint):
        remember(KvmProbe(bool(stored["usable"]), stored.get("error")))


async def store_kvm_probe(middleware: "Middleware") -> None:
    """Keep the verdict for the next start."""
    assert middleware.datastore is not None
    probe = await cached_probe_kvm()
    value = json.dumps({"fingerprint": await asyncio.to_thread(host_fingerprint), "usable": probe.usable,
                        "error": probe.error})
    await middleware.datastore.transaction(lambda db: db.execute(
        "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (KVM_PROBE_KEY, value)))


async def autostart(service: VMService) -> None:
    """Start every stopped VM marked autostart (templates never start); a failure is logged, not fatal."""
    await service.hypervisor.connected.wait()
    for vm in await service.query([["autostart", "=", True], ["template", "=", False],
                                   ["status.state", "=", VMState.STOPPED.value]]):
        try:
            await service.start(vm["id"], {"overcommit": False})
            logger.info("autostarted VM %s", vm["name"])
        except Exception as e:
            logger.error("cannot autostart VM %s: %s", vm["name"], e)


async def teardown(middleware: "Middleware") -> None:
    """Leave VMs running (they are adopted on the next start) unless configured to stop them."""
    service = vm_service(middleware)
    for task in service.background:
        task.cancel()
    await asyncio.gather(*service.background, return_exceptions=True)
    if hasattr(service, "serial_consoles"):
        service.serial_consoles.close_all()
    if not hasattr(service, "hypervisor"):
        return
    if middleware.config.libvirt.stop_vms_on_shutdown:
        running = await service.query([["status.state", "!=", VMState.STOPPED.value]])
        await asyncio.gather(*(middleware.call("vm.stop", vm["id"], {"force_after_timeout": True})
                               for vm in running), return_exceptions=True)
    await service.hypervisor.stop()


def routes(middleware: "Middleware") -> Sequence[web.RouteDef]:
    """The web console (spice-html5's files, the WebSocket-to-SPICE bridges) and the serial consoles."""
    return [*vm_service(middleware).console_http.routes(), *serial_routes(middleware)]


async def stop_serving(middleware: "Middleware") -> None:
    """End the web console bridges and serial console viewers still open."""
    vm_service(middleware).serial_consoles.close_all()
    await vm_service(middleware).console_http.close_all()


PLUGIN = Plugin(name="vm", services=(VMService,), events=(STATS_EVENT,), depends=("core",), setup=setup,
                teardown=teardown, routes=routes, stop_serving=stop_serving)
