"""vm.get_console_web_uri, vm.get_console_viewers and the serial console WebSocket (``/vm/serial/<id>``).

The URI carries a single-use ticket (valid TICKET_TTL seconds) standing for the caller; the WebSocket it opens
is the VM's serial port: raw bytes in binary (or text) frames both ways, as websockify and Proxmox' termproxy
relay them, so a terminal such as xterm.js attaches to it directly. The sessions are in serial_console.py.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Protocol, Sequence

from aiohttp import WSMsgType, web
from lxml import etree

from middlewared import credentials as creds
from middlewared.errors import CallError, ValidationErrors
from middlewared.plugins.vm import web_console as W
from middlewared.plugins.vm.hypervisor import API_STATES, Hypervisor
from middlewared.plugins.vm.model import DomainContext, VMRecord, domain_name
from middlewared.plugins.vm.serial_console import SerialHub, SerialSession, Viewer, read_tail

if TYPE_CHECKING:
    from middlewared.plugins.vm.records import VMRecords
    import libvirt

    from middlewared.api.rpc import RpcConnection
    from middlewared.middleware import Middleware

logger = logging.getLogger(__name__)

CONSOLE = ("VM_CONSOLE",)
TICKET_TTL = 300
TOKEN_KIND = "serial"  # the value of the console-token attribute (auth.login_with_token refuses such tokens)

URI_OPTIONS: dict[str, Any] = {
    "title": "options", "type": "object", "default": {}, "additionalProperties": False,
    "description": "How to build the URI.",
    "properties": {
        "protocol": {"type": "string", "enum": ["HTTP", "HTTPS"], "default": "HTTP",
                     "description": "HTTP gives a ws:// URI, HTTPS a wss:// one."},
        "read_only": {"type": "boolean", "default": False,
                      "description": "Watch only: this viewer never takes the keyboard."},
    },
}
URI_RESULT: dict[str, Any] = {
    "title": "result", "type": "string",
    "description": "ws(s)://host:port/vm/serial/<id>?auth_token=<ticket>: single use, valid 5 minutes; the "
                   "WebSocket then lasts across stops and starts of the VM.",
}
VIEWERS_RESULT: dict[str, Any] = {
    "title": "result", "type": "object", "description": "Who is connected to the VM's serial console.",
    "properties": {
        "attached": {"type": "boolean", "description": "Whether the daemon holds the running VM's serial port."},
        "typist": {"type": ["string", "null"], "description": "User holding the keyboard, or null."},
        "viewers": {"type": "array", "description": "Connected viewers, oldest first.", "items": {
            "type": "object", "description": "One viewer.",
            "properties": {"id": {"type": "integer", "description": "Viewer number within the session."},
                           "username": {"type": "string", "description": "Who connected."},
                           "read_only": {"type": "boolean", "description": "Never takes the keyboard."}}}},
        "bytes_to_guest": {"type": "integer", "description": "Keystroke bytes sent to the guest in this session."},
        "bytes_from_guest": {"type": "integer", "description": "Output bytes read from the guest in this session."},
    },
}


class SerialHost(Protocol):
    """What the serial console needs of the vm service."""

    middleware: "Middleware"
    hypervisor: Hypervisor
    serial_consoles: SerialHub

    async def stored_vms(self) -> dict[int, dict[str, Any]]: ...

    async def get_instance(self, id_: int, options: dict[str, Any] | None = None, *,
                           app: Any = None) -> dict[str, Any]: ...

    def domain_context(self, vm: VMRecord) -> DomainContext: ...


def serial_path(xml: str) -> str | None:
    """The pty of the first serial port in a live domain XML."""
    found = etree.fromstring(xml.encode()).xpath("string(devices/serial[@type='pty']/source/@path)")
    return str(found) or None


def _live_xml(conn: "libvirt.virConnect", name: str) -> str:
    xml: str = conn.lookupByName(name).XMLDesc(0)
    return xml


def session_for(service: SerialHost, vm_id: int) -> SerialSession:
    """The VM's console session, with the two ways it reaches the VM: its pty and its console log."""
    async def record() -> VMRecord | None:
        vm = (await service.stored_vms()).get(vm_id)
        return None if vm is None else VMRecord.from_row(vm)

    async def locate() -> str | None:
        vm = await record()
        if vm is None or not service.hypervisor.status(vm.domain_name).state.active:
            return None
        try:
            return serial_path(await service.hypervisor.run(_live_xml, vm.domain_name))
        except CallError:
            return None  # stopped meanwhile

    async def read_log(size: int) -> bytes:
        vm = await record()
        path = None if vm is None else service.domain_context(vm).serial_log_path
        return b"" if path is None else await asyncio.to_thread(read_tail, path, size)

    return service.serial_consoles.session(vm_id, locate, read_log)


