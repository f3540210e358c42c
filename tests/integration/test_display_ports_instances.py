"""Two daemon instances on one libvirtd: a display port that the other instance's stopped VM holds is neither
picked nor accepted, and is free again once that VM is deleted."""
from __future__ import annotations

import asyncio
import errno
import tempfile
from pathlib import Path

import pytest

from tests.integration.test_auth_daemon import error_of
from tests.support import Daemon, RpcError, cleanup_libvirt, connect, start_daemon, stop_daemon, unique

pytestmark = pytest.mark.timeout(300)


async def display_of(daemon: Daemon, **attributes: int) -> dict[str, int]:
    async with connect(daemon) as rpc:
        vm = await rpc.call("vm.create", {"name": unique("ports"), "memory": 64, "autostart": False, "devices": [
            {"attributes": {"dtype": "DISPLAY", "type": "SPICE", **attributes}}]})
        return {"vm": vm["id"], **{k: vm["devices"][0]["attributes"][k] for k in ("port", "web_port")}}


async def test_ports_of_another_instances_stopped_vm(libvirtd: str) -> None:
    with tempfile.TemporaryDirectory(prefix="mwports-") as a_dir, \
            tempfile.TemporaryDirectory(prefix="mwports-") as b_dir:
        a, b = start_daemon(Path(a_dir)), start_daemon(Path(b_dir))
        try:
            theirs = await display_of(b)
            ours = await display_of(a)
            # Only the display port is bound (web_port is a reservation nothing listens on, not in the domain XML).
            assert theirs["port"] not in (ours["port"], ours["web_port"])
            async with connect(a) as rpc:
                assert theirs["port"] not in (await rpc.call("vm.port_wizard")).values()
                refused = await error_of(rpc, "vm.create", {"name": unique("ports"), "memory": 64, "devices": [
                    {"attributes": {"dtype": "DISPLAY", "port": theirs["port"]}}]})
                assert refused.extra[0][2] == errno.EADDRINUSE and "libvirt domain" in refused.extra[0][1]
            async with connect(b) as rpc:
                await rpc.call("vm.delete", theirs["vm"])
            for _ in range(50):  # until libvirt's undefine event reaches the other daemon
                try:
                    taken = await display_of(a, port=theirs["port"])
                    break
                except RpcError:
                    await asyncio.sleep(0.2)
            assert taken["port"] == theirs["port"]
        finally:
            for d, tmp in ((a, a_dir), (b, b_dir)):
                stop_daemon(d)
                cleanup_libvirt(d.pool, Path(tmp) / "db" / "middlewared.db")
