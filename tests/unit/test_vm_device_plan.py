"""Planning device changes: merging, defaults, generated values, cross-device rules, running-VM rules.
The host is faked (it is the outermost boundary); integration tests use the real one."""
from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest

from middlewared.errors import ValidationErrors
from middlewared.plugins.vm.devices_api import DeviceChange, DevicePlan
from middlewared.middleware import SECRET
from middlewared.plugins.vm_device.model import NicKind
from middlewared.plugins.vm_device.netif import Networks
from middlewared.plugins.vm_device.planning import held_among, make_plan
from middlewared.plugins.vm_device.pool import Volume
from middlewared.plugins.vm_device.registry import DEVICE_TYPES
from middlewared.plugins.vm_device.resources import CreateFile, CreateVolume, GrowFile


class FakeHost:
    """The host facts validation asks for."""

    def __init__(self, root: Path) -> None:
        self.roots = (str(root),)
        self.volumes = {"tank/old": Volume("tank", "old", "/dev/tank/old", 1 << 20)}
        self.listening = {5900}
        self.foreign: dict[int, str] = {}
        self.running_elsewhere: list[dict[str, Any]] = []

    async def pool_active(self, name: str) -> bool:
        return name == "tank"

    async def volume(self, zvol_name: str) -> Volume | None:
        return self.volumes.get(zvol_name)

    async def volume_at(self, path: str) -> Volume | None:
        return next((v for v in self.volumes.values() if v.path == path), None)

    async def qemu_user(self) -> None:
        return None

    async def networks(self, fresh: bool = False) -> Networks:
        return Networks({"br0": NicKind.BRIDGE, "eth0": NicKind.DIRECT}, {"nat": True}, "eth0")

    async def bind_addresses(self) -> list[str]:
        return ["0.0.0.0", "127.0.0.1", "::"]

    async def listening_ports(self) -> set[int]:
        return self.listening

    async def foreign_display_ports(self) -> dict[int, str]:
        return self.foreign


VM = {"id": 1, "name": "vm1", "status": {"state": "STOPPED"}}
RUNNING = {**VM, "status": {"state": "RUNNING"}}


def stored(id_: int, dtype: str, order: int | None = None, **attributes: Any) -> dict[str, Any]:
    device_type = DEVICE_TYPES[dtype]
    return {"id": id_, "vm": 1, "order": order or device_type.default_order,
            "attributes": device_type.with_defaults({"dtype": dtype, **attributes})}


async def plan(host: FakeHost, changes: list[dict[str, Any]], current: list[dict[str, Any]] | None = None,
               remove: tuple[int, ...] = (), vm: dict[str, Any] = VM, elsewhere: list[dict[str, Any]] | None = None,
               force: bool = False) -> tuple[DevicePlan, ValidationErrors]:
    verrors = ValidationErrors()
    result = await make_plan(DEVICE_TYPES, vm, current or [], [DeviceChange(f"x.{i}", c) for i, c in enumerate(changes)],
                             list(remove), verrors, host,  # type: ignore[arg-type]
                             held_among(DEVICE_TYPES, elsewhere or []), force)
    return result, verrors


def errors(verrors: ValidationErrors) -> list[tuple[str | None, int]]:
    return [(e.attribute, e.errno) for e in verrors]


@pytest.fixture
def host(tmp_path: Path) -> FakeHost:
    (tmp_path / "a.iso").write_bytes(b"iso")
    (tmp_path / "b.iso").write_bytes(b"iso2")
    (tmp_path / "disk.img").write_bytes(b"\0" * 4096)
    return FakeHost(tmp_path)


async def test_defaults_orders_and_generated_values(host: FakeHost, tmp_path: Path) -> None:
    p, verrors = await plan(host, [
        {"attributes": {"dtype": "CDROM", "path": str(tmp_path / "a.iso")}},
        {"attributes": {"dtype": "DISK", "zvol_name": "tank/old"}},
        {"attributes": {"dtype": "NIC", "nic_attach": "br0"}, "order": 7},
        {"attributes": {"dtype": "DISPLAY"}},
    ])
    assert not verrors, errors(verrors)
    cdrom, disk, nic, display = p.rows
    assert [r["order"] for r in p.rows] == [1000, 1001, 7, 1002]
    assert disk["attributes"]["path"] == "/dev/tank/old" and len(disk["attributes"]["serial"]) == 8
    assert nic["attributes"]["mac"].startswith("00:a0:98:") and nic["attributes"]["type"] == "E1000"
    # 5900 is listening, 6000 reserved: the next free pair.
    assert (display["attributes"]["port"], display["attributes"]["web_port"]) == (5901, 5902)
    assert "id" not in cdrom and not p.busy and not p.live


