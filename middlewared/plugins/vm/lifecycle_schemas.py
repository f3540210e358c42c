"""JSON Schemas of the vm lifecycle methods."""
from __future__ import annotations

from typing import Any

from middlewared.plugins.vm.schemas import STATUS


ID: dict[str, Any] = {"title": "id", "type": "integer", "description": "VM id."}
START_OPTIONS: dict[str, Any] = {
    "title": "options", "type": "object", "default": {}, "additionalProperties": False,
    "description": "Start options.",
    "properties": {"overcommit": {"type": "boolean", "default": False,
                                  "description": "Start even when the host cannot guarantee the VM's memory."}},
}
STOP_OPTIONS: dict[str, Any] = {
    "title": "options", "type": "object", "default": {}, "additionalProperties": False,
    "description": "Stop options.",
    "properties": {
        "force": {"type": "boolean", "default": False, "description": "Power off at once."},
        "force_after_timeout": {"type": "boolean", "default": False,
                                "description": "Power off when the guest has not shut down within "
                                               "shutdown_timeout."}},
}
STATUS_RESULT: dict[str, Any] = {**STATUS, "title": "result"}
