"""The web console's rules: which display, the URI, console tokens (tickets and sessions), the bridge table."""
from __future__ import annotations

import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from middlewared import credentials as creds
from middlewared.errors import CallError
from middlewared.plugins.vm import web_console as W
from middlewared.tokens import TokenManager

ROOT = creds.root()


def display(id_: int, **attributes: Any) -> dict[str, Any]:
    return {"id": id_, "vm": 1, "order": 1000, "attributes": {"dtype": "DISPLAY", **attributes}}


def vm_with(devices: list[dict[str, Any]], state: str = "RUNNING") -> dict[str, Any]:
    return {"id": 1, "name": "vm", "devices": devices, "status": {"state": state, "pid": None}}


# -- which display -------------------------------------------------------------------------------
def test_a_vm_without_display_has_no_web_console() -> None:
    nic = {"id": 2, "vm": 1, "order": 1001, "attributes": {"dtype": "NIC"}}
    assert W.web_display(vm_with([])) == (None, "Display device is not configured for this VM")
    assert W.web_display(vm_with([nic])) == (None, "Display device is not configured for this VM")


@pytest.mark.parametrize("attributes", [{"type": "SPICE", "web": False}, {"type": "VNC", "web": False}])
def test_only_displays_with_web_have_a_web_console(attributes: dict[str, Any]) -> None:
    assert W.web_display(vm_with([display(1, **attributes)])) == (None, "Web display is not configured")


def test_vnc_web_console_is_novnc() -> None:
    vnc = display(1, type="VNC", web=True)
    assert W.web_display(vm_with([vnc])) == (vnc, None)
    uri = W.console_uri("HTTPS", "h:1", 1, "T", "demo", "pw", "VNC")
    assert uri.startswith("https://h:1/vm/display/1/vnc.html?auth_token=T&path=vm%2Fdisplay%2F1%2Fwebsockify")
    assert "autoconnect=true" in uri and "password=pw" in uri
    assert "/spice_auto.html?" in W.console_uri("HTTP", "h:1", 1, "T", "demo")


@pytest.mark.parametrize("state", ["STOPPED", "SUSPENDED", "ERROR"])
def test_the_web_console_needs_a_running_vm(state: str) -> None:
    assert W.web_display(vm_with([display(1, type="SPICE", web=True)], state)) == (None, "VM is not running")


def test_the_first_web_spice_display_is_shown() -> None:
    web = display(7, type="SPICE", web=True)
    assert W.web_display(vm_with([display(1, type="VNC", web=False), web])) == (web, None)
    assert W.web_display(vm_with([display(3)]))[0] == display(3)  # schema defaults: SPICE, web


# -- the URI -------------------------------------------------------------------------------------
@pytest.mark.parametrize("host, expected", [
    ("nas.local", "nas.local:8016"), ("nas.local:8443", "nas.local:8443"), ("10.0.0.5", "10.0.0.5:8016"),
    ("fe80::1", "[fe80::1]:8016"), ("[fe80::1]", "[fe80::1]:8016"), ("[::1]:7000", "[::1]:7000"),
])
def test_authority_adds_the_daemon_port(host: str, expected: str) -> None:
    assert W.authority(host, 8016) == expected


@pytest.mark.parametrize("host", ["nas:99999", "[::1", "nas:port"])
def test_authority_refuses_bad_hosts(host: str) -> None:
    with pytest.raises(CallError):
        W.authority(host, 8016)


def test_local_host_is_the_address_the_caller_reached() -> None:
    assert W.local_host(("192.168.1.5", 6000), "0.0.0.0") == "192.168.1.5"
    assert W.local_host(("::1", 6000, 0, 0), "::") == "::1"
    # On the unix socket: the configured TCP address, a wildcard meaning this host.
    assert W.local_host("/run/middleware/middlewared.sock", "0.0.0.0") == "127.0.0.1"
    assert W.local_host("/run/x.sock", "::") == "::1"
    assert W.local_host(None, "10.1.1.1") == "10.1.1.1"


def test_console_uri() -> None:
    uri = W.console_uri("HTTPS", "nas.local:8016", 7, "T0k-en_", "web-vm", "p&ss=1")
    parts = urlsplit(uri)
    assert (parts.scheme, parts.netloc, parts.path) == ("https", "nas.local:8016", "/vm/display/7/spice_auto.html")
    # spice_auto.html connects its WebSocket to ws(s)://<page host>:<page port>/<path>.
    assert parse_qs(parts.query) == {"auth_token": ["T0k-en_"], "path": ["vm/display/7/websockify"],
                                     "title": ["web-vm"], "password": ["p&ss=1"]}
    assert "path=vm%2Fdisplay%2F7%2Fwebsockify" in uri  # upstream's shape


