"""JSON Schemas of VM records: create, update, the query entry, and the lifecycle options."""
from __future__ import annotations

import copy
from typing import Any

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
RESOLUTIONS = ["1920x1200", "1920x1080", "1600x1200", "1600x900", "1400x1050", "1280x1024", "1280x720",
               "1024x768", "800x600", "640x480"]


def _nullable(kind: str, description: str, **more: Any) -> dict[str, Any]:
    return {"type": [kind, "null"], "default": None, "description": description, **more}


# Every field of a VM, with its default (create fills defaults; update takes any subset).
FIELDS: dict[str, dict[str, Any]] = {
    "name": {"type": "string", "minLength": 1, "maxLength": 200, "pattern": NAME_PATTERN,
             "description": "Unique name: letters, digits, '_', '.', '-' (it becomes part of the libvirt "
                            "domain name {id}_{name})."},
    "description": {"type": "string", "default": "", "maxLength": 4096, "description": "Free text."},
    "vcpus": {"type": "integer", "minimum": 1, "maximum": 16, "default": 1, "description": "Virtual CPU sockets."},
    "cores": {"type": "integer", "minimum": 1, "default": 1, "description": "Cores per socket."},
    "threads": {"type": "integer", "minimum": 1, "default": 1, "description": "Threads per core."},
    "memory": {"type": "integer", "minimum": 20, "description": "Memory in MiB."},
    "min_memory": _nullable("integer", "Memory in MiB the balloon may shrink the guest to; null disables "
                                       "ballooning. At most `memory`.", minimum=20),
    "autostart": {"type": "boolean", "default": True, "description": "Start with the daemon."},
    "time": {"type": "string", "enum": ["LOCAL", "UTC"], "default": "LOCAL",
             "description": "Whether the guest clock runs in host local time or UTC."},
    "bootloader": {"type": "string", "enum": ["UEFI", "UEFI_CSM"], "default": "UEFI",
                   "description": "UEFI (OVMF) or UEFI_CSM (legacy BIOS)."},
    "bootloader_ovmf": {"type": "string", "default": "OVMF_CODE.fd", "pattern": r"^[^/]+$",
                        "description": "OVMF code file (see vm.bootloader_ovmf_choices)."},
    "cpu_mode": {"type": "string", "enum": ["CUSTOM", "HOST-MODEL", "HOST-PASSTHROUGH"], "default": "CUSTOM",
                 "description": "Guest CPU: a named model (CUSTOM), the host's model, or passthrough."},
    "cpu_model": _nullable("string", "CPU model for CUSTOM mode (see vm.cpu_model_choices)."),
    "cpuset": _nullable("string", "Host CPUs the vCPUs may run on, e.g. \"0-3,8\"."),
    "nodeset": _nullable("string", "NUMA nodes guest memory comes from, e.g. \"0\"."),
    "enable_cpu_topology_extension": {"type": "boolean", "default": False,
                                      "description": "Expose the topoext CPU feature (AMD SMT topology)."},
    "pin_vcpus": {"type": "boolean", "default": False,
                  "description": "Pin each vCPU to one CPU of cpuset (needs as many CPUs as vCPUs)."},
    "hyperv_enlightenments": {"type": "boolean", "default": False,
                              "description": "Hyper-V enlightenments for Windows guests."},
    "shutdown_timeout": {"type": "integer", "minimum": 5, "maximum": 300, "default": 90,
                         "description": "Seconds vm.stop waits for an ACPI shutdown."},
    "hide_from_msr": {"type": "boolean", "default": False,
                      "description": "Hide the KVM signature from the guest's CPUID/MSR probes."},
    "ensure_display_device": {"type": "boolean", "default": True,
                              "description": "Give the guest a video device even without a DISPLAY device."},
    "suspend_on_snapshot": {"type": "boolean", "default": False,
                            "description": "Suspend the VM while its disks are snapshotted."},
    "trusted_platform_module": {"type": "boolean", "default": False,
                                "description": "Emulated TPM 2.0 (swtpm)."},
    "enable_secure_boot": {"type": "boolean", "default": False,
                           "description": "UEFI secure boot (q35 machine, SMM, secure OVMF)."},
    "arch_type": _nullable("string", "Guest architecture, e.g. x86_64 (null: the host's)."),
    "machine_type": _nullable("string", "Machine type, e.g. q35 (null: q35)."),
    "uuid": _nullable("string", "Domain UUID (generated when null).", format="uuid"),
    "command_line_args": {"type": "string", "default": "",
                          "description": "Extra QEMU arguments, shell-quoted."},
    "template": {"type": "boolean", "default": False,
                 "description": "A template (as Proxmox's `qm template`): it cannot be started, its DISK volumes "
                                "become read-only bases, and vm.clone with linked makes clones whose disks are "
                                "qcow2 overlays on them. Changed only while the VM is stopped; refused while it has "
                                "snapshots (to true) or linked clones (to false)."},
}

