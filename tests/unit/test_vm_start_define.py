"""vm.start's define step against libvirt's test driver: skipped only while libvirt holds exactly what the last
define from the same XML left."""
from __future__ import annotations

from typing import Any

import libvirt

from middlewared.plugins.vm.lifecycle import _define_and_start

NAME = "7_startdefine"
UUID = "5a9f5b60-3f49-4c57-8a67-1c4f3c0d2a11"


def xml(memory_kib: int) -> str:
    return (f"<domain type='test'><name>{NAME}</name><uuid>{UUID}</uuid><memory>{memory_kib}</memory>"
            "<os><type>hvm</type></os></domain>")


class Counting:
    """The connection, counting its defineXML calls."""

    def __init__(self, conn: libvirt.virConnect) -> None:
        self.conn, self.defines = conn, 0

    def defineXML(self, text: str) -> libvirt.virDomain:
        self.defines += 1
        return self.conn.defineXML(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.conn, name)


def test_an_unchanged_domain_is_started_without_a_define() -> None:
    conn = libvirt.open("test:///default")
    counting, defined = Counting(conn), {}  # type: ignore[var-annotated]
    try:
        def start(memory_kib: int) -> None:
            _define_and_start(counting, NAME, xml(memory_kib), defined)  # type: ignore[arg-type]
            conn.lookupByName(NAME).destroy()
        start(8192)
        start(8192)
        assert counting.defines == 1
        start(16384)  # the record changed
        assert counting.defines == 2
        conn.defineXML(xml(4096))  # changed behind the daemon's back (virsh edit)
        start(16384)
        assert counting.defines == 3 and conn.lookupByName(NAME).maxMemory() == 16384
        conn.lookupByName(NAME).undefine()  # removed by hand
        start(16384)
        assert counting.defines == 4
    finally:
        try:
            conn.lookupByName(NAME).undefine()
        except libvirt.libvirtError:
            pass
        conn.close()
