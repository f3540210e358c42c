"""Pure rules of the device plugin: names, addresses, MACs, paths, the registry, host fact parsers."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest

from middlewared.plugins.vm_device import netif, pcidev
from middlewared.plugins.vm.web_console import spice_endpoint
from middlewared.plugins.vm_device.host import qemu_user
from middlewared.middleware import SECRET
from middlewared.plugins.vm_device.model import NicKind
from middlewared.plugins.vm_device.display import Busy, pick_ports, port_claim
from middlewared.plugins.vm_device.disk import volume_claim
from middlewared.plugins.vm_device.nic import canonical_mac, format_mac, mac_claim, mac_problem, random_mac
from middlewared.plugins.vm_device.paths import PathError, QemuUser, confine, create_sparse, unreachable_dir
from middlewared.plugins.vm_device.registry import DEVICE_TYPES, Registry
from middlewared.plugins.vm_device.schemas import ATTRIBUTES
from middlewared.plugins.vm_device.usbdev import parse_usb_device
from middlewared.plugins.vm_device.xml import disk_name, pci_address
from middlewared.schema import compile_schema, validation_errors, walk_properties


@pytest.mark.parametrize(("n", "name"), [(1, "sda"), (26, "sdz"), (27, "sdaa"), (52, "sdaz"), (702, "sdzz"),
                                         (703, "sdaaa")])
def test_disk_name(n: int, name: str) -> None:
    assert disk_name("sd", n) == name


def test_disk_name_starts_at_one() -> None:
    with pytest.raises(ValueError):
        disk_name("vd", 0)


@pytest.mark.parametrize(("given", "address"), [
    ("0000:01:00.0", "0000:01:00.0"), ("pci_0000_01_00_0", "0000:01:00.0"), ("PCI_0000_0A_1F_7", "0000:0a:1f.7"),
    ("0000:01:00", None), ("pci_0000_01_00", None), ("01:00.0", None), ("0000:01:00.8", None),
])
def test_canonical_pci_address(given: str, address: str | None) -> None:
    assert pcidev.canonical_address(given) == address


def test_pci_address_attributes() -> None:
    assert pci_address("0000:0a:1f.7") == {"domain": "0x0000", "bus": "0x0a", "slot": "0x1f", "function": "0x7"}


@pytest.mark.parametrize(("given", "mac"), [("00:A0:98:12:34:56", "00:a0:98:12:34:56"),
                                            ("00-a0-98-12-34-56", "00:a0:98:12:34:56"),
                                            ("00a098123456", "00:a0:98:12:34:56")])
def test_canonical_mac(given: str, mac: str) -> None:
    assert canonical_mac(given) == mac


def test_mac_problems() -> None:
    assert mac_problem("00:a0:98:12:34:56") is None
    assert mac_problem("02:00:00:00:00:01") is None
    assert "unicast" in (mac_problem("01:00:5e:00:00:01") or "")
    assert "unicast" in (mac_problem("ff:ff:ff:ff:ff:ff") or "")
    assert "zeros" in (mac_problem("00:00:00:00:00:00") or "")


def test_confine(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "iso").mkdir(parents=True)
    (root / "iso" / "a.iso").write_text("x")
    outside = tmp_path / "secret"
    outside.write_text("x")
    (root / "out").symlink_to(outside)
    (root / "in").symlink_to(root / "iso" / "a.iso")
    roots = (str(root),)
    assert confine(str(root / "iso" / "a.iso"), roots) == str(root / "iso" / "a.iso")
    assert confine(str(root / "in"), roots) == str(root / "iso" / "a.iso")
    with pytest.raises(PathError, match="resolves to"):
        confine(str(root / "out"), roots)
    with pytest.raises(PathError, match=r"'\.\.'"):
        confine(f"{root}/iso/../iso/a.iso", roots)
    with pytest.raises(PathError, match="absolute"):
        confine("iso/a.iso", roots)
    with pytest.raises(PathError, match="storage roots"):
        confine(str(tmp_path / "rootless"), roots)


def test_unreachable_dir() -> None:
    # Under /tmp itself: pytest's own temporary tree is private (0700) all the way up.
    with tempfile.TemporaryDirectory(dir="/tmp") as top:
        os.chmod(top, 0o755)
        closed = Path(top) / "closed"
        (closed / "inner").mkdir(parents=True)
        os.chmod(closed, 0o700)
        stranger = QemuUser(uid=64000, gid=64000, groups=frozenset({64000}))
        assert unreachable_dir(str(closed / "inner" / "f.img"), stranger) == str(closed)
        os.chmod(closed, 0o711)
        assert unreachable_dir(str(closed / "inner" / "f.img"), stranger) is None
        assert unreachable_dir(str(closed / "f"), None) is None


def test_create_sparse(tmp_path: Path) -> None:
    path = tmp_path / "disk.img"
    create_sparse(str(path), 1 << 30)
    assert path.stat().st_size == 1 << 30 and path.stat().st_blocks == 0
    with pytest.raises(FileExistsError):
        create_sparse(str(path), 1)


def test_registry_refuses_a_dtype_twice() -> None:
    registry = Registry()
    registry.register(DEVICE_TYPES["NIC"])
    with pytest.raises(ValueError, match="NIC is registered twice"):
        registry.register(DEVICE_TYPES["NIC"])
    assert DEVICE_TYPES.names == ["DISK", "RAW", "CDROM", "NIC", "DISPLAY", "PCI", "USB", "CLOUD_INIT"]


def test_every_attribute_is_described() -> None:
    missing = [path for path, sub in walk_properties(ATTRIBUTES) if not sub.get("description")]
    assert not missing


@pytest.mark.parametrize("dtype", DEVICE_TYPES.names)
def test_the_attributes_union_applies_each_types_own_schema(dtype: str) -> None:
    # The union picks the schema by dtype: an attribute no type has is refused under that type's rules.
    validator = compile_schema(ATTRIBUTES)
    errors = validation_errors(validator, {"dtype": dtype, "no_such_attribute": 1}, "attributes")
    assert "attributes.no_such_attribute" in {e.attribute for e in errors}, errors
    required = {f"attributes.{key}" for key in DEVICE_TYPES[dtype].required}
    assert required <= {e.attribute for e in errors}, errors


def test_display_mask_and_merge() -> None:
    display = DEVICE_TYPES["DISPLAY"]
    stored = display.with_defaults({"dtype": "DISPLAY", "password": "s3cret", "port": 5900, "web_port": 5901})
    public = display.public(stored)
    assert public["password"] == SECRET and stored["password"] == "s3cret"
    assert display.merge(stored, public) == stored
    assert display.merge(stored, {"password": "other"})["password"] == "other"
    assert display.public({**stored, "password": None})["password"] is None


def test_spice_endpoint() -> None:
    assert spice_endpoint({"bind": "0.0.0.0", "port": 5900}) == ("127.0.0.1", 5900)
    assert spice_endpoint({"bind": "::", "port": 5901}) == ("::1", 5901)
    assert spice_endpoint({"bind": "10.0.0.5", "port": 5902}) == ("10.0.0.5", 5902)


CAPS = """<capabilities><host><secmodel><model>none</model></secmodel>
<secmodel><model>dac</model><doi>0</doi><baselabel type='kvm'>+64055:+108</baselabel>
<baselabel type='qemu'>+64055:+108</baselabel></secmodel></host></capabilities>"""


def test_qemu_user_from_capabilities() -> None:
    user = qemu_user(CAPS, "qemu")
    assert user is not None and (user.uid, user.gid) == (64055, 108) and 108 in user.groups
    assert qemu_user(CAPS, "xen") is None


def test_host_interfaces(tmp_path: Path) -> None:
    for name in ("lo", "eth0", "br0", "vnet3", "macvtap1"):
        (tmp_path / name).mkdir()
    (tmp_path / "br0" / "bridge").mkdir()
    assert netif.host_interfaces(str(tmp_path)) == {"br0": NicKind.BRIDGE, "eth0": NicKind.DIRECT}


def test_default_route_interface(tmp_path: Path) -> None:
    route = tmp_path / "route"
    route.write_text("Iface\tDestination\tGateway\tFlags\tRefCnt\tUse\tMetric\tMask\n"
                     "eth1\t0001A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n"
                     "eth0\t00000000\t0101A8C0\t0003\t0\t0\t0\t00000000\n")
    assert netif.default_route_interface(str(route)) == "eth0"
    assert netif.default_route_interface(str(tmp_path / "none")) is None


def test_networks_prefer_interfaces() -> None:
    networks = netif.Networks({"br0": NicKind.BRIDGE}, {"br0": True, "nat": False}, None)
    assert networks.kind("br0") is NicKind.BRIDGE and networks.kind("nat") is NicKind.NETWORK
    assert networks.kind("nope") is None and networks.kinds() == {"br0": NicKind.BRIDGE, "nat": NicKind.NETWORK}


def _fake_pci(root: Path, address: str, cls: str, group: str | None, driver: str | None,
              net: str | None = None) -> None:
    d = root / "devices" / address
    d.mkdir(parents=True)
    for name, value in (("vendor", "0x8086"), ("device", "0x1234"), ("class", cls)):
        (d / name).write_text(value + "\n")
    if group is not None:
        (root / "groups" / group).mkdir(parents=True, exist_ok=True)
        (d / "iommu_group").symlink_to(root / "groups" / group)
    if driver is not None:
        (root / "drivers" / driver).mkdir(parents=True, exist_ok=True)
        (d / "driver").symlink_to(root / "drivers" / driver)
    if net is not None:
        (d / "net" / net).mkdir(parents=True)


def test_pci_sysfs(tmp_path: Path) -> None:
    _fake_pci(tmp_path, "0000:00:00.0", "0x060000", "0", None)
    _fake_pci(tmp_path, "0000:01:00.0", "0x030000", "1", "vfio-pci")
    _fake_pci(tmp_path, "0000:02:00.0", "0x020000", "2", "e1000e", net="eth0")
    _fake_pci(tmp_path, "0000:03:00.0", "0x020000", "0", None)
    devices = pcidev.pci_devices(str(tmp_path / "devices"))
    by = {d.address: d for d in devices}
    assert by["0000:01:00.0"].iommu_group == 1 and by["0000:01:00.0"].driver == "vfio-pci"
    assert by["0000:00:00.0"].critical and by["0000:02:00.0"].host_use == ("eth0",)

    def problem(address: str, iommu: bool = True) -> str | None:
        return pcidev.passthrough_problem(by[address], iommu, pcidev.iommu_group(by[address], devices))
    assert problem("0000:01:00.0") is None
    assert "IOMMU is not enabled" in (problem("0000:01:00.0", iommu=False) or "")
    assert "using it (eth0)" in (problem("0000:02:00.0") or "")
    assert "critical" in (problem("0000:03:00.0") or "")
    assert pcidev.pci_device("0000:09:00.0", str(tmp_path / "devices")) is None
    assert pcidev.iommu_enabled(str(tmp_path / "groups")) and not pcidev.iommu_enabled(str(tmp_path / "none"))


def test_parse_usb_device() -> None:
    xml = """<device><name>usb_1_3</name><parent>usb_usb1</parent><driver><name>usb</name></driver>
    <capability type='usb_device'><bus>1</bus><device>3</device>
    <product id='0xC52B'>Unifying Receiver</product><vendor id='0x046D'>Logitech, Inc.</vendor></capability>
    </device>"""
    device = parse_usb_device(xml)
    assert device is not None and device.name == "usb_1_3" and (device.bus, device.device) == (1, 3)
    assert device.matches("0x046d", "0xC52B") and device.product == "Unifying Receiver"
    assert parse_usb_device("<device><name>usb_usb1</name><capability type='usb'/></device>") is None


# -- MAC -----------------------------------------------------------------------------------------
def test_mac_format_and_prefix() -> None:
    assert format_mac(bytes([0, 0x7F, 0xFF])) == "00:a0:98:00:7f:ff"
    with pytest.raises(ValueError):
        format_mac(b"\x01\x02")


def test_random_macs_are_unicast_in_the_prefix_and_differ() -> None:
    macs = {random_mac() for _ in range(50)}
    assert len(macs) > 45
    for mac in macs:
        assert re.fullmatch(r"00:a0:98(:[0-9a-f]{2}){3}", mac)
        assert int(mac.split(":")[0], 16) & 1 == 0  # unicast: the I/G bit is clear


# -- ports ---------------------------------------------------------------------------------------
def test_pick_the_two_lowest_free_ports() -> None:
    assert pick_ports(set()) == [5900, 5901]
    assert pick_ports({5900, 5901, 5903}) == [5902, 5904]


def test_pick_ports_at_the_end_of_the_range() -> None:
    assert pick_ports(set(), first=65534) == [65534, 65535]
    assert pick_ports({65535}, first=65534) == [65534]


def test_claims_of_displays_nics_and_disks() -> None:
    devices = [{"dtype": "DISPLAY", "port": 5900, "web_port": 5901}, {"dtype": "NIC", "mac": "00-A0-98-00-00-01"},
               {"dtype": "DISPLAY", "port": 5910, "web_port": None}, {"dtype": "DISK", "zvol_name": "tank/a"},
               {"dtype": "CDROM", "path": "/mnt/a.iso"}, {"dtype": "FLOPPY"}]
    claims = set().union(*(DEVICE_TYPES.claims(d) for d in devices))
    assert claims == {port_claim(5900), port_claim(5901), port_claim(5910), mac_claim("00:a0:98:00:00:01"),
                      volume_claim("tank/a")}
    busy = Busy(claims.__contains__, {5902})
    assert pick_ports(busy, 3) == [5903, 5904, 5905] and 5910 in busy and "5910" not in busy
