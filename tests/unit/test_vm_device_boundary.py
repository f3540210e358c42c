"""The boundary between the VM service and the device plugin stays small: the interface the VM service uses has a
fixed set of documented methods, and vm.device.create asks the VM service for one write only (redefine)."""
from __future__ import annotations

import inspect
import sys
from types import FrameType
from typing import Any

import pytest

from middlewared.middleware import Middleware
from middlewared.plugins.vm.devices_api import DeviceSupport
from middlewared.plugins.vm.service import VMService
from middlewared.plugins.vm_device.manager import DeviceManager
from tests.support import unique

# A device that needs no host resource (the test driver has no pools or bridges).
DEVICE: dict[str, Any] = {"dtype": "USB", "controller_type": "qemu-xhci", "device": None,
                          "usb": {"vendor_id": "0x1234", "product_id": "0x5678"}}
INTERFACE = {"public", "claims", "elements", "snapshot", "check_available", "write", "prepare_clone", "delete_volumes",
             "removing_volumes", "random_mac", "free_display_ports"}


def test_the_interface_is_this_small_and_each_method_says_why_it_exists() -> None:
    methods = {name for name, _ in inspect.getmembers(DeviceSupport, inspect.isfunction)
               if not name.startswith("_")}
    assert methods == INTERFACE
    for name in methods:
        doc = inspect.getdoc(getattr(DeviceSupport, name)) or ""
        assert len(doc) > 40, name
    # The device plugin implements every method with the same parameters.
    for name in methods:
        assert (list(inspect.signature(getattr(DeviceManager, name)).parameters)
                == list(inspect.signature(getattr(DeviceSupport, name)).parameters)), name


def _module(frame: FrameType | None) -> str:
    return frame.f_globals.get("__name__", "") if frame is not None else ""


async def test_a_device_create_writes_through_redefine_only(middleware: Middleware) -> None:
    vms = middleware.service_of(VMService)
    vm = await middleware.call("vm.create", {"name": unique("boundary").replace("-", "_"), "memory": 256})
    calls: set[str] = set()
    callbacks: set[str] = set()

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event != "call":
            return
        callee, caller = _module(frame), _module(frame.f_back)
        called_vm = callee.startswith("middlewared.plugins.vm.")
        if caller.startswith("middlewared.plugins.vm_device.") and called_vm:
            calls.add(f"{callee.rsplit('.', 1)[1]}.{frame.f_code.co_name}")
        elif caller.startswith("middlewared.plugins.vm.") and callee.startswith("middlewared.plugins.vm_device."):
            callbacks.add(f"{callee.rsplit('.', 1)[1]}.{frame.f_code.co_name}")

    # The transaction runs in the database's one thread: the profile goes there too.
    await middleware.datastore.exclusively(lambda db: sys.setprofile(profile))
    sys.setprofile(profile)
    try:
        created = await middleware.call("vm.device.create", {"vm": vm["id"], "attributes": DEVICE})
    finally:
        sys.setprofile(None)
        await middleware.datastore.exclusively(lambda db: sys.setprofile(None))
    assert created["attributes"]["dtype"] == DEVICE["dtype"]
    assert [d["id"] for d in (await vms.get_instance(vm["id"]))["devices"]] == [created["id"]]
    # What the device plugin asks of the VM service: the VM, the stored devices and their claims (reads) and one
    # write, redefine; the rest it uses of the vm package are typed values (VMRecord, the plan) and the hypervisor.
    service_calls = {c for c in calls if c.split(".")[0] in {"records", "service"}}
    assert service_calls == {"service.get_instance", "records.stored_vms", "records.stored_device",
                             "records.device_claims", "records.redefine"}, calls
    # The VM service calls back into the device plugin only for the store step it was given and the device XML.
    assert {c.split(".")[0] for c in callbacks} <= {"writes", "manager", "layout"}, callbacks
    assert "writes.store" in callbacks, callbacks