async def test_all_errors_at_once(host: FakeHost) -> None:
    _, verrors = await plan(host, [
        {"attributes": {"dtype": "CDROM"}},
        {"attributes": {"dtype": "NIC", "nic_attach": "nope", "type": "E1000", "trust_guest_rx_filters": True}},
        {"attributes": {"dtype": "FLOPPY"}},
        {"attributes": {"dtype": "DISK", "create_zvol": True, "path": "/x"}},
    ])
    assert set(errors(verrors)) == {
        ("x.0.attributes.path", errno.EINVAL), ("x.1.attributes.nic_attach", errno.ENOENT),
        ("x.1.attributes.trust_guest_rx_filters", errno.EINVAL), ("x.2.attributes.dtype", errno.EINVAL),
        ("x.3.attributes.zvol_name", errno.EINVAL), ("x.3.attributes.zvol_volsize", errno.EINVAL),
        ("x.3.attributes.path", errno.EINVAL)}


async def test_mac_rules(host: FakeHost) -> None:
    other = [{"dtype": "NIC", "mac": "00:a0:98:00:00:01"}]
    _, verrors = await plan(host, [{"attributes": {"dtype": "NIC", "nic_attach": "br0", "mac": "00-A0-98-00-00-01"}},
                                   {"attributes": {"dtype": "NIC", "nic_attach": "br0", "mac": "01:00:5e:00:00:01"}}],
                            elsewhere=other)
    assert errors(verrors) == [("x.0.attributes.mac", errno.EEXIST), ("x.1.attributes.mac", errno.EINVAL)]
    current = [stored(3, "NIC", nic_attach="br0", mac="00:a0:98:aa:bb:cc")]
    p, verrors = await plan(host, [{"id": 3, "attributes": {"type": "VIRTIO", "mac": None}}], current)
    assert not verrors and p.rows[0]["attributes"]["mac"] == "00:a0:98:aa:bb:cc"


async def test_display_rules(host: FakeHost) -> None:
    elsewhere = [{"dtype": "DISPLAY", "port": 5901, "web_port": 5902}]
    p, verrors = await plan(host, [{"attributes": {"dtype": "DISPLAY", "port": 5901}},
                                   {"attributes": {"dtype": "DISPLAY", "port": 5900}},
                                   {"attributes": {"dtype": "DISPLAY", "type": "VNC", "password": "123456789"}},
                                   {"attributes": {"dtype": "DISPLAY", "bind": "10.9.9.9", "type": "VNC",
                                                   "web": False}}],
                            elsewhere=elsewhere)
    assert errors(verrors) == [
        ("x.0.attributes.port", errno.EADDRINUSE), ("x.1.attributes.type", errno.EINVAL),
        ("x.1.attributes.port", errno.EADDRINUSE),  # a web VNC display is fine (noVNC)
        ("x.2.attributes.password", errno.EINVAL), ("x.3.attributes.type", errno.EINVAL),
        ("x.3.attributes.bind", errno.EADDRNOTAVAIL)]


async def test_display_ports_of_other_daemons_domains(host: FakeHost) -> None:
    """A stopped domain of another daemon on the libvirtd holds its port: it is neither picked nor accepted."""
    host.foreign = {5901: "7_theirs"}
    p, verrors = await plan(host, [{"attributes": {"dtype": "DISPLAY"}}])
    assert not verrors and (p.rows[0]["attributes"]["port"], p.rows[0]["attributes"]["web_port"]) == (5902, 5903)
    _, verrors = await plan(host, [{"attributes": {"dtype": "DISPLAY", "port": 5901}}])
    assert errors(verrors) == [("x.0.attributes.port", errno.EADDRINUSE)]
    assert "libvirt domain 7_theirs" in verrors.errors[0].errmsg


async def test_masked_password_round_trip_changes_nothing(host: FakeHost) -> None:
    current = [stored(4, "DISPLAY", port=5910, web_port=5911, password="s3cret")]
    public = DEVICE_TYPES["DISPLAY"].public(current[0]["attributes"])
    p, verrors = await plan(host, [{"id": 4, "attributes": public}], current, vm=RUNNING)
    assert not verrors and not p.busy
    assert p.rows[0]["attributes"]["password"] == "s3cret"


