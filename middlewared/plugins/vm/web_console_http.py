"""The web console over HTTP: spice-html5's or noVNC's files and a WebSocket bridge to the display server,
behind console tokens.

Routes the vm plugin serves, per DISPLAY device id (the rules are in web_console.py beside this file):

- ``GET /vm/display/{id}/websockify``: the bridge; raw SPICE bytes in binary frames both ways (websockify's
  "binary" subprotocol, which spice-html5 asks for), one WebSocket per SPICE channel;
- ``GET /vm/display/{id}/{file}``: the client's files from /usr/share/spice-html5 (Debian's spice-html5) for
  a SPICE display, /usr/share/novnc (Debian's novnc) for a VNC one; VNC's bytes cross the bridge the same way.

Every request presents the display's session cookie or a ticket (``auth_token`` in the query, exchanged
for a session cookie), and is refused with 403 otherwise, and while the token's credentials may not call
vm.get_display_web_uri on the VM (409 when the VM is not running, 404 when it has no web display).
"""
from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Sequence

from aiohttp import WSCloseCode, WSMsgType, web

from middlewared.api.server import origin_allowed
from middlewared.errors import ValidationErrors
from middlewared.plugins.vm import web_console as W
from middlewared.tokens import Token

if TYPE_CHECKING:
    from middlewared.middleware import Middleware

logger = logging.getLogger(__name__)

SPICE_HTML5_DIR = "/usr/share/spice-html5"
NOVNC_DIR = "/usr/share/novnc"  # Debian's novnc: vnc.html and its modules
CHUNK = 65536
CONNECT_TIMEOUT = 10
# No caching (the pages are per ticket), and no Referer: the page URI holds the ticket and maybe a password.
HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}


@dataclass(frozen=True)
class Admission:
    """An admitted request: the display it is for and, when a ticket was exchanged, the new session."""

    vm_id: int
    device_id: int
    attributes: dict[str, Any]
    session: str | None


