"""Golden files of device XML inside a domain, each validated by virt-xml-validate; `UPDATE_GOLDEN=1` rewrites
them. Also the placement rules (order, boot order, disk names, USB controllers) and XML purity."""
from __future__ import annotations

import builtins
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from middlewared.plugins.vm.domain_xml import domain_xml_string
from middlewared.plugins.vm.model import DomainContext, DomainType, VMRecord
from middlewared.plugins.vm_device import layout
from middlewared.plugins.vm_device.model import HostSnapshot, NicKind, UsbAddress
from middlewared.plugins.vm_device.registry import DEVICE_TYPES

GOLDEN = Path(__file__).parent / "golden" / "vm_device"
VALIDATOR = shutil.which("virt-xml-validate")
HOST = HostSnapshot(
    nic_kinds={"br0": NicKind.BRIDGE, "eth1": NicKind.DIRECT, "natnet": NicKind.NETWORK},
    default_interface="eth0",
    usb={"usb_1_3": UsbAddress("0x046d", "0xc52b", 1, 3)},
)


def dev(id_: int, order: int | None, dtype: str, **attributes: Any) -> dict[str, Any]:
    """A stored device: the type's defaults, then the given attributes."""
    return {"id": id_, "vm": 1, "order": order,
            "attributes": DEVICE_TYPES[dtype].with_defaults({"dtype": dtype, **attributes})}


DISK = {"zvol_name": "tank/vm0", "path": "/mnt/tank/vm0", "serial": "SERIAL01"}
RAW = {"path": "/mnt/images/data.img", "exists": True, "serial": "RAWSER01"}
ISO = {"path": "/mnt/iso/install.iso"}

CASES: dict[str, list[dict[str, Any]]] = {
    "disk_ahci_threads": [dev(1, 1001, "DISK", **DISK)],
    "disk_virtio_native_sectors": [dev(1, 1001, "DISK", **DISK, type="VIRTIO", iotype="NATIVE",
                                       logical_sectorsize=512, physical_sectorsize=4096)],
    "raw_virtio_io_uring": [dev(1, 1001, "RAW", **RAW, type="VIRTIO", iotype="IO_URING", logical_sectorsize=4096)],
    "cdrom": [dev(1, 1000, "CDROM", **ISO)],
    "cdrom_empty": [dev(1, 1000, "CDROM", path=None)],
    "disk_qcow2": [dev(1, 1001, "DISK", **DISK, format="qcow2", type="VIRTIO")],
    "cloud_init": [dev(1, 1000, "CDROM", **ISO), dev(2, 1003, "CLOUD_INIT", hostname="h",
                                                     seed="/mnt/.vm-seeds/0123456789abcdef.iso")],
    # order, then id: the CD-ROM boots first, AHCI disks and CD-ROMs share sdX, VIRTIO disks count vdX.
    "boot_order_and_names": [
        dev(4, 1001, "RAW", **RAW, type="VIRTIO"),
        dev(3, 1001, "DISK", **DISK),
        dev(2, 1000, "CDROM", **ISO),
        dev(1, 1002, "NIC", nic_attach="br0", mac="00:a0:98:00:00:01"),
        dev(5, 5, "DISK", **{**DISK, "zvol_name": "tank/vm1", "serial": "SERIAL02"}, type="VIRTIO"),
    ],
    "nic_bridge_e1000": [dev(1, 1002, "NIC", nic_attach="br0", mac="00:a0:98:12:34:56")],
    "nic_macvtap_virtio_trusted": [dev(1, 1002, "NIC", nic_attach="eth1", type="VIRTIO", mac="00:a0:98:12:34:57",
                                       trust_guest_rx_filters=True)],
    "nic_network": [dev(1, 1002, "NIC", nic_attach="natnet", type="VIRTIO", mac="00:a0:98:12:34:58")],
    "nic_default_route": [dev(1, 1002, "NIC", mac="00:a0:98:12:34:59")],
    "display_spice_password": [dev(1, 1002, "DISPLAY", port=5900, web_port=5901, password="s3cret",
                                   resolution="1920x1080")],
    "display_vnc": [dev(1, 1002, "DISPLAY", type="VNC", port=5910, web_port=5911, bind="0.0.0.0", web=False)],
    "display_spice_and_vnc": [dev(1, 1002, "DISPLAY", port=5900, web_port=5901, bind="::"),
                              dev(2, 1003, "DISPLAY", type="VNC", port=5902, web_port=5903, web=False,
                                  password="vncpass")],
    "pci": [dev(1, 1002, "PCI", pptdev="0000:01:00.0")],
    "usb_ids_default_controller": [dev(1, 1002, "USB", usb={"vendor_id": "0x1d6b", "product_id": "0x0002"})],
    "usb_node_device": [dev(1, 1002, "USB", device="usb_1_3", controller_type="qemu-xhci")],
    "usb_two_controllers_with_display": [
        dev(1, 1002, "USB", usb={"vendor_id": "0x1d6b", "product_id": "0x0002"}, controller_type="ich9-ehci1"),
        dev(2, 1003, "DISPLAY", port=5900, web_port=5901),
        dev(3, 1004, "USB", device="usb_1_3", controller_type="qemu-xhci"),
        dev(4, 1005, "USB", usb={"vendor_id": "0x0781", "product_id": "0x5567"}, controller_type="ich9-ehci1"),
    ],
    "usb_unplugged_node_device": [dev(1, 1002, "USB", device="usb_9_9")],
}


