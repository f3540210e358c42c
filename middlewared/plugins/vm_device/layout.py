"""Place a VM's devices (order, boot order, disk names, USB controllers) and build their XML (pure)."""
from __future__ import annotations

from typing import Any, Iterator, Mapping, Sequence

from lxml import etree

from middlewared.plugins.vm_device.model import HostSnapshot, Slot
from middlewared.plugins.vm_device.registry import DEVICE_TYPES, Registry
from middlewared.plugins.vm_device.usb import DEFAULT_CONTROLLER
from middlewared.plugins.vm_device.xml import disk_name


def device_order(device: Mapping[str, Any]) -> tuple[bool, int, int]:
    """Devices are ordered by `order` (unset last), then id."""
    return device.get("order") is None, device.get("order") or 0, device.get("id") or 0


def usb_controllers(devices: Sequence[Mapping[str, Any]]) -> list[str]:
    """Guest USB controller models by index: one per model USB devices ask for, in device order; a display's
    tablet alone gets upstream's nec-xhci."""
    models: list[str] = []
    for device in sorted(devices, key=device_order):
        a = device["attributes"]
        if a["dtype"] == "USB" and a["controller_type"] not in models:
            models.append(a["controller_type"])
    if not models and any(d["attributes"]["dtype"] == "DISPLAY" for d in devices):
        models.append(DEFAULT_CONTROLLER)
    return models


def place(devices: Sequence[Mapping[str, Any]], host: HostSnapshot,
          types: Registry = DEVICE_TYPES) -> Iterator[tuple[Mapping[str, Any], Slot]]:
    """Each known device, in device order, with its slot."""
    ordered = sorted(devices, key=device_order)
    controllers = usb_controllers(ordered)
    boot_order, disks, displays = 0, {"sd": 0, "vd": 0}, 0
    for device in ordered:
        a = device["attributes"]
        device_type = types.get(a.get("dtype"))
        if device_type is None:
            continue
        slot: dict[str, Any] = {}
        if device_type.bootable:
            boot_order += 1
            slot["boot_order"] = boot_order
        prefix = device_type.target_prefix(a)
        if prefix is not None:
            disks[prefix] += 1
            slot["target"] = disk_name(prefix, disks[prefix])
        if a["dtype"] == "USB":
            slot["usb_bus"] = controllers.index(a["controller_type"])
        if a["dtype"] == "DISPLAY":
            displays += 1
            slot["primary_display"] = displays == 1
        yield device, Slot(host=host, **slot)


def elements(devices: Sequence[Mapping[str, Any]], host: HostSnapshot,
             types: Registry = DEVICE_TYPES) -> list[etree._Element]:
    """The `<devices>` children of a VM's devices: USB controllers first, then each device in order."""
    out = []
    for index, model in enumerate(usb_controllers(devices)):
        controller = etree.Element("controller", type="usb", index=str(index))
        controller.set("model", model)
        out.append(controller)
    for device, slot in place(devices, host, types):
        out.extend(types[device["attributes"]["dtype"]].to_xml(device["attributes"], slot))
    return out


def device_xml(devices: Sequence[Mapping[str, Any]], host: HostSnapshot, device_id: int,
               types: Registry = DEVICE_TYPES) -> list[str]:
    """The XML of one device placed among all (for a live update of the running domain)."""
    for device, slot in place(devices, host, types):
        if device.get("id") == device_id:
            return [etree.tostring(el, encoding="unicode")
                    for el in types[device["attributes"]["dtype"]].to_xml(device["attributes"], slot)]
    return []

