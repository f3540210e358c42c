"""A display's ports at vm.start: only the port QEMU binds must be free, and libvirt's refusal of a port another
domain on the same libvirtd holds reads as a port clash, naming the port."""
from __future__ import annotations

import errno

from middlewared.errors import CallError
from middlewared.plugins.vm.lifecycle import port_clash
from middlewared.plugins.vm_device.display import Display


class Host:
    def __init__(self, listening: set[int]) -> None:
        self.listening = listening

    async def listening_ports(self) -> set[int]:
        return self.listening

    async def bind_addresses(self) -> list[str]:
        return ["127.0.0.1"]


DISPLAY = Display.from_attributes({"dtype": "DISPLAY", "port": 5950, "web_port": 5951})


async def test_a_held_web_port_does_not_stop_a_start() -> None:
    # Nothing binds web_port: another process (another daemon's guest) listening there is no conflict.
    assert await DISPLAY.unavailable(Host({5951})) == []  # type: ignore[arg-type]


async def test_a_held_display_port_is_named_with_the_way_out() -> None:
    [problem] = await DISPLAY.unavailable(Host({5950, 5951}))  # type: ignore[arg-type]
    assert problem.startswith("port 5950 is taken by another process") and '"port": null' in problem


def test_libvirt_port_reservation_failure_names_the_port() -> None:
    clash = port_clash("web1", CallError("internal error: Failed to reserve port 5902", errno.EFAULT))
    assert clash is not None and clash.errno == errno.EADDRINUSE
    assert clash.errmsg.startswith("VM web1 cannot start: display port 5902 is held by another virtual machine")
    assert port_clash("web1", CallError("internal error: process exited while connecting to monitor")) is None