def follow_states(service: SerialHost) -> None:
    """Attach consoles when their VMs start, tell their viewers when they stop.

    The domain name is checked against the record: libvirtd may hold other domains whose names start
    with the same number.
    """
    hub = service.serial_consoles

    async def check(vm_id: int, domain: str, running: bool) -> None:
        vm = (await service.stored_vms()).get(vm_id)
        if vm is None:
            hub.end(vm_id, "the VM was deleted")
        elif domain_name(vm_id, vm["name"]) == domain:
            hub.on_state(vm_id, running)

    def on_state(domain: str, domain_state: str | None) -> None:
        vm_id, _, _ = domain.partition("_")
        if vm_id.isdigit() and int(vm_id) in hub.sessions:
            state = API_STATES.get(domain_state or "SHUTOFF")
            running = state is not None and state.active
            task = asyncio.get_running_loop().create_task(check(int(vm_id), domain, running))
            hub.tasks.add(task)
            task.add_done_callback(hub.tasks.discard)
    service.hypervisor.listeners.append(on_state)


async def get_console_web_uri(vms: "VMRecords", id_: int, host: str, options: dict[str, Any], *,
                              app: "RpcConnection | None" = None) -> str:
    """A WebSocket URI for the VM's serial console (running or not: output starts when it runs).

    Several viewers may connect; the first that may type holds the keyboard, the others are told who
    does, and the keyboard passes on when its holder leaves. The last 64 KiB of output are replayed.
    """
    await vms.get_instance(id_)
    credentials = app.credentials if app is not None else creds.root("INTERNAL")
    server = vms.middleware.config.server
    netloc = W.authority(host or W.local_host(app and app.ws.get_extra_info("sockname"), server.host),
                         server.port)
    ticket = vms.middleware.tokens.create(credentials, TICKET_TTL, single_use=True, attrs={
        W.TOKEN_ATTR: TOKEN_KIND, "vm": id_, "read_only": options["read_only"]})
    scheme = "wss" if options["protocol"] == "HTTPS" else "ws"
    return f"{scheme}://{netloc}/vm/serial/{id_}?auth_token={ticket}"


async def get_console_viewers(vms: "VMRecords", hub: SerialHub, id_: int) -> dict[str, Any]:
    """Who watches the VM's serial console and who holds its keyboard."""
    await vms.get_instance(id_)
    session = hub.sessions.get(id_)
    if session is None:
        return {"attached": False, "typist": None, "viewers": [], "bytes_to_guest": 0, "bytes_from_guest": 0}
    return {"attached": session.fd is not None,
            "typist": session.typist.username if session.typist else None,
            "viewers": [{"id": v.id, "username": v.username, "read_only": not v.may_type}
                        for v in session.viewers],
            "bytes_to_guest": session.bytes_in, "bytes_from_guest": session.bytes_out}


async def _relay(ws: web.WebSocketResponse, session: SerialSession, viewer: Viewer) -> None:
    async def to_viewer() -> None:
        while (data := await viewer.queue.get()) is not None:
            await ws.send_bytes(data)
            viewer.sent(data)

    async def from_viewer() -> None:
        async for msg in ws:
            if msg.type == WSMsgType.BINARY:
                session.type(viewer, msg.data)
            elif msg.type == WSMsgType.TEXT:
                session.type(viewer, msg.data.encode())
            else:
                break

    tasks = [asyncio.create_task(to_viewer()), asyncio.create_task(from_viewer())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def routes(middleware: "Middleware") -> Sequence[web.RouteDef]:
    """The serial console WebSocket route."""
    from middlewared.api.server import origin_allowed
    from middlewared.plugins.vm import vm_service

    async def console(request: web.Request) -> web.StreamResponse:
        if not origin_allowed(request, middleware.config.server.allowed_origins):
            raise web.HTTPForbidden(text="You are not allowed to access this resource")
        vm_id = int(request.match_info["vm_id"])
        token = middleware.tokens.take(request.query.get("auth_token", ""))
        if token is None or token.attrs.get(W.TOKEN_ATTR) != TOKEN_KIND or token.attrs.get("vm") != vm_id \
                or not await W.may_call(middleware, "vm.get_console_web_uri", token.credentials, vm_id):
            raise web.HTTPForbidden(text="Invalid or expired console token")
        service = vm_service(middleware)
        try:
            await service.get_instance(vm_id)
        except ValidationErrors:
            raise web.HTTPNotFound(text=f"VM {vm_id} does not exist") from None
        ws = web.WebSocketResponse(heartbeat=30)
        if not ws.can_prepare(request).ok:
            raise web.HTTPBadRequest(text="Expected a WebSocket handshake")
        await ws.prepare(request)
        viewer = Viewer(token.credentials.username or "root", not token.attrs.get("read_only", False))
        session = session_for(service, vm_id)
        logger.info("serial console of VM %d: %s connected from %s", vm_id, viewer.username, request.remote)
        try:
            await session.join(viewer)
            await _relay(ws, session, viewer)
        finally:
            service.serial_consoles.leave(session, viewer)
            await ws.close()
            logger.info("serial console of VM %d: %s disconnected", vm_id, viewer.username)
        return ws
    return [web.get(r"/vm/serial/{vm_id:\d+}", console)]