def test_console_uri_without_password() -> None:
    query = parse_qs(urlsplit(W.console_uri("HTTP", "h:1", 2, "t", "v")).query)
    assert "password" not in query and query["auth_token"] == ["t"]


# -- tokens --------------------------------------------------------------------------------------
def test_a_ticket_is_used_once_and_only_for_its_display() -> None:
    tokens = TokenManager()
    ticket = W.issue(tokens, ROOT, 1, 7, W.TICKET)
    assert W.redeem(tokens, ticket, 8, W.TICKET) is None  # another display: refused (and kept)
    assert W.redeem(tokens, ticket, 7, W.SESSION) is None  # not a session
    ticket = W.issue(tokens, ROOT, 1, 7, W.TICKET)
    token = W.redeem(tokens, ticket, 7, W.TICKET)
    assert token is not None and token.credentials == ROOT and token.attrs["vm"] == 1
    assert W.redeem(tokens, ticket, 7, W.TICKET) is None  # used up


def test_a_session_is_reusable() -> None:
    tokens = TokenManager()
    session = W.issue(tokens, ROOT, 1, 7, W.SESSION)
    for _ in range(5):  # the page's files and one WebSocket per SPICE channel
        assert W.redeem(tokens, session, 7, W.SESSION) is not None
    assert W.redeem(tokens, session, 7, W.TICKET) is None
    assert W.redeem(tokens, session, 3, W.SESSION) is None


@pytest.mark.parametrize("value", [None, "", "nonsense"])
def test_missing_or_unknown_tokens_are_refused(value: str | None) -> None:
    assert W.redeem(TokenManager(), value, 7, W.TICKET) is None


def test_other_tokens_are_refused() -> None:
    tokens = TokenManager()
    plain = tokens.create(ROOT, 600)  # auth.generate_token
    job = tokens.create(ROOT, 600, attrs={"job": 7})
    assert W.redeem(tokens, plain, 7, W.SESSION) is None and W.redeem(tokens, job, 7, W.TICKET) is None


@pytest.mark.parametrize("stage, ttl", [(W.TICKET, W.TICKET_TTL), (W.SESSION, W.SESSION_TTL)])
def test_console_tokens_expire(monkeypatch: pytest.MonkeyPatch, stage: str, ttl: int) -> None:
    tokens = TokenManager()
    now = time.monotonic()
    value = W.issue(tokens, ROOT, 1, 7, stage)
    monkeypatch.setattr(time, "monotonic", lambda: now + ttl + 1)
    assert W.redeem(tokens, value, 7, stage) is None
    assert ttl == 300


# -- the bridge table ----------------------------------------------------------------------------
def test_bridge_table_counts_and_sums() -> None:
    table = W.ConsoleTable()
    empty = {"live": 0, "opened": 0, "closed": 0, "bytes_to_guest": 0, "bytes_to_client": 0, "bridges": []}
    assert table.report(1) == empty
    a, b = table.open(1, 7, "10.0.0.9"), table.open(1, 7, "10.0.0.9")
    other = table.open(2, 8, "10.0.0.8")
    a.bytes_to_guest, a.bytes_to_client, b.bytes_to_client = 10, 1000, 5
    report = table.report(1)
    assert {k: v for k, v in report.items() if k != "bridges"} == {
        "live": 2, "opened": 2, "closed": 0, "bytes_to_guest": 10, "bytes_to_client": 1005}
    assert [r["id"] for r in report["bridges"]] == [a.id, b.id]
    assert report["bridges"][0] == {"id": a.id, "device": 7, "remote": "10.0.0.9", "opened_at": a.opened_at,
                                    "bytes_to_guest": 10, "bytes_to_client": 1000}
    table.close(a)
    table.close(a)  # once only
    b.bytes_to_guest = 3
    report = table.report(1)
    assert (report["live"], report["opened"], report["closed"]) == (1, 2, 1)
    assert (report["bytes_to_guest"], report["bytes_to_client"]) == (13, 1005)  # closed ones still count
    table.close(b)
    assert table.report(1)["live"] == 0 and table.report(1)["bytes_to_client"] == 1005
    assert table.report(2)["live"] == 1 and other.id not in (a.id, b.id)
