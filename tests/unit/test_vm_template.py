"""Templates: the rules of the template flag, clone sources as vm.query shows them, the overlay volume's XML."""
from __future__ import annotations

from typing import Any

import pytest
from lxml import etree

from middlewared.errors import CallError
from middlewared.plugins.vm.template import CloneSources, change_problem, disk_paths, refuse_template
from middlewared.plugins.vm_device.pool import Volume, _volume_xml


def vm(**fields: Any) -> dict[str, Any]:
    return {"name": "base", "template": False, "status": {"state": "STOPPED"}, "snapshot_count": 0, **fields}


def test_the_flag_changes_only_on_a_stopped_vm_without_snapshots_or_linked_clones() -> None:
    assert change_problem(vm(), False, ["c"]) is None
    assert change_problem(vm(), True, []) is None
    assert "Stop VM base" in str(change_problem(vm(status={"state": "RUNNING"}), True, []))
    assert "2 snapshots" in str(change_problem(vm(snapshot_count=2), True, []))
    assert "linked clones (c1, c2)" in str(change_problem(vm(template=True), False, ["c1", "c2"]))
    assert change_problem(vm(template=True), False, []) is None


def test_templates_refuse_with_einval() -> None:
    refuse_template(vm(), "be started")
    with pytest.raises(CallError) as e:
        refuse_template(vm(template=True), "be started")
    assert e.value.errno == 22 and "template, which cannot be started" in e.value.errmsg


def test_clone_sources_follow_creates_and_deletes() -> None:
    sources = CloneSources()
    sources.load([{"vm": 2, "source": 1, "linked": 1}, {"vm": 3, "source": 1, "linked": 0}])
    sources.add(4, 1, True)
    assert sources.linked_clones(1) == [2, 4] and sources.linked_clones(2) == []
    assert sources.entry_fields(2) == {"cloned_from": 1, "linked_clone": True}
    assert sources.entry_fields(9) == {"cloned_from": None, "linked_clone": False}
    # As ON DELETE SET NULL does to the rows: clones of a deleted VM keep their flag, lose their source.
    sources.forget(1)
    assert sources.entry_fields(3) == {"cloned_from": None, "linked_clone": False}
    sources.forget(3)
    assert sources.entry_fields(3)["cloned_from"] is None


def test_disk_paths_are_those_of_disk_devices() -> None:
    devices = [{"attributes": {"dtype": "DISK", "path": "/p/a"}}, {"attributes": {"dtype": "RAW", "path": "/r"}},
               {"attributes": {"dtype": "CDROM", "path": "/c.iso"}}]
    assert disk_paths(devices) == ["/p/a"]


def test_an_overlay_names_its_backing_volume_and_format() -> None:
    base = Volume("pool", "base", "/pool/base", 1 << 20, "raw")
    xml = etree.fromstring(_volume_xml("over", 1 << 20, "qcow2", base))
    assert xml.findtext("backingStore/path") == "/pool/base"
    assert xml.find("backingStore/format").get("type") == "raw"
    assert xml.find("target/format").get("type") == "qcow2" and xml.findtext("target/compat") == "1.1"
    assert etree.fromstring(_volume_xml("plain", 1, "qcow2")).find("backingStore") is None
