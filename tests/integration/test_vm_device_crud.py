"""vm.device.* CRUD over the API: defaults, events, masking, vm.update reconciliation, deletes, clone, choices."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_vm_device_fixtures import (  # noqa: F401 (fixtures)
    bridge, by_dtype, expect_call_error, expect_invalid, media, nat_network, storage, virsh, vm_with, volumes,
)
from tests.support import Daemon, Rpc, RpcError, unique

pytestmark = pytest.mark.timeout(300)

SEED_DEFAULTS = {
    "DISK": {"type": "AHCI", "create_zvol": False, "zvol_volsize": None, "logical_sectorsize": None,
             "physical_sectorsize": None, "iotype": "THREADS"},
    "RAW": {"type": "AHCI", "exists": True, "boot": False, "logical_sectorsize": None, "physical_sectorsize": None,
            "iotype": "THREADS"},
    "NIC": {"type": "E1000", "trust_guest_rx_filters": False},
    "DISPLAY": {"type": "SPICE", "resolution": "1024x768", "bind": "127.0.0.1", "wait": False, "password": None,
                "web": True},
    "USB": {"controller_type": "nec-xhci", "device": None},
}


def events(rpc: Rpc, collection: str, msg: str) -> list[dict[str, Any]]:
    return [e["params"] for e in rpc.events
            if e.get("params", {}).get("collection") == collection and e["params"]["msg"] == msg]


async def test_create_each_dtype_with_seed_defaults(unix_rpc: Rpc, daemon: Daemon, storage: Path, media: Path,
                                                    bridge: str) -> None:
    inputs = {
        "DISK": {"create_zvol": True, "zvol_name": f"{daemon.pool}/{unique('d')}", "zvol_volsize": 1 << 20},
        "RAW": {"path": str(storage / unique("raw")), "size": 1 << 20},
        "CDROM": {"path": str(media)},
        "NIC": {"nic_attach": bridge},
        "DISPLAY": {},
        "PCI": {"pptdev": "pci_0000_00_01_0"},
        "USB": {"usb": {"vendor_id": "0x1D6B", "product_id": "0x0002"}},
    }
    async with vm_with(unix_rpc) as vm:
        for dtype, attributes in inputs.items():
            created = await unix_rpc.call("vm.device.create", {"vm": vm["id"], "attributes": {"dtype": dtype,
                                                                                             **attributes}})
            a = created["attributes"]
            assert created["vm"] == vm["id"] and a["dtype"] == dtype
            assert SEED_DEFAULTS.get(dtype, {}).items() <= a.items(), (dtype, a)
        devices = {d["attributes"]["dtype"]: d for d in (await unix_rpc.call("vm.get_instance", vm["id"]))["devices"]}
        assert set(devices) == set(inputs)
        assert devices["DISK"]["attributes"]["path"] == str(storage / daemon.pool / inputs["DISK"]["zvol_name"]
                                                            .split("/")[1])
        assert len(devices["DISK"]["attributes"]["serial"]) == 8 and devices["RAW"]["attributes"]["serial"]
        assert devices["NIC"]["attributes"]["mac"].startswith("00:a0:98:")
        assert 5900 <= devices["DISPLAY"]["attributes"]["port"] < devices["DISPLAY"]["attributes"]["web_port"]
        assert devices["PCI"]["attributes"]["pptdev"] == "0000:00:01.0"
        assert devices["USB"]["attributes"]["usb"] == {"vendor_id": "0x1d6b", "product_id": "0x0002"}
        # upstream's default orders, stored: CDROM first, then the disks, then the rest; ties by id.
        assert [d["order"] for d in (await unix_rpc.call("vm.get_instance", vm["id"]))["devices"]][:3] == \
            [1000, 1001, 1001]
        assert (storage / inputs["RAW"]["path"].split("/")[-1]).stat().st_blocks == 0


async def test_events_and_vm_query_follow_at_once(unix_rpc: Rpc, media: Path, vm: dict[str, Any]) -> None:
    await unix_rpc.call("core.subscribe", "vm.device.query")
    await unix_rpc.call("core.subscribe", "vm.query")
    created = await unix_rpc.call("vm.device.create", {"vm": vm["id"], "attributes": {"dtype": "CDROM",
                                                                                     "path": str(media)}})
    assert (await unix_rpc.call("vm.get_instance", vm["id"]))["devices"] == [created]
    await unix_rpc.next_event(lambda e: e["params"]["collection"] == "vm.device.query"
                              and e["params"]["msg"] == "added" and e["params"]["id"] == created["id"])
    changed = await unix_rpc.next_event(lambda e: e["params"]["collection"] == "vm.query"
                                        and e["params"]["id"] == vm["id"])
    assert changed["params"]["fields"]["devices"] == [created]
    updated = await unix_rpc.call("vm.device.update", created["id"], {"order": 3})
    assert updated["order"] == 3 and updated["attributes"] == created["attributes"]
    await unix_rpc.next_event(lambda e: e["params"]["collection"] == "vm.device.query"
                              and e["params"]["msg"] == "changed")
    assert await unix_rpc.call("vm.device.query", [["vm", "=", vm["id"]]]) == [updated]
    assert await unix_rpc.call("vm.device.delete", created["id"]) is True
    await unix_rpc.next_event(lambda e: e["params"]["collection"] == "vm.device.query"
                              and e["params"]["msg"] == "removed" and e["params"]["id"] == created["id"])
    assert (await unix_rpc.call("vm.get_instance", vm["id"]))["devices"] == []


async def test_update_merges_and_keeps_generated_values(unix_rpc: Rpc, bridge: str, nat_network: str) -> None:
    async with vm_with(unix_rpc, {"dtype": "NIC", "nic_attach": bridge}) as vm, vm_with(unix_rpc) as other:
        [nic] = vm["devices"]
        updated = await unix_rpc.call("vm.device.update", nic["id"], {"attributes": {"type": "VIRTIO",
                                                                                    "nic_attach": nat_network}})
        assert updated["attributes"] == {**nic["attributes"], "type": "VIRTIO", "nic_attach": nat_network}
        assert await expect_invalid(unix_rpc, "vm.device.update", nic["id"], {"attributes": {"dtype": "CDROM"}}) \
            == [("vm_device_update.attributes.dtype", 22)]
        assert await expect_invalid(unix_rpc, "vm.device.update", nic["id"], {"vm": other["id"]}) \
            == [("vm_device_update.vm", 22)]
        interface = virsh("dumpxml", "--inactive", f"{vm['id']}_{vm['name']}")
        assert f"<source network='{nat_network}'/>" in interface and nic["attributes"]["mac"] in interface


async def test_display_password_is_masked(unix_rpc: Rpc) -> None:
    async with vm_with(unix_rpc, {"dtype": "DISPLAY", "password": "s3cret"}, {"dtype": "DISPLAY", "type": "VNC",
                                                                              "web": False}) as vm:
        spice, vnc = by_dtype(vm, "DISPLAY")
        assert spice["attributes"]["password"] == "********" and vnc["attributes"]["password"] is None
        [queried] = await unix_rpc.call("vm.device.query", [["id", "=", spice["id"]]])
        assert queried["attributes"]["password"] == "********"
        shown = await unix_rpc.call("vm.get_display_devices", vm["id"])
        assert [d["attributes"]["password_configured"] for d in shown] == [True, False]
        # Sending the mask back keeps the password.
        same = await unix_rpc.call("vm.device.update", spice["id"], {"attributes": spice["attributes"]})
        assert same == spice
        xml = virsh("dumpxml", "--inactive", "--security-info", f"{vm['id']}_{vm['name']}")
        assert "passwd='s3cret'" in xml


async def test_vm_update_reconciles_devices(unix_rpc: Rpc, daemon: Daemon, storage: Path, media: Path,
                                            bridge: str) -> None:
    async with vm_with(unix_rpc, {"dtype": "CDROM", "path": str(media)}, {"dtype": "NIC", "nic_attach": bridge},
                       {"dtype": "DISPLAY"}) as vm:
        cdrom, nic, display = ({k: v for k, v in d.items() if k != "vm"} for d in sorted(vm["devices"],
                                                                                          key=lambda d: d["id"]))
        before = await unix_rpc.call("vm.device.query", [["vm", "=", vm["id"]]])
        new_volume = unique("vol")
        # One invalid entry: nothing changes, and the volume the valid entry asked for is not created.
        bad = [cdrom, {**nic, "attributes": {"type": "VIRTIO"}},
               {"attributes": {"dtype": "DISK", "create_zvol": True, "zvol_name": f"{daemon.pool}/{new_volume}",
                               "zvol_volsize": 1 << 20}},
               {"attributes": {"dtype": "RAW", "path": str(storage / "missing.img"), "exists": True}}]
        assert await expect_invalid(unix_rpc, "vm.update", vm["id"], {"devices": bad}) \
            == [("vm_update.devices.3.attributes.path", 2)]
        assert await unix_rpc.call("vm.device.query", [["vm", "=", vm["id"]]]) == before
        assert new_volume not in volumes(daemon.pool)
        assert await expect_invalid(unix_rpc, "vm.update", vm["id"], {"devices": [{**cdrom, "id": 999999}]}) \
            == [("vm_update.devices.0.id", 2)]

        await unix_rpc.call("core.subscribe", "vm.device.query")
        good = bad[:3]
        updated = await unix_rpc.call("vm.update", vm["id"], {"devices": good})
        got = {d["attributes"]["dtype"]: d for d in updated["devices"]}
        assert set(got) == {"CDROM", "NIC", "DISK"} and got["CDROM"] == {**cdrom, "vm": vm["id"]}
        assert got["NIC"]["id"] == nic["id"] and got["NIC"]["attributes"]["type"] == "VIRTIO"
        assert got["NIC"]["attributes"]["mac"] == nic["attributes"]["mac"]
        assert new_volume in volumes(daemon.pool)
        msgs = {(e["params"]["msg"], e["params"]["id"]) for e in unix_rpc.events
                if e.get("params", {}).get("collection") == "vm.device.query"}
        assert {("changed", nic["id"]), ("removed", display["id"]), ("added", got["DISK"]["id"])} <= msgs
        assert ("changed", cdrom["id"]) not in msgs


async def test_delete_with_zvol_and_raw_file(unix_rpc: Rpc, daemon: Daemon, storage: Path) -> None:
    disk, raw = unique("vol"), storage / unique("raw")
    async with vm_with(unix_rpc, {"dtype": "DISK", "create_zvol": True, "zvol_name": f"{daemon.pool}/{disk}",
                                  "zvol_volsize": 1 << 20},
                       {"dtype": "RAW", "path": str(raw), "size": 4096}) as vm:
        [d], [r] = by_dtype(vm, "DISK"), by_dtype(vm, "RAW")
        assert disk in volumes(daemon.pool) and raw.exists()
        assert "not a disk" in (await expect_call_error(unix_rpc, "vm.device.delete", r["id"], {"zvol": True})).reason
        assert "not of RAW" in (await expect_call_error(unix_rpc, "vm.device.delete", d["id"],
                                                        {"raw_file": True})).reason
        await unix_rpc.call("vm.device.delete", d["id"], {"zvol": True})
        await unix_rpc.call("vm.device.delete", r["id"], {"raw_file": True})
        assert disk not in volumes(daemon.pool) and not raw.exists()
        # Without the options the storage stays.
        kept = await unix_rpc.call("vm.device.create", {"vm": vm["id"], "attributes": {
            "dtype": "RAW", "path": str(raw), "size": 4096}})
        await unix_rpc.call("vm.device.delete", kept["id"])
        assert raw.exists()


async def test_clone_copies_disks_and_renews_identity(unix_rpc: Rpc, daemon: Daemon, bridge: str) -> None:
    volume = unique("vol")
    async with vm_with(unix_rpc, {"dtype": "DISK", "create_zvol": True, "zvol_name": f"{daemon.pool}/{volume}",
                                  "zvol_volsize": 1 << 20},
                       {"dtype": "NIC", "nic_attach": bridge}, {"dtype": "DISPLAY", "password": "pw"}) as vm:
        clone = await unix_rpc.call("vm.clone", vm["id"])
        try:
            [disk], [copy] = by_dtype(vm, "DISK"), by_dtype(clone, "DISK")
            assert copy["attributes"]["zvol_name"] == f"{daemon.pool}/{volume}_{clone['name']}"
            assert f"{volume}_{clone['name']}" in volumes(daemon.pool)
            assert copy["attributes"]["serial"] != disk["attributes"]["serial"]
            assert by_dtype(clone, "NIC")[0]["attributes"]["mac"] != by_dtype(vm, "NIC")[0]["attributes"]["mac"]
            ports = {by_dtype(x, "DISPLAY")[0]["attributes"][k] for x in (vm, clone) for k in ("port", "web_port")}
            assert len(ports) == 4 and by_dtype(clone, "DISPLAY")[0]["attributes"]["password"] == "********"
        finally:
            await unix_rpc.call("vm.delete", clone["id"], {"zvols": True})
        assert f"{volume}_{clone['name']}" not in volumes(daemon.pool)


async def test_choices(unix_rpc: Rpc, daemon: Daemon, bridge: str, nat_network: str) -> None:
    binds = await unix_rpc.call("vm.device.bind_choices")
    assert {"0.0.0.0", "::", "127.0.0.1"} <= set(binds) and binds["127.0.0.1"] == "127.0.0.1"
    attach = await unix_rpc.call("vm.device.nic_attach_choices")
    assert {bridge, nat_network} <= set(attach) and "lo" not in attach
    free = unique("free")
    virsh("vol-create-as", daemon.pool, free, "1M", "--format", "raw")
    async with vm_with(unix_rpc, {"dtype": "DISK", "create_zvol": True, "zvol_volsize": 1 << 20,
                                  "zvol_name": f"{daemon.pool}/{unique('used')}"}) as vm:
        disks = await unix_rpc.call("vm.device.disk_choices")
        assert f"{daemon.pool}/{free}" in disks.values()
        assert by_dtype(vm, "DISK")[0]["attributes"]["zvol_name"] not in disks.values()
    pci = await unix_rpc.call("vm.device.passthrough_device_choices")
    assert pci and all(set(d) >= {"iommu_group", "available", "error", "drivers", "critical"} for d in pci.values())
    assert isinstance(await unix_rpc.call("vm.device.usb_passthrough_choices"), dict)
    assert "qemu-xhci" in await unix_rpc.call("vm.device.usb_controller_choices")
    assert await unix_rpc.call("vm.device.iotype_choices") == {"NATIVE": "NATIVE", "THREADS": "THREADS",
                                                               "IO_URING": "IO_URING"}
    methods = await unix_rpc.call("core.get_methods")
    assert methods["vm.device.bind_choices"]["roles"] == ["VM_DEVICE_READ", "READONLY_ADMIN"]
    assert methods["vm.device.create"]["roles"] == ["VM_DEVICE_WRITE"]


async def test_wrong_ids(unix_rpc: Rpc) -> None:
    for method, params in (("vm.device.get_instance", (987654,)), ("vm.device.update", (987654, {})),
                           ("vm.device.delete", (987654,))):
        with pytest.raises(RpcError) as e:
            await unix_rpc.call(method, *params)
        assert (e.value.code, e.value.errno) == (-32001, 2), method  # a failed lookup: ENOENT
    assert await expect_invalid(unix_rpc, "vm.device.create", {"vm": 987654, "attributes": {"dtype": "DISPLAY"}}) \
        == [("vm_device_create.vm", 2)]


async def test_storage_pool_is_a_started_autostart_dir_pool(unix_rpc: Rpc, daemon: Daemon, storage: Path) -> None:
    async with vm_with(unix_rpc, {"dtype": "DISK", "create_zvol": True, "zvol_volsize": 4096,
                                  "zvol_name": f"{daemon.pool}/{unique('vol')}"}):
        xml = virsh("pool-dumpxml", daemon.pool)
        assert "<pool type='dir'>" in xml and f"<path>{storage / daemon.pool}</path>" in xml
        info = virsh("pool-info", daemon.pool)
        assert "running" in info and "Autostart:      yes" in info
    # Removed behind the daemon's back, it comes back when a DISK needs it.
    virsh("pool-destroy", daemon.pool)
    virsh("pool-undefine", daemon.pool)
    volume = unique("vol")
    async with vm_with(unix_rpc, {"dtype": "DISK", "create_zvol": True, "zvol_volsize": 4096,
                                  "zvol_name": f"{daemon.pool}/{volume}"}):
        assert volume in volumes(daemon.pool)
