"""JSON Schemas of vm.snapshot.*."""
from __future__ import annotations

from typing import Any

from middlewared.schema import DATE

NAME: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 120,
                        "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.:+ -]*$",
                        "description": "Name of the snapshot, unique among the VM's snapshots."}
DESCRIPTION: dict[str, Any] = {"type": "string", "maxLength": 1024, "description": "Free text about the snapshot."}

ENTRY: dict[str, Any] = {
    "type": "object", "description": "A VM snapshot: a node of the VM's snapshot tree.",
    "properties": {
        "id": {"type": "integer", "description": "Snapshot id."},
        "vm": {"type": "integer", "description": "Id of the VM."},
        "name": NAME,
        "description": DESCRIPTION,
        "parent": {"type": ["integer", "null"],
                   "description": "The snapshot this one was taken after (the VM's current one then); null for a "
                                  "root."},
        "children": {"type": "array", "items": {"type": "integer", "description": "A snapshot id."},
                     "description": "Snapshots taken after this one, each branch from it."},
        "current": {"type": "boolean",
                    "description": "Whether the VM's state descends from this snapshot (the last taken or reverted "
                                   "to): the next snapshot becomes its child."},
        "created": {**DATE, "description": "When it was taken: {\"$date\": milliseconds since 1970}."},
        "memory": {"type": "boolean", "description": "Whether it holds the running guest's RAM (a revert resumes "
                                                     "the guest where it was)."},
        "vm_state": {"type": "string", "enum": ["RUNNING", "SUSPENDED", "STOPPED"],
                     "description": "The VM's state when the snapshot was taken."},
        "disks": {"type": "array", "items": {"type": "string", "description": "A volume (\"<pool>/<volume>\")."},
                  "description": "The DISK volumes it covers (qcow2 internal snapshots)."},
        "size": {"type": "integer", "description": "Bytes: the saved RAM and firmware variables, plus the disks' "
                                                   "allocated bytes when it was taken."},
        "memory_size": {"type": "integer", "description": "Bytes of the saved RAM (0 without memory)."},
        "held_ms": {"type": ["number", "null"],
                    "description": "How long the running guest was paused or frozen to take it, in milliseconds "
                                   "(null: the VM was stopped)."},
    },
}

CREATE: dict[str, Any] = {
    "title": "vm_snapshot_create", "type": "object", "additionalProperties": False,
    "description": "The snapshot to take.",
    "required": ["vm", "name"],
    "properties": {
        "vm": {"type": "integer", "description": "Id of the VM."},
        "name": NAME,
        "description": {**DESCRIPTION, "default": ""},
        "memory": {"type": "boolean", "default": False,
                   "description": "Also save the RAM of a running VM (revert resumes it). Without it, a running "
                                  "VM's disks are taken consistent: frozen through the guest agent, else paused "
                                  "for the instant."},
    },
}

ID: dict[str, Any] = {"title": "id", "type": "integer", "description": "Id of the snapshot."}

REVERT_OPTIONS: dict[str, Any] = {
    "title": "options", "type": "object", "default": {}, "additionalProperties": False,
    "description": "How to revert.",
    "properties": {
        "force": {"type": "boolean", "default": False,
                  "description": "Power a running VM off to revert it (its state since the snapshot is lost)."},
    },
}

DELETED: dict[str, Any] = {"title": "result", "type": "boolean", "description": "True once deleted."}