async def test_running_rules(host: FakeHost, tmp_path: Path) -> None:
    current = [stored(1, "CDROM", path=str(tmp_path / "a.iso")),
               stored(2, "DISPLAY", port=5910, web_port=5911), stored(3, "NIC", nic_attach="br0", mac="00:a0:98:0:0:3")]
    p, verrors = await plan(host, [{"id": 1, "attributes": {"path": str(tmp_path / "b.iso")}}], current, vm=RUNNING)
    assert not verrors and p.live == [1] and not p.busy
    p, _ = await plan(host, [{"id": 1, "attributes": {}, "order": 5},
                             {"id": 2, "attributes": {"resolution": "800x600"}},
                             {"attributes": {"dtype": "NIC", "nic_attach": "br0"}}], current, remove=(3,), vm=RUNNING)
    assert p.live == [] and len(p.busy) == 4
    assert "deleting device 3 needs force" in p.busy[-1]
    p, _ = await plan(host, [], current, remove=(3,), vm=RUNNING, force=True)
    assert not p.busy


async def test_update_merges_and_keeps_order(host: FakeHost) -> None:
    current = [stored(5, "NIC", order=42, nic_attach="br0", mac="00:a0:98:00:00:05")]
    p, verrors = await plan(host, [{"id": 5, "attributes": {"type": "VIRTIO"}}], current)
    assert not verrors and p.rows[0] == {"id": 5, "order": 42, "attributes": {
        **current[0]["attributes"], "type": "VIRTIO"}}
    _, verrors = await plan(host, [{"id": 5, "attributes": {"dtype": "DISK"}}], current)
    assert errors(verrors) == [("x.0.attributes.dtype", errno.EINVAL)]


async def test_disk_volumes(host: FakeHost) -> None:
    p, verrors = await plan(host, [
        {"attributes": {"dtype": "DISK", "create_zvol": True, "zvol_name": "tank/new", "zvol_volsize": 1 << 20}}])
    assert not verrors
    [action] = p.resources.actions
    assert isinstance(action, CreateVolume) and (action.pool, action.name, action.size) == ("tank", "new", 1 << 20)
    assert p.rows[0]["attributes"]["create_zvol"] is False and action.attributes is p.rows[0]["attributes"]
    _, verrors = await plan(host, [
        {"attributes": {"dtype": "DISK", "create_zvol": True, "zvol_name": "tank/old", "zvol_volsize": 1}},
        {"attributes": {"dtype": "DISK", "create_zvol": True, "zvol_name": "gone/new", "zvol_volsize": 1}},
        {"attributes": {"dtype": "DISK", "zvol_name": "tank/none", "zvol_volsize": 5}},
        {"attributes": {"dtype": "DISK", "zvol_name": "tank/old"}}],
        elsewhere=[{"dtype": "DISK", "zvol_name": "tank/old"}])
    assert errors(verrors) == [
        ("x.0.attributes.zvol_name", errno.EEXIST), ("x.1.attributes.zvol_name", errno.ENOENT),
        ("x.2.attributes.zvol_volsize", errno.EINVAL), ("x.2.attributes.zvol_name", errno.ENOENT),
        ("x.3.attributes.zvol_name", errno.EBUSY)]


async def test_raw_files(host: FakeHost, tmp_path: Path) -> None:
    p, verrors = await plan(host, [{"attributes": {"dtype": "RAW", "path": str(tmp_path / "new.img"),
                                                   "size": 1 << 20}}])
    assert not verrors and p.rows[0]["attributes"]["exists"] is True
    assert p.resources.actions == [CreateFile(str(tmp_path / "new.img"), 1 << 20)]
    current = [stored(6, "RAW", path=str(tmp_path / "disk.img"), exists=True)]
    p, verrors = await plan(host, [{"id": 6, "attributes": {"size": 8192}}], current)
    assert not verrors and p.resources.actions == [GrowFile(str(tmp_path / "disk.img"), 4096, 8192)]
    _, verrors = await plan(host, [
        {"id": 6, "attributes": {"size": 100}},
        {"attributes": {"dtype": "RAW", "path": str(tmp_path / "disk.img")}},
        {"attributes": {"dtype": "RAW", "path": str(tmp_path / "x.img"), "exists": True}},
        {"attributes": {"dtype": "RAW", "path": str(tmp_path / "y.img")}}], current)
    # x.1: the file exists, and device 6 already uses it.
    assert errors(verrors) == [("x.0.attributes.size", errno.EINVAL), ("x.1.attributes.path", errno.EEXIST),
                               ("x.1.attributes.path", errno.EEXIST), ("x.2.attributes.path", errno.ENOENT),
                               ("x.3.attributes.size", errno.EINVAL)]


async def test_same_path_twice_in_a_vm(host: FakeHost, tmp_path: Path) -> None:
    iso = str(tmp_path / "a.iso")
    _, verrors = await plan(host, [{"attributes": {"dtype": "CDROM", "path": iso}},
                                   {"attributes": {"dtype": "CDROM", "path": iso}}])
    assert errors(verrors) == [("x.1.attributes.path", errno.EEXIST)]
    assert SECRET not in iso
