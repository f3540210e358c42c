"""TCG VMs with real devices: start with every type, live CD-ROM change, running-VM rules, start-time checks."""
from __future__ import annotations

import asyncio
import errno
import os
import socket
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_vm_device_fixtures import (  # noqa: F401 (fixtures)
    bridge, by_dtype, dummy, expect_call_error, media, nat_network, run, storage, virsh, vm_with, volumes,
)
from tests.support import Daemon, Rpc, unique

pytestmark = pytest.mark.timeout(300)


def spice_handshake(port: int) -> bytes:
    """Send a SPICE link request (main channel) and return the first bytes of the server's reply."""
    body = struct.pack("<IBBIII", 0, 1, 0, 0, 0, 18)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"REDQ" + struct.pack("<III", 2, 2, len(body)) + body)
        return s.recv(4)


def domain(vm: dict[str, Any]) -> str:
    return f"{vm['id']}_{vm['name']}"


async def test_start_with_every_device_type(unix_rpc: Rpc, daemon: Daemon, storage: Path, media: Path,
                                            bridge: str, nat_network: str, dummy: str) -> None:
    other = storage / f"{unique('other')}.iso"
    other.write_bytes(b"\1" * 4096)
    raw = storage / unique("raw")
    async with vm_with(
        unix_rpc,
        {"dtype": "DISK", "create_zvol": True, "zvol_name": f"{daemon.pool}/{unique('vol')}",
         "zvol_volsize": 1 << 20, "type": "VIRTIO", "iotype": "IO_URING"},
        {"dtype": "RAW", "path": str(raw), "size": 1 << 20, "iotype": "NATIVE", "logical_sectorsize": 512},
        {"dtype": "CDROM", "path": str(media)},
        {"dtype": "NIC", "nic_attach": bridge},
        {"dtype": "NIC", "nic_attach": nat_network, "type": "VIRTIO"},
        {"dtype": "NIC", "nic_attach": dummy, "type": "VIRTIO", "trust_guest_rx_filters": True},
        {"dtype": "DISPLAY", "password": "pw"},
    ) as vm:
        await unix_rpc.call("vm.start", vm["id"])
        assert (await unix_rpc.call("vm.status", vm["id"]))["state"] == "RUNNING"
        interfaces = virsh("domiflist", domain(vm))
        assert all(w in interfaces for w in ("bridge", bridge, "network", nat_network, "direct", dummy))
        for nic in by_dtype(vm, "NIC"):
            assert nic["attributes"]["mac"] in interfaces
        [display] = by_dtype(vm, "DISPLAY")
        assert await asyncio.to_thread(spice_handshake, display["attributes"]["port"]) == b"REDQ"
        await _running_rules(unix_rpc, vm, other)
        await unix_rpc.call("vm.poweroff", vm["id"])


async def _running_rules(rpc: Rpc, vm: dict[str, Any], other: Path) -> None:
    [cdrom], [display], [raw] = by_dtype(vm, "CDROM"), by_dtype(vm, "DISPLAY"), by_dtype(vm, "RAW")
    # CD-ROM media change reaches the running guest, and its definition.
    changed = await rpc.call("vm.device.update", cdrom["id"], {"attributes": {"path": str(other)}})
    assert changed["attributes"]["path"] == str(other)
    assert f"<source file='{other}'" in virsh("dumpxml", domain(vm))
    assert f"<source file='{other}'/>" in virsh("dumpxml", "--inactive", domain(vm))
    # Ejecting empties the running drive and the definition; inserting fills it again.
    ejected = await rpc.call("vm.device.update", cdrom["id"], {"attributes": {"path": None}})
    assert ejected["attributes"]["path"] is None
    for xml in (virsh("dumpxml", domain(vm)), virsh("dumpxml", "--inactive", domain(vm))):
        assert str(other) not in xml
    await rpc.call("vm.device.update", cdrom["id"], {"attributes": {"path": str(other)}})
    assert f"<source file='{other}'" in virsh("dumpxml", domain(vm))
    e = await expect_call_error(rpc, "vm.device.update", display["id"], {"attributes": {"resolution": "800x600"}})
    assert e.errno == errno.EBUSY and "DISPLAY device" in e.reason
    e = await expect_call_error(rpc, "vm.device.create", {"vm": vm["id"], "attributes": {"dtype": "DISPLAY",
                                                                                         "type": "VNC", "web": False}})
    assert e.errno == errno.EBUSY
    e = await expect_call_error(rpc, "vm.device.delete", raw["id"])
    assert e.errno == errno.EBUSY and "needs force" in e.reason
    e = await expect_call_error(rpc, "vm.device.delete", raw["id"], {"raw_file": True, "force": True})
    assert e.errno == errno.EBUSY
    e = await expect_call_error(rpc, "vm.update", vm["id"], {"devices": []})
    assert e.errno == errno.EBUSY
    # With force the device leaves the definition; the running guest keeps it until it stops.
    assert await rpc.call("vm.device.delete", raw["id"], {"force": True}) is True
    assert raw["attributes"]["path"] in virsh("dumpxml", domain(vm))
    assert raw["attributes"]["path"] not in virsh("dumpxml", "--inactive", domain(vm))


