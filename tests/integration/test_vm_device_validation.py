"""vm.device.create validation over the API: every rule, its attribute path and errno; nothing is left behind."""
from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_vm_device_fixtures import (  # noqa: F401 (fixtures)
    bridge, dummy, expect_invalid, storage, vm_with, volumes,
)
from tests.support import Daemon, Rpc, unique

pytestmark = pytest.mark.timeout(300)

A = "vm_device_create.attributes"
Ctx = dict[str, Any]

# (attributes, expected (attribute, errno)), with {root}, {pool}, {iso}, {bridge}, {dummy} filled in.
CASES: dict[str, tuple[dict[str, Any], tuple[str, int]]] = {
    "dtype_missing": ({}, (f"{A}.dtype", errno.EINVAL)),
    "dtype_unknown": ({"dtype": "FLOPPY"}, (f"{A}.dtype", errno.EINVAL)),
    "extra_attribute": ({"dtype": "CDROM", "path": "{iso}", "speed": 2}, (f"{A}.speed", errno.EINVAL)),
    "disk_bus": ({"dtype": "DISK", "zvol_name": "{pool}/x", "type": "SCSI"}, (f"{A}.type", errno.EINVAL)),
    "disk_iotype": ({"dtype": "DISK", "zvol_name": "{pool}/x", "iotype": "AIO"}, (f"{A}.iotype", errno.EINVAL)),
    "disk_sector": ({"dtype": "DISK", "zvol_name": "{pool}/x", "logical_sectorsize": 1024},
                    (f"{A}.logical_sectorsize", errno.EINVAL)),
    "disk_physical_alone": ({"dtype": "DISK", "create_zvol": True, "zvol_name": "{pool}/{new}", "zvol_volsize": 1024,
                             "physical_sectorsize": 4096}, (f"{A}.logical_sectorsize", errno.EINVAL)),
    "disk_serial_long": ({"dtype": "DISK", "zvol_name": "{pool}/x", "serial": "x" * 21}, (f"{A}.serial", errno.EINVAL)),
    "disk_no_path": ({"dtype": "DISK"}, (f"{A}.path", errno.EINVAL)),
    "disk_missing_volume": ({"dtype": "DISK", "zvol_name": "{pool}/nope"}, (f"{A}.zvol_name", errno.ENOENT)),
    "disk_path_not_a_volume": ({"dtype": "DISK", "path": "{iso}"}, (f"{A}.path", errno.ENOENT)),
    "disk_volsize_without_create": ({"dtype": "DISK", "zvol_name": "{pool}/x", "zvol_volsize": 5},
                                    (f"{A}.zvol_volsize", errno.EINVAL)),
    "disk_create_needs_size": ({"dtype": "DISK", "create_zvol": True, "zvol_name": "{pool}/{new}"},
                               (f"{A}.zvol_volsize", errno.EINVAL)),
    "disk_create_needs_name": ({"dtype": "DISK", "create_zvol": True, "zvol_volsize": 5},
                               (f"{A}.zvol_name", errno.EINVAL)),
    "disk_create_with_path": ({"dtype": "DISK", "create_zvol": True, "zvol_name": "{pool}/{new}", "zvol_volsize": 5,
                               "path": "/x"}, (f"{A}.path", errno.EINVAL)),
    "disk_create_exists": ({"dtype": "DISK", "create_zvol": True, "zvol_name": "{pool}/{volume}", "zvol_volsize": 5},
                           (f"{A}.zvol_name", errno.EEXIST)),
    "disk_create_no_pool": ({"dtype": "DISK", "create_zvol": True, "zvol_name": "nopool/x", "zvol_volsize": 5},
                            (f"{A}.zvol_name", errno.ENOENT)),
    "disk_name_pattern": ({"dtype": "DISK", "zvol_name": "no-slash"}, (f"{A}.zvol_name", errno.EINVAL)),
    "raw_missing_exists": ({"dtype": "RAW", "path": "{root}/missing.img", "exists": True}, (f"{A}.path", errno.ENOENT)),
    "raw_present_not_exists": ({"dtype": "RAW", "path": "{iso}", "size": 10}, (f"{A}.path", errno.EEXIST)),
    "raw_needs_size": ({"dtype": "RAW", "path": "{root}/{new}.img"}, (f"{A}.size", errno.EINVAL)),
    "raw_no_directory": ({"dtype": "RAW", "path": "{root}/nodir/x.img", "size": 10}, (f"{A}.path", errno.ENOENT)),
    "raw_shrink": ({"dtype": "RAW", "path": "{iso}", "exists": True, "size": 1}, (f"{A}.size", errno.EINVAL)),
    "raw_braces": ({"dtype": "RAW", "path": "{root}/{{x}}.img", "size": 1}, (f"{A}.path", errno.EINVAL)),
    "cdrom_no_path": ({"dtype": "CDROM"}, (f"{A}.path", errno.EINVAL)),
    "cdrom_missing": ({"dtype": "CDROM", "path": "{root}/missing.iso"}, (f"{A}.path", errno.ENOENT)),
    "cdrom_directory": ({"dtype": "CDROM", "path": "{root}"}, (f"{A}.path", errno.ENOENT)),
    "cdrom_dotdot": ({"dtype": "CDROM", "path": "{root}/../storage/x.iso"}, (f"{A}.path", errno.EINVAL)),
    "cdrom_outside": ({"dtype": "CDROM", "path": "/etc/hostname"}, (f"{A}.path", errno.EINVAL)),
    "cdrom_symlink_out": ({"dtype": "CDROM", "path": "{root}/escape.iso"}, (f"{A}.path", errno.EINVAL)),
    "cdrom_relative": ({"dtype": "CDROM", "path": "x.iso"}, (f"{A}.path", errno.EINVAL)),
    "raw_symlink_out": ({"dtype": "RAW", "path": "{root}/escape.iso", "exists": True}, (f"{A}.path", errno.EINVAL)),
    "nic_type": ({"dtype": "NIC", "type": "RTL8139"}, (f"{A}.type", errno.EINVAL)),
    "nic_attach_unknown": ({"dtype": "NIC", "nic_attach": "nosuch0"}, (f"{A}.nic_attach", errno.ENOENT)),
    "nic_mac_format": ({"dtype": "NIC", "nic_attach": "{bridge}", "mac": "00:11:22:33:44"}, (f"{A}.mac", errno.EINVAL)),
    "nic_mac_multicast": ({"dtype": "NIC", "nic_attach": "{bridge}", "mac": "ff:ff:ff:ff:ff:ff"},
                          (f"{A}.mac", errno.EINVAL)),
    "nic_mac_taken": ({"dtype": "NIC", "nic_attach": "{bridge}", "mac": "{mac}"}, (f"{A}.mac", errno.EEXIST)),
    "nic_trust_e1000": ({"dtype": "NIC", "nic_attach": "{dummy}", "trust_guest_rx_filters": True},
                        (f"{A}.trust_guest_rx_filters", errno.EINVAL)),
    "nic_trust_bridge": ({"dtype": "NIC", "nic_attach": "{bridge}", "type": "VIRTIO", "trust_guest_rx_filters": True},
                         (f"{A}.trust_guest_rx_filters", errno.EINVAL)),
    "display_type": ({"dtype": "DISPLAY", "type": "RDP"}, (f"{A}.type", errno.EINVAL)),
    "display_resolution": ({"dtype": "DISPLAY", "resolution": "1x1"}, (f"{A}.resolution", errno.EINVAL)),
    "display_port_range": ({"dtype": "DISPLAY", "port": 5800}, (f"{A}.port", errno.EINVAL)),
    "display_web_port_range": ({"dtype": "DISPLAY", "web_port": 22}, (f"{A}.web_port", errno.EINVAL)),
    "display_port_schema": ({"dtype": "DISPLAY", "port": 70000}, (f"{A}.port", errno.EINVAL)),
    "display_port_display": ({"dtype": "DISPLAY", "port": "{display_port}"}, (f"{A}.port", errno.EADDRINUSE)),
    "display_port_listening": ({"dtype": "DISPLAY", "port": "{daemon_port}"}, (f"{A}.port", errno.EADDRINUSE)),
    "display_same_ports": ({"dtype": "DISPLAY", "port": 6500, "web_port": 6500}, (f"{A}.web_port", errno.EINVAL)),
    "display_bind": ({"dtype": "DISPLAY", "bind": "192.0.2.77"}, (f"{A}.bind", errno.EADDRNOTAVAIL)),
    "display_second_spice": ({"dtype": "DISPLAY"}, (f"{A}.type", errno.EINVAL)),
    "display_vnc_password": ({"dtype": "DISPLAY", "type": "VNC", "web": False, "password": "123456789"},
                             (f"{A}.password", errno.EINVAL)),
    "pci_format": ({"dtype": "PCI", "pptdev": "01:00.0"}, (f"{A}.pptdev", errno.EINVAL)),
    "pci_missing": ({"dtype": "PCI", "pptdev": "0000:7f:1f.7"}, (f"{A}.pptdev", errno.ENOENT)),
    "pci_bridge": ({"dtype": "PCI", "pptdev": "0000:00:00.0"}, (f"{A}.pptdev", errno.EINVAL)),
    "usb_neither": ({"dtype": "USB"}, (f"{A}.device", errno.EINVAL)),
    "usb_both": ({"dtype": "USB", "device": "usb_1_1", "usb": {"vendor_id": "0x1d6b", "product_id": "0x0002"}},
                 (f"{A}.usb", errno.EINVAL)),
    "usb_ids": ({"dtype": "USB", "usb": {"vendor_id": "1d6b", "product_id": "0x0002"}},
                (f"{A}.usb.vendor_id", errno.EINVAL)),
    "usb_device_absent": ({"dtype": "USB", "device": "usb_99_99"}, (f"{A}.device", errno.ENOENT)),
    "usb_controller": ({"dtype": "USB", "device": "usb_1_1", "controller_type": "xhci"},
                       (f"{A}.controller_type", errno.EINVAL)),
}