def domain(case: str) -> str:
    vm = VMRecord(id=1, name=case, memory=256, uuid="6f1c2e0a-3b7d-4c1e-9a55-0d2f4b8e7c13")
    ctx = DomainContext(DomainType.QEMU, f"/var/lib/libvirt/qemu/nvram/{vm.domain_name}_VARS.fd")
    return domain_xml_string(vm, ctx, layout.elements(CASES[case], HOST))


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str, tmp_path: Path) -> None:
    text = domain(case)
    golden = GOLDEN / f"{case}.xml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()
    if VALIDATOR is None:
        pytest.skip("virt-xml-validate not installed (Debian package libvirt-clients)")
    path = tmp_path / golden.name
    path.write_text(text)
    result = subprocess.run([VALIDATOR, str(path), "domain"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + result.stdout


def devices_of(case: str) -> etree._Element:
    return etree.fromstring(domain(case).encode()).find("devices")  # type: ignore[return-value]


def test_boot_order_and_disk_names() -> None:
    disks = devices_of("boot_order_and_names").findall("disk")
    got = [(d.get("device"), d.find("target").get("dev"), d.find("boot").get("order")) for d in disks]  # type: ignore
    assert got == [("disk", "vda", "1"), ("cdrom", "sda", "2"), ("disk", "sdb", "3"), ("disk", "vdb", "4")]
    assert devices_of("boot_order_and_names").find("interface/boot") is None


def test_one_video_for_two_displays() -> None:
    devices = devices_of("display_spice_and_vnc")
    assert len(devices.findall("video")) == 1 and len(devices.findall("graphics")) == 2
    assert devices.find("video/model/resolution").get("x") == "1024"  # type: ignore[union-attr]
    assert devices.find("graphics[@type='vnc']").get("passwd") == "vncpass"  # type: ignore[union-attr]
    assert devices.find("graphics[@type='spice']").get("passwd") is None  # type: ignore[union-attr]


def test_usb_controllers_follow_device_order() -> None:
    devices = devices_of("usb_two_controllers_with_display")
    models = [(c.get("index"), c.get("model")) for c in devices.findall("controller[@type='usb']")]
    assert models == [("0", "ich9-ehci1"), ("1", "qemu-xhci")]
    buses = [h.find("address").get("bus") for h in devices.findall("hostdev")]  # type: ignore[union-attr]
    assert buses == ["0", "1", "0"]


def test_unplugged_node_device_is_left_out() -> None:
    assert devices_of("usb_unplugged_node_device").find("hostdev") is None


def test_default_route_interface_is_macvtap() -> None:
    source = devices_of("nic_default_route").find("interface/source")
    assert source is not None and source.get("dev") == "eth0" and source.get("mode") == "bridge"


def test_unknown_attach_falls_back_to_name_rule() -> None:
    assert HostSnapshot().nic_kind("br5") is NicKind.BRIDGE
    assert HostSnapshot().nic_kind("enp1s0") is NicKind.DIRECT


def test_live_xml_of_one_device_keeps_its_place() -> None:
    devices = CASES["boot_order_and_names"]
    [xml] = layout.device_xml(devices, HOST, 2)
    el = etree.fromstring(xml)
    assert el.find("target").get("dev") == "sda" and el.find("boot").get("order") == "2"  # type: ignore
    assert layout.device_xml(devices, HOST, 99) == []


def test_unknown_dtype_is_skipped() -> None:
    stray = {"id": 9, "vm": 1, "order": 1, "attributes": {"dtype": "FLOPPY"}}
    assert len(layout.elements([stray, *CASES["cdrom"]], HOST)) == 1


def test_xml_is_pure(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_io(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"device XML did I/O: {args!r}")

    monkeypatch.setattr(builtins, "open", no_io)
    monkeypatch.setattr(os, "open", no_io)
    monkeypatch.setattr(os, "stat", no_io)
    for devices in CASES.values():
        first = [etree.tostring(e) for e in layout.elements(devices, HOST)]
        assert first == [etree.tostring(e) for e in layout.elements(devices, HOST)]