class WebConsole:
    """The handlers, sharing the daemon's tokens and the vm service's table of live bridges."""

    def __init__(self, middleware: "Middleware", table: W.ConsoleTable,
                 get_vm: Callable[[int], Awaitable[dict[str, Any]]], root: str = SPICE_HTML5_DIR,
                 vnc_root: str = NOVNC_DIR) -> None:
        self.middleware = middleware
        self.table = table
        # The VM entry (with status and devices) by id; raises InstanceNotFound.
        self.get_vm = get_vm
        self.root = os.path.realpath(root)
        self.vnc_root = os.path.realpath(vnc_root)
        self.sockets: set[web.WebSocketResponse] = set()

    def routes(self) -> Sequence[web.RouteDef]:
        """The console's routes (the bridge first: its path is also a file name)."""
        return (web.get(r"/vm/display/{device_id:\d+}/websockify", self.bridge),
                web.get(r"/vm/display/{device_id:\d+}/{file:.+}", self.files))

    async def admit(self, request: web.Request) -> Admission:
        """Check the request's session cookie (else its ticket) and the display; raise the HTTP refusal."""
        device_id = int(request.match_info["device_id"])
        tokens = self.middleware.tokens
        token = W.redeem(tokens, request.cookies.get(W.COOKIE), device_id, W.SESSION)
        ticket = None if token else W.redeem(tokens, request.query.get("auth_token"), device_id, W.TICKET)
        found: Token | None = token or ticket
        if found is None:
            raise _refuse(web.HTTPForbidden, device_id, "no valid console token")
        vm_id = int(found.attrs["vm"])
        if not await W.may_call(self.middleware, "vm.get_display_web_uri", found.credentials, vm_id):
            raise _refuse(web.HTTPForbidden, device_id, f"{found.credentials.username} may not see VM {vm_id}")
        try:
            vm = await self.get_vm(vm_id)
        except ValidationErrors:
            raise _refuse(web.HTTPNotFound, device_id, W.NO_DISPLAY) from None
        device, error = W.web_display(vm)
        if device is None or device["id"] != device_id:
            status = web.HTTPConflict if error == W.NOT_RUNNING else web.HTTPNotFound
            raise _refuse(status, device_id, error or W.NO_WEB)
        session = W.issue(tokens, found.credentials, vm_id, device_id, W.SESSION) if ticket else None
        return Admission(vm_id, device_id, device["attributes"], session)

    def _keep_session(self, response: web.StreamResponse, request: web.Request, admission: Admission) -> None:
        if admission.session is not None:
            response.set_cookie(W.COOKIE, admission.session, path=W.console_path(admission.device_id),
                                max_age=W.SESSION_TTL, httponly=True, samesite="Strict", secure=request.secure)

    async def files(self, request: web.Request) -> web.StreamResponse:
        """A file of the display's client: spice-html5 (spice_auto.html is the page the URI opens) for SPICE,
        noVNC (vnc.html) for VNC."""
        admission = await self.admit(request)
        root = self.vnc_root if admission.attributes.get("type") == "VNC" else self.root
        path = os.path.realpath(os.path.join(root, request.match_info["file"]))
        if os.path.commonpath([root, path]) != root or not os.path.isfile(path):
            raise web.HTTPNotFound(text="No such file")
        response = web.FileResponse(path, headers=HEADERS)
        self._keep_session(response, request, admission)
        return response

    async def bridge(self, request: web.Request) -> web.WebSocketResponse:
        """Relay one WebSocket to the display's SPICE server until either side closes."""
        if not origin_allowed(request, self.middleware.config.server.allowed_origins):
            raise web.HTTPForbidden(text="You are not allowed to access this resource")
        admission = await self.admit(request)
        ws = web.WebSocketResponse(protocols=("binary",), heartbeat=None)
        if not ws.can_prepare(request).ok:
            raise web.HTTPBadRequest(text="Expected a WebSocket handshake")
        host, port = W.spice_endpoint(admission.attributes)
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
        except (OSError, asyncio.TimeoutError) as e:
            logger.warning("web console %d: cannot reach SPICE at %s:%d: %s", admission.device_id, host, port, e)
            raise web.HTTPBadGateway(text="Cannot reach the display server") from None
        self._keep_session(ws, request, admission)
        table = self.table
        bridge: W.Bridge | None = None
        try:
            await ws.prepare(request)
            self.sockets.add(ws)
            bridge = table.open(admission.vm_id, admission.device_id, request.remote or "unknown")
            logger.info("web console %d: bridge %d opened from %s to %s:%d (%d open)", admission.device_id,
                        bridge.id, bridge.remote, host, port, len(table.live))
            await _relay(ws, reader, writer, bridge)
        finally:
            writer.close()
            self.sockets.discard(ws)
            if ws.prepared:
                await ws.close()
            if bridge is not None:
                table.close(bridge)
                logger.info("web console %d: bridge %d closed: %d bytes to the guest, %d to the browser "
                            "(%d open)", admission.device_id, bridge.id, bridge.bytes_to_guest,
                            bridge.bytes_to_client, len(table.live))
        return ws

    async def close_all(self) -> None:
        """Daemon shutdown: end every bridge."""
        for ws in list(self.sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"Server shutting down")


def _refuse(status: type[web.HTTPError], device_id: int, reason: str) -> web.HTTPError:
    logger.debug("web console %d: refused (%s)", device_id, reason)
    return status(text=reason if status is not web.HTTPForbidden else "Invalid or expired console token")


async def _relay(ws: web.WebSocketResponse, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 bridge: W.Bridge) -> None:
    """Copy bytes both ways; when one direction ends, the other is stopped."""
    async def to_guest() -> None:
        async for msg in ws:
            if msg.type != WSMsgType.BINARY:
                break  # only binary frames carry SPICE; a close, an error or text ends the bridge
            writer.write(msg.data)
            bridge.bytes_to_guest += len(msg.data)
            await writer.drain()

    async def to_client() -> None:
        while data := await reader.read(CHUNK):
            bridge.bytes_to_client += len(data)
            await ws.send_bytes(data)

    tasks = [asyncio.create_task(to_guest()), asyncio.create_task(to_client())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        error = None if task.cancelled() else task.exception()
        if isinstance(error, OSError):
            logger.debug("web console bridge %d: %s", bridge.id, error)  # a side went away
        elif error is not None:
            logger.error("web console bridge %d failed", bridge.id, exc_info=error)