def fill(value: Any, ctx: Ctx) -> Any:
    if isinstance(value, dict):
        return {k: fill(v, ctx) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("{") and value.endswith("}") and value[1:-1] in ctx \
            and isinstance(ctx[value[1:-1]], int):
        return ctx[value[1:-1]]
    return value.format(**ctx) if isinstance(value, str) else value


@pytest.fixture
async def ctx(unix_rpc: Rpc, daemon: Daemon, storage: Path, bridge: str, dummy: str) -> Any:
    """A VM with a SPICE display and a NIC, a volume, an ISO and a symlink out of the roots."""
    volume = unique("vol")
    iso = storage / f"{unique('iso')}.iso"
    iso.write_bytes(b"\0" * 4096)
    escape = storage / "escape.iso"
    if not escape.is_symlink():
        escape.symlink_to("/etc/hostname")
    async with vm_with(unix_rpc, {"dtype": "DISPLAY"}, {"dtype": "NIC", "nic_attach": bridge},
                       {"dtype": "DISK", "create_zvol": True, "zvol_name": f"{daemon.pool}/{volume}",
                        "zvol_volsize": 4096}) as vm:
        attrs = {d["attributes"]["dtype"]: d["attributes"] for d in vm["devices"]}
        yield {"vm": vm, "root": str(storage), "pool": daemon.pool, "iso": str(iso), "bridge": bridge, "dummy": dummy,
               "volume": volume, "new": unique("new"), "mac": attrs["NIC"]["mac"].upper(),
               "display_port": attrs["DISPLAY"]["web_port"], "daemon_port": daemon.port}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_create_refused(unix_rpc: Rpc, ctx: Ctx, case: str) -> None:
    attributes, expected = CASES[case]
    before = await unix_rpc.call("vm.device.query", [], {"count": True})
    pool_before = volumes(ctx["pool"])
    errors = await expect_invalid(unix_rpc, "vm.device.create", {"vm": ctx["vm"]["id"],
                                                                 "attributes": fill(attributes, ctx)})
    assert expected in errors, errors
    assert await unix_rpc.call("vm.device.query", [], {"count": True}) == before
    assert volumes(ctx["pool"]) == pool_before


async def test_all_errors_at_once_through_vm_create(unix_rpc: Rpc, ctx: Ctx) -> None:
    count = await unix_rpc.call("vm.query", [], {"count": True})
    devices = [{"attributes": fill(CASES[c][0], ctx)} for c in ("cdrom_symlink_out", "nic_mac_taken", "pci_missing")]
    errors = await expect_invalid(unix_rpc, "vm.create", {"name": unique("bad"), "memory": 64, "devices": devices})
    assert errors == [("vm_create.devices.0.attributes.path", errno.EINVAL),
                      ("vm_create.devices.1.attributes.mac", errno.EEXIST),
                      ("vm_create.devices.2.attributes.pptdev", errno.ENOENT)]
    assert await unix_rpc.call("vm.query", [], {"count": True}) == count


async def test_update_is_validated_after_merging(unix_rpc: Rpc, ctx: Ctx) -> None:
    display = next(d for d in ctx["vm"]["devices"] if d["attributes"]["dtype"] == "DISPLAY")
    # The stored SPICE display becomes VNC: its rules (8-character passwords) apply to the merged record.
    errors = await expect_invalid(unix_rpc, "vm.device.update", display["id"],
                                  {"attributes": {"type": "VNC", "password": "123456789"}})
    assert errors == [("vm_device_update.attributes.password", errno.EINVAL)]
    errors = await expect_invalid(unix_rpc, "vm.device.update", display["id"], {"attributes": {"port": "x"}})
    assert errors == [("vm_device_update.attributes.port", errno.EINVAL)]


