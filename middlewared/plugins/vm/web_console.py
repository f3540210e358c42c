"""The web console's rules: which display it shows, its URI, its tokens, and the table of live bridges.

A SPICE display with ``web`` is shown by spice-html5, served by the daemon itself under
``/vm/display/<device id>/`` (web_console_http.py), whose WebSocket bridge relays SPICE to the domain.
Access goes in two steps, both kept in the daemon's TokenManager and bound to one display:

- a *ticket*, put in the URI by vm.get_display_web_uri: single use, valid TICKET_TTL seconds;
- a *session*, given in exchange as an HttpOnly cookie scoped to the display's path: the page's files and
  its WebSockets (spice-html5 opens one per SPICE channel) present it, as does a reload, for SESSION_TTL seconds.
"""
from __future__ import annotations

import errno
import itertools
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import urlencode, urlsplit

from middlewared.credentials import Credentials
from middlewared.errors import CallError
from middlewared.tokens import Token, TokenManager
from middlewared.plugins.vm.model import VMState

if TYPE_CHECKING:
    from middlewared.middleware import Middleware

TICKET_TTL = 300
SESSION_TTL = 300
COOKIE = "middlewared_console"
TICKET, SESSION = "ticket", "session"
# The attribute marking console tokens (auth.login_with_token refuses them).
TOKEN_ATTR = "web_console"
# TrueNAS's answers when a VM has no (web) display, and ours for a stopped VM.
NO_DISPLAY = "Display device is not configured for this VM"
NO_WEB = "Web display is not configured"
NOT_RUNNING = "VM is not running"

_COUNTS = {
    "live": {"type": "integer", "description": "Bridges open now."},
    "opened": {"type": "integer", "description": "Bridges opened since the daemon started."},
    "closed": {"type": "integer", "description": "Bridges closed since the daemon started."},
    "bytes_to_guest": {"type": "integer", "description": "Bytes relayed from browsers to the SPICE server."},
    "bytes_to_client": {"type": "integer", "description": "Bytes relayed from the SPICE server to browsers."},
}
BRIDGE_SCHEMA: dict[str, Any] = {
    "type": "object", "description": "One open bridge (one SPICE channel of one browser page).",
    "properties": {
        "id": {"type": "integer", "description": "Bridge number, unique while the daemon runs."},
        "device": {"type": "integer", "description": "Id of the DISPLAY device."},
        "remote": {"type": "string", "description": "Address of the browser."},
        "opened_at": {"type": "number", "description": "Unix time the bridge opened."},
        "bytes_to_guest": _COUNTS["bytes_to_guest"], "bytes_to_client": _COUNTS["bytes_to_client"],
    },
}
CONNECTIONS_RESULT: dict[str, Any] = {
    "title": "result", "type": "object", "description": "Web console bridges of the VM and what they carried.",
    "properties": {**_COUNTS, "bridges": {"type": "array", "items": BRIDGE_SCHEMA,
                                          "description": "The open bridges."}},
}


# -- which display, which URI ---------------------------------------------------------------------
def is_web_display(attributes: Mapping[str, Any]) -> bool:
    """A SPICE or VNC display offering the web client (defaults as in the DISPLAY schema)."""
    return bool(attributes.get("dtype") == "DISPLAY" and attributes.get("web", True))


def web_display(vm: Mapping[str, Any]) -> tuple[dict[str, Any] | None, str | None]:
    """The display a VM entry (with devices and status) shows on the web console, or why there is none."""
    devices = vm.get("devices") or ()
    if not any(d["attributes"].get("dtype") == "DISPLAY" for d in devices):
        return None, NO_DISPLAY
    device = next((d for d in devices if is_web_display(d["attributes"])), None)
    if device is None:
        return None, NO_WEB
    if vm["status"]["state"] != VMState.RUNNING:
        return None, NOT_RUNNING
    return device, None


# A server listening on a wildcard address is reached locally through loopback.
_LOOPBACK = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}


def local_host(sockname: Any, server_host: str) -> str:
    """The host a caller reached us at: its connection's local address, else the configured one."""
    address = sockname[0] if isinstance(sockname, tuple) else server_host
    return _LOOPBACK.get(address, address)


def spice_endpoint(attributes: Mapping[str, Any]) -> tuple[str, int]:
    """Where a SPICE display's server listens, as the bridge (a local client) reaches it."""
    bind = str(attributes["bind"])
    return _LOOPBACK.get(bind, bind), int(attributes["port"])


