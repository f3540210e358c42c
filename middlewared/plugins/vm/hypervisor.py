"""The libvirt connection: blocking calls in threads, lifecycle events on the loop, reconnects, a state cache."""
from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, TypeVar

import libvirt
import libvirtaio

from middlewared.errors import CallError
from middlewared.plugins.vm.host_watch import HostWatch
from middlewared.plugins.vm.model import VMState
from middlewared.plugins.vm.process import started_at

logger = logging.getLogger(__name__)

T = TypeVar("T")

# libvirt's virDomainState codes, named as vm.status shows them in domain_state.
DOMAIN_STATES = {
    libvirt.VIR_DOMAIN_NOSTATE: "NOSTATE", libvirt.VIR_DOMAIN_RUNNING: "RUNNING",
    libvirt.VIR_DOMAIN_BLOCKED: "BLOCKED", libvirt.VIR_DOMAIN_PAUSED: "PAUSED",
    libvirt.VIR_DOMAIN_SHUTDOWN: "SHUTDOWN", libvirt.VIR_DOMAIN_SHUTOFF: "SHUTOFF",
    libvirt.VIR_DOMAIN_CRASHED: "CRASHED", libvirt.VIR_DOMAIN_PMSUSPENDED: "PMSUSPENDED",
}
# Lifecycle event -> the domain state it leaves the domain in (None: the event does not change it).
EVENT_STATES = {
    libvirt.VIR_DOMAIN_EVENT_DEFINED: None, libvirt.VIR_DOMAIN_EVENT_UNDEFINED: None,
    libvirt.VIR_DOMAIN_EVENT_STARTED: "RUNNING", libvirt.VIR_DOMAIN_EVENT_SUSPENDED: "PAUSED",
    libvirt.VIR_DOMAIN_EVENT_RESUMED: "RUNNING", libvirt.VIR_DOMAIN_EVENT_STOPPED: "SHUTOFF",
    libvirt.VIR_DOMAIN_EVENT_SHUTDOWN: None, libvirt.VIR_DOMAIN_EVENT_PMSUSPENDED: "PMSUSPENDED",
    libvirt.VIR_DOMAIN_EVENT_CRASHED: "CRASHED",
}
# domain_state -> the state vm.query reports.
API_STATES = {"RUNNING": VMState.RUNNING, "BLOCKED": VMState.RUNNING, "SHUTDOWN": VMState.RUNNING,
              "PAUSED": VMState.SUSPENDED, "PMSUSPENDED": VMState.SUSPENDED, "SHUTOFF": VMState.STOPPED,
              "CRASHED": VMState.ERROR, "NOSTATE": VMState.ERROR}

_aio_registered = False
RECONNECT_GRACE = 10.0


def _register_event_impl() -> None:
    # libvirt needs its event implementation registered once per process, before any connection.
    global _aio_registered
    if not _aio_registered:
        libvirtaio.virEventRegisterAsyncIOImpl()
        # libvirt's default handler prints every error to stderr ("metadata not found" for each untagged
        # domain...), even those the caller expects and handles; they reach callers as exceptions anyway.
        libvirt.registerErrorHandler(_ignore_error, None)
        _aio_registered = True


def _ignore_error(ctx: Any, error: Any) -> None:
    return None


@dataclass(frozen=True)
class DomainStatus:
    """What vm.status returns for one domain."""

    state: VMState
    domain_state: str
    pid: int | None
    started_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state.value, "pid": self.pid, "domain_state": self.domain_state,
                "started_at": self.started_at}


STOPPED = DomainStatus(VMState.STOPPED, "SHUTOFF", None)

Listener = Callable[[str, str | None], None]


