"""JSON Schemas of vm.device.*: the attributes union by dtype, create/update/entry, delete options, choices."""
from __future__ import annotations

from typing import Any

from middlewared.plugins.vm_device.registry import DEVICE_TYPES, Registry


def dtype_schema(types: Registry) -> dict[str, Any]:
    """The dtype property: one of the registered types."""
    return {"type": "string", "enum": types.names, "description": "Device type."}


def attributes_schema(types: Registry) -> dict[str, Any]:
    """Device attributes: a union discriminated by dtype. Each type's schema applies when dtype names it, so
    errors point at the right attribute ("vm_device_create.attributes.path") instead of "matches none of the
    forms"."""
    return {
        "type": "object", "required": ["dtype"], "properties": {"dtype": dtype_schema(types)},
        "description": "Device attributes; which ones depends on dtype.",
        "allOf": [{"if": {"properties": {"dtype": {"const": t.dtype, "description": "Device type."}},
                          "required": ["dtype"]},
                   "then": t.schema} for t in types],
    }


DTYPE = dtype_schema(DEVICE_TYPES)
ATTRIBUTES = attributes_schema(DEVICE_TYPES)
ORDER: dict[str, Any] = {"type": ["integer", "null"],
                         "description": "Device order, which also orders the boot devices; null: by type "
                                        "(CDROM 1000, DISK and RAW 1001, others 1002). Ties go by id."}
VM_ID: dict[str, Any] = {"type": "integer", "description": "Id of the VM the device belongs to."}

DEVICE_CREATE: dict[str, Any] = {
    "type": "object", "description": "A new device.", "additionalProperties": False,
    "required": ["vm", "attributes"],
    "properties": {"vm": VM_ID, "attributes": ATTRIBUTES, "order": {**ORDER, "default": None}},
}
DEVICE_UPDATE: dict[str, Any] = {
    "type": "object", "description": "Changes: attributes given replace the stored ones, the others stay.",
    "additionalProperties": False,
    "properties": {
        "vm": {**VM_ID, "description": "The device's VM (a device cannot move to another VM)."},
        "attributes": {"type": "object", "properties": {"dtype": DTYPE},
                       "description": "Attributes to change (dtype, if given, must stay the same)."},
        "order": ORDER,
    },
}
DEVICE_ENTRY: dict[str, Any] = {
    "type": "object", "description": "A VM device.",
    "properties": {
        "id": {"type": "integer", "description": "Device id."},
        "vm": VM_ID,
        "order": {"type": "integer", "description": "Device (and boot) order."},
        "attributes": {"type": "object", "properties": {"dtype": DTYPE},
                       "description": "Device attributes (display passwords masked)."},
    },
}
DELETE_OPTIONS: dict[str, Any] = {
    "title": "options", "type": "object", "default": {}, "additionalProperties": False,
    "description": "What else to do.",
    "properties": {
        "zvol": {"type": "boolean", "default": False, "description": "Also delete a DISK's volume."},
        "raw_file": {"type": "boolean", "default": False, "description": "Also delete a RAW device's file."},
        "force": {"type": "boolean", "default": False,
                  "description": "Delete even while the VM runs (the guest keeps the device until it stops) "
                                 "and even if the volume or file is already gone."},
    },
}


def string_map(description: str) -> dict[str, Any]:
    """A choices result: value -> label."""
    return {"title": "result", "type": "object", "description": description,
            "additionalProperties": {"type": "string", "description": "Label."}}


def details_map(description: str, details: dict[str, Any]) -> dict[str, Any]:
    """A choices result: name -> details object."""
    return {"title": "result", "type": "object", "description": description,
            "additionalProperties": {"type": "object", "description": "Details.", "properties": details}}


_NULLABLE_STR = {"type": ["string", "null"]}
PCI_DETAILS: dict[str, Any] = {
    "description": {"type": "string", "description": "Vendor, product and class ids."},
    "vendor_id": {"type": "string", "description": "PCI vendor id."},
    "product_id": {"type": "string", "description": "PCI device id."},
    "class": {"type": "string", "description": "PCI class code."},
    "iommu_group": {"type": ["integer", "null"], "description": "IOMMU group number, null without IOMMU."},
    "drivers": {"type": "array", "description": "Host driver bound to it.",
                "items": {"type": "string", "description": "Driver name."}},
    "critical": {"type": "boolean", "description": "The host needs it (a bridge)."},
    "available": {"type": "boolean", "description": "Whether it can be passed through now."},
    "error": {**_NULLABLE_STR, "description": "Why it is not available, or null."},
}
USB_DETAILS: dict[str, Any] = {
    "capability": {"type": "object", "description": "What the device is.", "properties": {
        k: {"type": t, "description": d} for k, t, d in (
            ("vendor", "string", "Vendor name."), ("vendor_id", "string", "Vendor id."),
            ("product", "string", "Product name."), ("product_id", "string", "Product id."),
            ("bus", "integer", "Host USB bus."), ("device", "integer", "Device number on the bus."))}},
    "available": {"type": "boolean", "description": "Whether no running VM uses it."},
    "error": {**_NULLABLE_STR, "description": "Why it is not available, or null."},
}