def authority(host: str, port: int) -> str:
    """host[:port] for a URI: IPv6 addresses bracketed, the daemon's port added when none is given."""
    if host.count(":") > 1 and not host.startswith("["):
        host = f"[{host}]"
    try:
        given = urlsplit(f"//{host}").port
    except ValueError:
        raise CallError(f"Invalid host {host!r}", errno.EINVAL) from None
    return host if given is not None else f"{host}:{port}"


def console_path(device_id: int) -> str:
    """Where the daemon serves a display's web console."""
    return f"/vm/display/{device_id}/"


def console_uri(protocol: str, netloc: str, device_id: int, ticket: str, title: str,
                password: str | None = None, kind: str = "SPICE") -> str:
    """The client page's URI (spice-html5's spice_auto.html, or noVNC's vnc.html): its WebSocket is the bridge
    next to it, on the same host and port."""
    query = {"auth_token": ticket, "path": f"{console_path(device_id)[1:]}websockify", "title": title}
    page = "spice_auto.html"
    if kind == "VNC":
        # noVNC's own settings: connect at once, scale the screen to the window, reconnect after a guest reboot.
        page = "vnc.html"
        query.update(autoconnect="true", resize="scale", reconnect="true")
    if password:
        query["password"] = password
    return f"{protocol.lower()}://{netloc}{console_path(device_id)}{page}?{urlencode(query)}"


# -- tokens ---------------------------------------------------------------------------------------
def issue(tokens: TokenManager, credentials: Credentials, vm_id: int, device_id: int, stage: str) -> str:
    """A console ticket (single use) or session (reusable) for one display, standing for credentials."""
    ttl = TICKET_TTL if stage == TICKET else SESSION_TTL
    return tokens.create(credentials, ttl, single_use=stage == TICKET,
                         attrs={TOKEN_ATTR: device_id, "vm": vm_id, "stage": stage})


def redeem(tokens: TokenManager, value: str | None, device_id: int, stage: str) -> Token | None:
    """The valid console token of this stage for this display (a ticket is used up), or None."""
    if not value:
        return None
    token = tokens.take(value)
    if token is None or token.attrs.get(TOKEN_ATTR) != device_id or token.attrs.get("stage") != stage:
        return None
    return token


async def may_call(middleware: "Middleware", method: str, credentials: Credentials, vm_id: int) -> bool:
    """Whether credentials may call a method on this VM (global roles, or grants scoped to the VM)."""
    try:
        await middleware.authorize(middleware.methods[method], credentials, [vm_id])
    except CallError:
        return False
    return True


_TOTALS = ("opened", "closed", "bytes_to_guest", "bytes_to_client")


# -- live bridges ---------------------------------------------------------------------------------
@dataclass
class Bridge:
    """One open WebSocket-to-SPICE relay."""

    id: int
    vm: int
    device: int
    remote: str
    opened_at: float = field(default_factory=time.time)
    bytes_to_guest: int = 0
    bytes_to_client: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "device": self.device, "remote": self.remote, "opened_at": self.opened_at,
                "bytes_to_guest": self.bytes_to_guest, "bytes_to_client": self.bytes_to_client}


class ConsoleTable:
    """Open bridges, and per VM how many were opened and closed and the bytes the closed ones carried."""

    def __init__(self) -> None:
        self.live: dict[int, Bridge] = {}
        self._done: dict[int, dict[str, int]] = {}
        self._ids = itertools.count(1)

    def _totals(self, vm_id: int) -> dict[str, int]:
        return self._done.setdefault(vm_id, dict.fromkeys(_TOTALS, 0))

    def open(self, vm_id: int, device_id: int, remote: str) -> Bridge:
        """Record a new bridge."""
        bridge = Bridge(next(self._ids), vm_id, device_id, remote)
        self.live[bridge.id] = bridge
        self._totals(vm_id)["opened"] += 1
        return bridge

    def close(self, bridge: Bridge) -> None:
        """Record the end of a bridge (once)."""
        if self.live.pop(bridge.id, None) is None:
            return
        totals = self._totals(bridge.vm)
        totals["closed"] += 1
        totals["bytes_to_guest"] += bridge.bytes_to_guest
        totals["bytes_to_client"] += bridge.bytes_to_client

    def report(self, vm_id: int) -> dict[str, Any]:
        """vm.get_display_connections' answer: totals since start (open bridges included) and open bridges."""
        bridges = [b for b in self.live.values() if b.vm == vm_id]
        out: dict[str, Any] = {"live": len(bridges), **self._done.get(vm_id, dict.fromkeys(_TOTALS, 0))}
        out["bytes_to_guest"] += sum(b.bytes_to_guest for b in bridges)
        out["bytes_to_client"] += sum(b.bytes_to_client for b in bridges)
        return {**out, "bridges": [b.as_dict() for b in bridges]}
