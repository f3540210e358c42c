"""The domain XML is built from explicit inputs: the VM, its stored device rows and a host snapshot taken in the
request. Before the device plugin's start-up has run, it is either correct or a clear error, never `dev=""`."""
from __future__ import annotations

import errno
from typing import Any

import pytest
from lxml import etree

from middlewared.errors import CallError
from middlewared.middleware import Middleware
from middlewared.plugins.vm.devices_api import DeviceHost
from middlewared.plugins.vm.model import VMRecord
from middlewared.plugins.vm.service import VMService
from middlewared.plugins.vm_device import layout
from middlewared.plugins.vm_device.model import HostSnapshot
from middlewared.plugins.vm_device.service import VMDeviceService

NIC_ON_DEFAULT_ROUTE: dict[str, Any] = {
    "id": 1, "vm": 1, "order": 1002,
    "attributes": {"dtype": "NIC", "type": "VIRTIO", "nic_attach": None, "mac": "00:a0:98:00:00:01",
                   "trust_guest_rx_filters": False}}


async def test_domain_xml_before_the_device_plugin_started(middleware: Middleware) -> None:
    vms = middleware.service_of(VMService)
    assert middleware.service_of(VMDeviceService).manager.starting is None  # its start-up never began
    host = await vms.devices.snapshot(None)
    try:
        xml = vms.domain_xml(VMRecord(id=1, name="early", memory=256), [NIC_ON_DEFAULT_ROUTE], host)
    except CallError as e:  # a host without an IPv4 default route
        assert e.errno == errno.ENODEV and "default route" in e.errmsg
        return
    interface = etree.fromstring(xml).find("devices/interface")
    assert interface is not None
    source = interface.find("source")
    assert source is not None and all(value for value in source.attrib.values())
    assert 'dev=""' not in xml


def test_an_empty_snapshot_is_a_clear_error_not_an_empty_device_name() -> None:
    # What the device plugin held before its start-up ended, when the snapshot was its own mutable state.
    with pytest.raises(CallError, match="default route") as e:
        layout.elements([NIC_ON_DEFAULT_ROUTE], HostSnapshot())
    assert e.value.errno == errno.ENODEV


def test_host_facts_that_are_not_a_snapshot_are_no_facts(middleware: Middleware) -> None:
    vms = middleware.service_of(VMService)
    vm = VMRecord(id=1, name="x", memory=256)
    assert "<interface" not in vms.domain_xml(vm, [], DeviceHost())
    with pytest.raises(CallError, match="default route"):
        vms.domain_xml(vm, [NIC_ON_DEFAULT_ROUTE], DeviceHost())
