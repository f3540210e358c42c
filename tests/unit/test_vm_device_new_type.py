"""Adding a device type is one module plus one registry entry: a throw-away WATCHDOG type, registered in a
registry of its own, goes through the API schema, validation, XML, clone and delete like the built-in types."""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
from lxml import etree

from middlewared.errors import ValidationErrors
from middlewared.plugins.vm.devices_api import DeviceChange
from middlewared.plugins.vm.domain_xml import domain_xml_string
from middlewared.plugins.vm.model import DomainContext, DomainType, VMRecord
from middlewared.plugins.vm_device import layout
from middlewared.plugins.vm_device.base import Device
from middlewared.plugins.vm_device.model import HostSnapshot, Slot
from middlewared.plugins.vm_device.planning import make_plan
from middlewared.plugins.vm_device.registry import DEVICE_TYPES, Registry
from middlewared.plugins.vm_device.schemas import attributes_schema
from middlewared.schema import compile_schema, validation_errors


# -- the whole of the new type: what its module would hold -----------------------------------------
@dataclass(frozen=True, kw_only=True)
class Watchdog(Device):
    """An emulated watchdog card that acts when the guest stops petting it."""

    action: str
    interval: int | None

    dtype = "WATCHDOG"
    description = "An i6300esb watchdog card."
    properties = {
        "action": {"type": "string", "enum": ["reset", "poweroff", "pause"], "default": "reset",
                   "description": "What the host does when the guest stops petting the watchdog."},
        "interval": {"type": ["integer", "null"], "default": None, "minimum": 1,
                     "description": "Seconds between pets the guest is told to keep (null: its own default)."},
    }
    regenerated: ClassVar[tuple[str, ...]] = ("interval",)

    def to_xml(self, slot: Slot) -> list[etree._Element]:
        return [etree.Element("watchdog", model="i6300esb", action=self.action)]

    def identity(self) -> str:
        return f"i6300esb ({self.action})"


TYPES = Registry((*DEVICE_TYPES, Watchdog))
VM = {"id": 1, "name": "vm1", "status": {"state": "STOPPED"}}


def test_the_registry_takes_it_and_the_shipped_table_is_unchanged() -> None:
    assert TYPES.names[-1] == "WATCHDOG" and "WATCHDOG" not in DEVICE_TYPES.names
    with pytest.raises(ValueError, match="WATCHDOG is registered twice"):
        TYPES.register(Watchdog)


def test_the_api_schema_names_it_and_checks_its_attributes() -> None:
    schema = attributes_schema(TYPES)
    assert "WATCHDOG" in schema["properties"]["dtype"]["enum"]
    validator = compile_schema(schema)
    assert validation_errors(validator, {"dtype": "WATCHDOG", "action": "pause"}, "a") == []
    [error] = validation_errors(validator, {"dtype": "WATCHDOG", "action": "explode"}, "a")
    assert error.attribute == "a.action"


async def test_a_request_creates_it_with_defaults_and_refuses_bad_values() -> None:
    verrors = ValidationErrors()
    plan = await make_plan(TYPES, VM, [], [DeviceChange("d.0", {"attributes": {"dtype": "WATCHDOG"}})], [],
                           verrors, None, [], False)  # type: ignore[arg-type]  # it asks nothing of the host
    assert not verrors.errors
    assert plan.rows == [{"order": Watchdog.default_order,
                          "attributes": {"dtype": "WATCHDOG", "action": "reset", "interval": None}}]
    verrors = ValidationErrors()
    await make_plan(TYPES, VM, [], [DeviceChange("d.0", {"attributes": {"dtype": "WATCHDOG", "interval": 0}})],
                    [], verrors, None, [], False)  # type: ignore[arg-type]
    assert [e.attribute for e in verrors] == ["d.0.attributes.interval"]


def test_its_xml_takes_its_place_among_the_devices(tmp_path: Path) -> None:
    rows = [{"id": 1, "vm": 1, "order": 1000, "attributes": {"dtype": "CDROM", "path": "/mnt/a.iso"}},
            {"id": 2, "vm": 1, "order": 1002, "attributes": {"dtype": "WATCHDOG", "action": "poweroff"}}]
    elements = layout.elements(rows, HostSnapshot(), TYPES)
    assert [el.tag for el in elements] == ["disk", "watchdog"]
    assert elements[1].get("action") == "poweroff"
    assert len(layout.elements(rows, HostSnapshot())) == 1  # the shipped table does not know it: left out
    validator = shutil.which("virt-xml-validate")
    if validator is None:
        pytest.skip("virt-xml-validate not installed (Debian package libvirt-clients)")
    vm = VMRecord(id=1, name="dog", memory=256, uuid="3f1f6b5e-8f0e-4d4e-9d4c-0a0b0c0d0e0f")
    path = tmp_path / "domain.xml"
    path.write_text(domain_xml_string(vm, DomainContext(DomainType.QEMU, "/var/lib/nvram.fd"), elements))
    result = subprocess.run([validator, str(path), "domain"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


async def test_clone_and_delete_follow_its_class_attributes() -> None:
    device = Watchdog.from_attributes({"dtype": "WATCHDOG", "interval": 30})
    assert device == Watchdog(action="reset", interval=30)
    stored = {"dtype": "WATCHDOG", "action": "reset", "interval": 30}
    assert await device.clone_attributes(stored, "copy", None, False) == {**stored, "interval": None}  # type: ignore[arg-type]
    assert device.delete_option is None and device.volume() is None