DEVICES_INPUT: dict[str, Any] = {
    "type": "array", "description": "Devices of the VM: without id created, with id updated, "
                                    "missing ones removed (vm.update).",
    "items": {"type": "object", "description": "A device: {id?, attributes: {dtype, ...}, order?}.",
              "properties": {
                  "id": {"type": "integer", "description": "Id of an existing device of this VM."},
                  "vm": {"type": "integer", "description": "The VM the device belongs to, as query entries "
                                                           "carry it (devices stay with this VM)."},
                  "attributes": {"type": "object", "description": "Device attributes, with dtype."},
                  "order": {"type": ["integer", "null"], "description": "Boot and device order."}},
              "required": ["attributes"], "additionalProperties": False},
}

VM_CREATE: dict[str, Any] = {
    "type": "object", "description": "A new VM.",
    "properties": {**FIELDS, "devices": {**DEVICES_INPUT, "default": []}},
    "required": ["name", "memory"], "additionalProperties": False,
}


def _without_defaults(props: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(props)
    for sub in out.values():
        sub.pop("default", None)
    return out


VM_UPDATE: dict[str, Any] = {
    "type": "object", "description": "Fields to change; others keep their value.",
    "properties": {**_without_defaults(FIELDS), "devices": DEVICES_INPUT},
    "additionalProperties": False,
}

STATUS: dict[str, Any] = {
    "type": "object", "description": "Live state from libvirt.",
    "properties": {
        "state": {"type": "string", "enum": ["RUNNING", "SUSPENDED", "STOPPED", "ERROR"],
                  "description": "Running, suspended (paused), stopped, or an error state."},
        "pid": {"type": ["integer", "null"], "description": "QEMU process id while running."},
        "domain_state": {"type": "string", "description": "libvirt's own state name (RUNNING, PAUSED, "
                                                          "SHUTOFF, ...)."},
        "started_at": {"type": ["number", "null"],
                       "description": "Unix time (seconds) the domain's QEMU process started, read from the process "
                                      "itself, so also right after a daemon restart and for adopted domains; the "
                                      "VM's uptime is the time since. Null while stopped."}},
}

VM_ENTRY: dict[str, Any] = {
    "type": "object", "description": "A VM.",
    "properties": {
        "id": {"type": "integer", "description": "VM id."},
        **{k: {kk: vv for kk, vv in v.items() if kk != "default"} for k, v in FIELDS.items()},
        "uuid": {"type": "string", "description": "Domain UUID."},
        "status": STATUS,
        "devices": {"type": "array", "description": "The VM's devices (as vm.device.query shows them).",
                    "items": {"type": "object", "description": "A device."}},
        "display_available": {"type": "boolean", "description": "Whether the VM has a DISPLAY device."},
        "snapshot_count": {"type": "integer", "description": "How many snapshots the VM has (vm.snapshot.query)."},
        "cloned_from": {"type": ["integer", "null"],
                        "description": "The VM this one was cloned from (vm.clone); null when it is no clone or that "
                                       "VM was deleted since (a template with linked clones cannot be)."},
        "linked_clone": {"type": "boolean",
                         "description": "Whether this VM is a linked clone: its DISK volumes are qcow2 overlays on "
                                        "those of its template, cloned_from."},
    },
}

DELETE_OPTIONS: dict[str, Any] = {
    "title": "options", "type": "object", "default": {}, "additionalProperties": False,
    "description": "What else to remove.",
    "properties": {
        "zvols": {"type": "boolean", "default": False, "description": "Also delete the VM's DISK volumes."},
        "force": {"type": "boolean", "default": False, "description": "Power a running VM off first."}},
}