async def test_start_names_every_unavailable_device(unix_rpc: Rpc, daemon: Daemon, storage: Path, media: Path,
                                                    nat_network: str) -> None:
    volume, raw, gone_bridge = unique("vol"), storage / unique("raw"), unique("mwg")
    subprocess.run(["ip", "link", "del", gone_bridge], capture_output=True)
    run("ip", "link", "add", gone_bridge, "type", "bridge")
    try:
        async with vm_with(
            unix_rpc,
            {"dtype": "DISK", "create_zvol": True, "zvol_name": f"{daemon.pool}/{volume}", "zvol_volsize": 4096},
            {"dtype": "RAW", "path": str(raw), "size": 4096},
            {"dtype": "CDROM", "path": str(media)},
            {"dtype": "NIC", "nic_attach": gone_bridge},
            {"dtype": "DISPLAY"},
            {"dtype": "USB", "usb": {"vendor_id": "0xfeed", "product_id": "0xbeef"}},
        ) as vm:
            virsh("vol-delete", volume, "--pool", daemon.pool)
            raw.unlink()
            media.unlink()
            run("ip", "link", "del", gone_bridge)
            [display] = by_dtype(vm, "DISPLAY")
            with socket.socket() as busy:
                try:
                    busy.bind(("127.0.0.1", display["attributes"]["port"]))
                    busy.listen()
                except OSError as taken:
                    # Another test's guest on the shared libvirtd took the port since it was given: it is taken
                    # either way, which is what the start must report.
                    assert taken.errno == errno.EADDRINUSE, taken
                e = await expect_call_error(unix_rpc, "vm.start", vm["id"])
            assert e.errno == errno.ENODEV and e.reason.startswith(f"[ENODEV] VM {vm['name']} cannot start")
            for needle in (f"volume {daemon.pool}/{volume} does not exist", f"{raw} does not exist",
                           f"{media} does not exist", f"{gone_bridge} is neither a host interface",
                           f"port {display['attributes']['port']} is taken",
                           f"USB device {by_dtype(vm, 'USB')[0]['id']} (0xfeed:0xbeef): the USB device is not plugged in"):
                assert needle in e.reason, (needle, e.reason)
            assert (await unix_rpc.call("vm.status", vm["id"]))["state"] == "STOPPED"
    finally:
        subprocess.run(["ip", "link", "del", gone_bridge], capture_output=True)


