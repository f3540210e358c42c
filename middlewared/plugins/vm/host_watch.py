"""What the daemon keeps of libvirtd's state for as long as one connection lasts: host facts until libvirt reports
a change to them, and the definitions vm.start would otherwise write again unchanged."""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Awaitable, Callable, TypeVar, cast

import libvirt

logger = logging.getLogger(__name__)

T = TypeVar("T")

# Kept fact -> (register method, deregister method, event id) of the libvirt events that report its changes: a
# network defined, started, stopped or removed; a node device (USB...) added or removed.
EVENTS = {
    "networks": ("networkEventRegisterAny", "networkEventDeregisterAny", libvirt.VIR_NETWORK_EVENT_ID_LIFECYCLE),
    "node_devices": ("nodeDeviceEventRegisterAny", "nodeDeviceEventDeregisterAny",
                     libvirt.VIR_NODE_DEVICE_EVENT_ID_LIFECYCLE),
}


class HostWatch:
    """Facts kept per connection (see the module docstring); the Hypervisor attaches each new connection."""

    def __init__(self) -> None:
        self._kept: dict[str, Any] = {}
        # How many changes were reported so far: a read that saw one happen meanwhile is not kept.
        self._changes = 0
        # Kept fact -> (deregister method, callback id) on the current connection.
        self._callbacks: dict[str, tuple[str, int]] = {}
        # Domain -> (the XML this daemon last defined it from, libvirt's definition right after).
        self.defined: dict[str, tuple[str, str]] = {}

    def attach(self, conn: libvirt.virConnect) -> None:
        """A new connection (after a libvirtd restart, whatever was kept may have changed): forget everything
        and register the events (on the event loop's thread, as every libvirt event registration)."""
        self._kept.clear()
        self.defined.clear()
        self._changes += 1
        self._callbacks = {}
        for key, (register, deregister, event_id) in EVENTS.items():
            try:
                cid = getattr(conn, register)(None, event_id, self._on_change, key)
            except libvirt.libvirtError as e:
                # Without the events (a driver libvirtd lacks), the fact is read anew each time.
                logger.info("libvirt reports no %s changes (%s): reading them on every request", key, e)
                continue
            self._callbacks[key] = (deregister, cid)

    def detach(self, conn: libvirt.virConnect) -> None:
        """Deregister the events from a connection being closed."""
        for deregister, cid in self._callbacks.values():
            with contextlib.suppress(libvirt.libvirtError):
                getattr(conn, deregister)(cid)
        self._callbacks = {}

    def _on_change(self, conn: libvirt.virConnect, obj: Any, event: int, detail: int, key: str) -> None:
        self._kept.pop(key, None)
        self._changes += 1

    async def get(self, key: str, read: Callable[[], Awaitable[T]], fresh: bool = False) -> T:
        """The kept value of `key`, else what read() returns (kept when libvirt reports changes of it)."""
        if key in self._kept and not fresh:
            return cast(T, self._kept[key])
        changes = self._changes
        value = await read()
        # Kept only when no change was reported while it was being read (it may predate the change).
        if changes == self._changes and key in self._callbacks:
            self._kept[key] = value
        return value
