"""Place a VM's devices (order, boot order, disk names, USB controllers) and build their XML (pure)."""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from lxml import etree

from middlewared.plugins.vm.model import device_order
from middlewared.plugins.vm_device.base import Device
from middlewared.plugins.vm_device.model import HostSnapshot, Slot
from middlewared.plugins.vm_device.registry import DEVICE_TYPES, Registry
from middlewared.plugins.vm_device.usb import DEFAULT_CONTROLLER
from middlewared.plugins.vm_device.xml import disk_name

Placed = tuple[Mapping[str, Any], Device, Slot]


def usb_controllers(devices: Sequence[Device]) -> list[str]:
    """Guest USB controller models by index: one per model the devices ask for, in device order; devices that
    only need some controller (a display's tablet) get TrueNAS's nec-xhci."""
    models: list[str] = []
    for device in devices:
        model = device.usb_controller()
        if model is not None and model not in models:
            models.append(model)
    if not models and any(device.needs_usb for device in devices):
        models.append(DEFAULT_CONTROLLER)
    return models


def place(rows: Sequence[Mapping[str, Any]], host: HostSnapshot,
          types: Registry = DEVICE_TYPES) -> tuple[list[str], list[Placed]]:
    """The USB controllers, and each device of a known dtype in device order, typed and with its slot."""
    typed = [(row, device) for row in sorted(rows, key=device_order)
             if (device := types.typed(row["attributes"])) is not None]
    controllers = usb_controllers([device for _, device in typed])
    boot_order, disks, seen = 0, {"sd": 0, "vd": 0}, set[str]()
    out: list[Placed] = []
    for row, device in typed:
        slot: dict[str, Any] = {"first_of_type": device.dtype not in seen}
        seen.add(device.dtype)
        if device.bootable:
            boot_order += 1
            slot["boot_order"] = boot_order
        prefix = device.target_prefix()
        if prefix is not None:
            disks[prefix] += 1
            slot["target"] = disk_name(prefix, disks[prefix])
        model = device.usb_controller()
        if model is not None:
            slot["usb_bus"] = controllers.index(model)
        out.append((row, device, Slot(host=host, **slot)))
    return controllers, out


def elements(rows: Sequence[Mapping[str, Any]], host: HostSnapshot,
             types: Registry = DEVICE_TYPES) -> list[etree._Element]:
    """The `<devices>` children of a VM's devices: USB controllers first, then each device in order."""
    controllers, placed = place(rows, host, types)
    out = []
    for index, model in enumerate(controllers):
        controller = etree.Element("controller", type="usb", index=str(index))
        controller.set("model", model)
        out.append(controller)
    for _, device, slot in placed:
        out.extend(device.to_xml(slot))
    return out


def device_xml(rows: Sequence[Mapping[str, Any]], host: HostSnapshot, device_id: int,
               types: Registry = DEVICE_TYPES) -> list[str]:
    """The XML of one device placed among all (for a live update of the running domain)."""
    for row, device, slot in place(rows, host, types)[1]:
        if row.get("id") == device_id:
            return [etree.tostring(el, encoding="unicode") for el in device.to_xml(slot)]
    return []