def held(port: int) -> socket.socket:
    """A socket of this process listening on the port (as another daemon's guest would)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", port))
    sock.listen()
    return sock


async def test_display_ports_held_by_another_process(unix_rpc: Rpc) -> None:
    """Only the port QEMU binds must be free at a start (web_port is a reservation nothing listens on); a held
    display port is named, and "port": null on vm.device.update moves the display to a free one."""
    async with vm_with(unix_rpc, {"dtype": "DISPLAY"}) as vm:
        [display] = by_dtype(vm, "DISPLAY")
        port, web_port = display["attributes"]["port"], display["attributes"]["web_port"]
        with held(web_port):
            await unix_rpc.call("vm.start", vm["id"])
        await unix_rpc.call("vm.poweroff", vm["id"])
        with held(port):
            e = await expect_call_error(unix_rpc, "vm.start", vm["id"])
            assert f"port {port} is taken by another process" in e.reason and '"port": null' in e.reason, e.reason
            moved = await unix_rpc.call("vm.device.update", display["id"], {"attributes": {"port": None}})
            assert moved["attributes"]["port"] not in (port, web_port)
            await unix_rpc.call("vm.start", vm["id"])
        await unix_rpc.call("vm.poweroff", vm["id"])


async def test_inactive_network_is_unavailable(unix_rpc: Rpc, nat_network: str) -> None:
    async with vm_with(unix_rpc, {"dtype": "NIC", "nic_attach": nat_network}) as vm:
        virsh("net-destroy", nat_network)
        try:
            e = await expect_call_error(unix_rpc, "vm.start", vm["id"])
            assert f"libvirt network {nat_network} is not active" in e.reason
        finally:
            virsh("net-start", nat_network)


def _passthrough_candidate() -> str | None:
    """A PCI device this host could really give a guest (IOMMU on, bound to vfio-pci), if any."""
    groups = "/sys/kernel/iommu_groups"
    if not os.path.isdir(groups) or not os.listdir(groups):
        return None
    for address in sorted(os.listdir("/sys/bus/pci/devices")):
        driver = f"/sys/bus/pci/devices/{address}/driver"
        if os.path.islink(driver) and os.readlink(driver).endswith("/vfio-pci"):
            return address
    return None


async def _start_or_refused(rpc: Rpc, vm: dict[str, Any], possible: bool, dtype: str) -> None:
    """Start the VM when the host has the device; otherwise the start is refused, naming the device."""
    if possible:
        await rpc.call("vm.start", vm["id"])
        await rpc.call("vm.poweroff", vm["id"])
        return
    # Refused before libvirt would detach anything from the host.
    e = await expect_call_error(rpc, "vm.start", vm["id"])
    assert e.errno == errno.ENODEV and f"{dtype} device {by_dtype(vm, dtype)[0]['id']}" in e.reason


async def test_pci_xml_and_start(unix_rpc: Rpc) -> None:
    candidate = _passthrough_candidate()
    choices = await unix_rpc.call("vm.device.passthrough_device_choices")
    address = candidate or next(a for a, d in choices.items() if not d["critical"])
    node_name = "pci_" + address.replace(":", "_").replace(".", "_")
    async with vm_with(unix_rpc, {"dtype": "PCI", "pptdev": node_name}) as vm:
        assert by_dtype(vm, "PCI")[0]["attributes"]["pptdev"] == address
        domain_, bus, slot_function = address.split(":")
        slot, function = slot_function.split(".")
        assert (f"<address domain='0x{domain_}' bus='0x{bus}' slot='0x{slot}' function='0x{function}'/>"
                in virsh("dumpxml", "--inactive", domain(vm)))
        await _start_or_refused(unix_rpc, vm, candidate is not None, "PCI")


async def test_usb_xml_and_start(unix_rpc: Rpc) -> None:
    present = await unix_rpc.call("vm.device.usb_passthrough_choices")
    found = next(iter(present.values()), None)
    ids = {"vendor_id": found["capability"]["vendor_id"], "product_id": found["capability"]["product_id"]} \
        if found else {"vendor_id": "0x1d6b", "product_id": "0x0003"}
    async with vm_with(unix_rpc, {"dtype": "USB", "usb": ids, "controller_type": "ich9-ehci1"}) as vm:
        xml = virsh("dumpxml", "--inactive", domain(vm))
        assert "<controller type='usb' index='0' model='ich9-ehci1'>" in xml
        assert f"<vendor id='{ids['vendor_id']}'/>" in xml and f"<product id='{ids['product_id']}'/>" in xml
        await _start_or_refused(unix_rpc, vm, found is not None, "USB")