class Hypervisor:
    """One libvirt connection shared by the daemon; keeps domain states current from events."""

    def __init__(self, uri: str) -> None:
        self.uri = uri
        self.conn: libvirt.virConnect | None = None
        # The second connection of run_bulk, opened on first use.
        self._bulk: libvirt.virConnect | None = None
        self._bulk_opening = asyncio.Lock()
        self.states: dict[str, str] = {}
        # The names of the running or suspended domains among them, kept with them.
        self.active: set[str] = set()
        self.listeners: list[Listener] = []
        # Called with a domain's name when any domain is defined or undefined, and with None on (re)connecting,
        # when such events may have been missed.
        self.definition_listeners: list[Callable[[str | None], None]] = []
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix="libvirt")
        self._reconnect_task: asyncio.Task[None] | None = None
        self._callback_ids: list[int] = []
        self._closing = False
        self.connected = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        # Facts of the host that do not change while the daemon runs (capabilities.host_fact).
        self.facts: dict[str, Any] = {}
        # Facts kept until libvirt reports a change to them (watched()), definitions vm.start need not repeat.
        self.host_watch = HostWatch()
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}
        # Domain -> (QEMU pid, when it started): /proc is read once per QEMU process, not on every query.
        self._started: dict[str, tuple[int, float | None]] = {}

    # -- connection ------------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect now if libvirtd answers; otherwise keep trying in the background."""
        _register_event_impl()
        self._loop = asyncio.get_running_loop()
        try:
            await self._connect()
        except libvirt.libvirtError as e:
            logger.warning("libvirt at %s is not reachable (%s); retrying in the background", self.uri, e)
            self._schedule_reconnect()

    async def stop(self) -> None:
        """Close the connection and stop the threads."""
        self._closing = True
        if self._reconnect_task:
            self._reconnect_task.cancel()
        conn, self.conn = self.conn, None
        self.connected.clear()
        if conn is not None:
            for cid in self._callback_ids:
                try:
                    conn.domainEventDeregisterAny(cid)
                except libvirt.libvirtError:
                    pass
            self.host_watch.detach(conn)
            try:
                conn.unregisterCloseCallback()
            except libvirt.libvirtError:
                pass
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        await self._close_bulk()
        # Let calls under way finish while the loop still runs: a libvirt thread completing after
        # the loop has closed would fail to hand back its result ("Event loop is closed").
        self._executor.shutdown(wait=False, cancel_futures=True)
        try:
            await asyncio.wait_for(asyncio.to_thread(self._executor.shutdown, True), 5)
        except asyncio.TimeoutError:
            logger.warning("libvirt calls still running at shutdown")

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        conn = await loop.run_in_executor(self._executor, libvirt.open, self.uri)
        self._callback_ids = [conn.domainEventRegisterAny(
            None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, self._on_lifecycle, None)]
        conn.registerCloseCallback(self._on_close, None)
        self.host_watch.attach(conn)
        self.conn = conn
        self._defined(None)
        await self.refresh()
        self.connected.set()
        logger.info("connected to libvirt at %s", self.uri)

    async def watched(self, key: str, fn: Callable[[libvirt.virConnect], T], fresh: bool = False) -> T:
        """fn(conn) run in a libvirt thread, its answer kept until libvirt reports a change of `key` ("networks",
        "node_devices") or the connection is renewed; read anew each time when libvirt cannot report changes.

        An event is sent after the change it reports and arrives a moment later: a caller about to refuse
        something because of a kept answer reads it again first (fresh=True)."""
        return await self.host_watch.get(key, lambda: self.run(fn), fresh)

    def _on_close(self, conn: libvirt.virConnect, reason: int, opaque: Any) -> None:
        # libvirt calls this from whichever thread notices the end of the connection: the event loop
        # (libvirtaio) or a worker thread in the middle of a call. Only the loop may touch our state.
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is not loop:
            loop.call_soon_threadsafe(self._closed, conn, reason)
        else:
            self._closed(conn, reason)

    def _closed(self, conn: libvirt.virConnect, reason: int) -> None:
        if self._closing or conn is not self.conn:
            return
        logger.warning("libvirt connection closed (reason %d); reconnecting", reason)
        self.conn = None
        self.connected.clear()
        self._schedule_reconnect()

    def _schedule_reconnect(self) -> None:
        if self._reconnect_task is None or self._reconnect_task.done():
            self._reconnect_task = asyncio.get_running_loop().create_task(self._reconnect_loop())

    async def _reconnect_loop(self) -> None:
        delay = 0.2
        while not self._closing:
            try:
                await self._connect()
                return
            except libvirt.libvirtError:
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # -- calls ----------------------------------------------------------------------------------
    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(conn, *args) in a libvirt thread; libvirt errors become CallError.

        While libvirtd is away (a restart), the call waits up to RECONNECT_GRACE seconds for it.
        """
        conn = self.conn
        if conn is None and not self._closing:
            try:
                await asyncio.wait_for(self.connected.wait(), RECONNECT_GRACE)
            except asyncio.TimeoutError:
                pass
            conn = self.conn
        if conn is None:
            raise CallError(f"libvirt at {self.uri} is not reachable", errno.ECONNREFUSED)
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, conn, *args)
        except libvirt.libvirtError as e:
            raise CallError(e.get_error_message() or str(e), _errno_of(e)) from e

    async def run_bulk(self, fn: Callable[..., T], *args: Any) -> T:
        """Like run(), on a second connection kept for slow bulk reads (statistics of every domain).

        Calls sharing a connection wait for one another: a getAllDomainStats that takes a second (QEMU
        monitors answering slowly under load) held defineXML on the same connection to ~2/s, against
        ~150/s on a connection of its own.
        """
        if self.conn is None:
            raise CallError(f"libvirt at {self.uri} is not reachable", errno.ECONNREFUSED)
        loop = asyncio.get_running_loop()
        try:
            async with self._bulk_opening:
                if self._bulk is None:
                    self._bulk = await loop.run_in_executor(self._executor, libvirt.open, self.uri)
                bulk = self._bulk
            return await loop.run_in_executor(self._executor, fn, bulk, *args)
        except libvirt.libvirtError as e:
            # Reopened by the next call: after a libvirtd restart this one is dead.
            await self._close_bulk()
            raise CallError(e.get_error_message() or str(e), _errno_of(e)) from e

    async def _close_bulk(self) -> None:
        bulk, self._bulk = self._bulk, None
        if bulk is not None:
            with contextlib.suppress(libvirt.libvirtError):
                await asyncio.get_running_loop().run_in_executor(self._executor, bulk.close)

    def lookup(self, conn: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
        """The domain with this name, or None (blocking; call inside run())."""
        try:
            return conn.lookupByName(name)
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                return None
            raise

    # -- states ---------------------------------------------------------------------------------
    async def refresh(self) -> None:
        """Re-read every domain's state (at connect and reconnect) and announce differences."""
        def read(conn: libvirt.virConnect) -> dict[str, str]:
            # One call for every domain of the libvirtd: a state() call per domain took 0.6 s for 224 domains on a
            # busy libvirtd, this 3 ms (the state group needs no QEMU query).
            return {dom.name(): DOMAIN_STATES.get(stats.get("state.state"), "NOSTATE")
                    for dom, stats in conn.getAllDomainStats(libvirt.VIR_DOMAIN_STATS_STATE)}
        conn = self.conn
        if conn is None:
            return
        fresh = await asyncio.get_running_loop().run_in_executor(self._executor, read, conn)
        old = self.states
        self.states = fresh
        for name in set(old) | set(fresh):
            if old.get(name) != fresh.get(name):
                self._notify(name, fresh.get(name))

    def _on_lifecycle(self, conn: libvirt.virConnect, dom: libvirt.virDomain, event: int, detail: int,
                      opaque: Any) -> None:
        # Runs on the asyncio loop (libvirtaio): no blocking libvirt calls here.
        name = dom.name()
        if event in (libvirt.VIR_DOMAIN_EVENT_DEFINED, libvirt.VIR_DOMAIN_EVENT_UNDEFINED):
            self._defined(name)
        if event == libvirt.VIR_DOMAIN_EVENT_UNDEFINED:
            if self.states.pop(name, None) is not None:
                self._notify(name, None)
            return
        new = EVENT_STATES.get(event)
        if new is None:
            if event == libvirt.VIR_DOMAIN_EVENT_DEFINED and name not in self.states:
                new = "SHUTOFF"
            else:
                return
        if self.states.get(name) != new:
            self.states[name] = new
            self._notify(name, new)

    def _defined(self, name: str | None) -> None:
        for listener in self.definition_listeners:
            try:
                listener(name)
            except Exception:
                logger.exception("domain definition listener failed")

    def _notify(self, name: str, domain_state: str | None) -> None:
        self._started.pop(name, None)
        state = API_STATES.get(domain_state) if domain_state is not None else None
        if state is not None and state.active:
            self.active.add(name)
        else:
            self.active.discard(name)
        for fut in self._waiters.pop(name, ()):
            if not fut.done():
                fut.set_result(None)
        for listener in self.listeners:
            try:
                listener(name, domain_state)
            except Exception:
                logger.exception("domain state listener failed")

    async def wait_for(self, name: str, states: set[VMState], timeout: float) -> bool:
        """Wait until the domain's API state is one of states; False when timeout passes first."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.status(name).state not in states:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return False
            fut: asyncio.Future[None] = loop.create_future()
            self._waiters.setdefault(name, set()).add(fut)
            try:
                await asyncio.wait_for(fut, remaining)
            except asyncio.TimeoutError:
                pass
            finally:
                waiters = self._waiters.get(name)
                if waiters is not None:
                    waiters.discard(fut)
        return True

    def status(self, name: str) -> DomainStatus:
        """The cached status of a domain (STOPPED when it is unknown)."""
        domain_state = self.states.get(name)
        if domain_state is None:
            return STOPPED
        state = API_STATES.get(domain_state, VMState.ERROR)
        pid = _qemu_pid(name) if state.active else None
        return DomainStatus(state, domain_state, pid, self._started_at(name, pid))

    def _started_at(self, name: str, pid: int | None) -> float | None:
        if pid is None:
            return None
        known = self._started.get(name)
        if known is None or known[0] != pid:
            known = self._started[name] = (pid, started_at(pid))
        return known[1]


def _qemu_pid(name: str) -> int | None:
    # libvirt's QEMU driver writes the emulator pid here for system connections.
    try:
        with open(os.path.join("/run/libvirt/qemu", f"{name}.pid")) as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def _errno_of(e: libvirt.libvirtError) -> int:
    code = e.get_error_code()
    if code in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_NO_STORAGE_POOL, libvirt.VIR_ERR_NO_STORAGE_VOL):
        return errno.ENOENT
    if code == libvirt.VIR_ERR_OPERATION_INVALID:
        return errno.EINVAL
    return errno.EFAULT
