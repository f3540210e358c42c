"""OVF descriptors read into what a VM record takes; the rest is reported."""
from __future__ import annotations

import pytest

from middlewared.plugins.vm import ova
from tests.ova_maker import descriptor


def test_cpus_memory_disks_nics_and_the_rest() -> None:
    text = descriptor("My VM (1)", 2, 384, [("a.vmdk", 1 << 30), ("b.vmdk", 2 << 30)], ["E1000", "VmxNet3", "virtio"],
                      [("Sound card", "35"), ("CD-ROM 1", "15")])
    system = ova.parse(text.encode())
    assert (system.vcpus, system.memory_mib) == (2, 384)
    assert system.disks == [ova.OvfDisk("a.vmdk", 1 << 30), ova.OvfDisk("b.vmdk", 2 << 30)]
    assert [ova.nic_model(n) for n in system.nics] == ["E1000", "E1000", "VIRTIO"]
    assert len(system.unknown) == 2 and "Sound card (resource type 35)" in system.unknown[0]
    assert ova.vm_name(system.name) == "My_VM_1"


def test_units_and_bad_input() -> None:
    assert ova.scale("byte * 2^30") == 1 << 30 and ova.scale("MegaBytes") == 1 << 20 and ova.scale(None) == 1
    with pytest.raises(ova.OvfError):
        ova.scale("furlongs")
    with pytest.raises(ova.OvfError):
        ova.parse(b"<not-xml")
    with pytest.raises(ova.OvfError):
        ova.parse(b'<Envelope xmlns="http://schemas.dmtf.org/ovf/envelope/1"/>')
