"""Validation of VM records beyond their schema: host facts, cross-field rules, uniqueness."""
from __future__ import annotations

import errno
import os
import re
import shlex
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from middlewared.errors import ValidationErrors
from middlewared.plugins.vm.model import parse_cpuset

_CPUSET = re.compile(r"^\s*\d+(\s*-\s*\d+)?(\s*,\s*\d+(\s*-\s*\d+)?)*\s*$")


@dataclass(frozen=True)
class HostFacts:
    """What validation needs to know about the host, gathered before validating."""

    cpu_count: int
    numa_nodes: frozenset[int]
    max_vcpus: int
    cpu_models: frozenset[str]
    ovmf_dir: str
    other_names: AbstractSet[str]


def numa_nodes() -> frozenset[int]:
    """NUMA node numbers from sysfs (node 0 when sysfs does not tell)."""
    try:
        names = os.listdir("/sys/devices/system/node")
    except OSError:
        return frozenset({0})
    nodes = {int(n[4:]) for n in names if n.startswith("node") and n[4:].isdigit()}
    return frozenset(nodes or {0})


def _check_set(verrors: ValidationErrors, attr: str, spec: str | None, limit: set[int], what: str) -> list[int]:
    if spec is None:
        return []
    if not _CPUSET.match(spec):
        verrors.add(attr, f"Invalid {what} list {spec!r}: use numbers and ranges such as 0-3,8")
        return []
    try:
        values = parse_cpuset(spec.replace(" ", ""))
    except ValueError as e:
        verrors.add(attr, str(e))
        return []
    missing = sorted(set(values) - limit)
    if missing:
        verrors.add(attr, f"The host has no {what} {', '.join(map(str, missing))}")
    return values


def validate_vm(data: dict[str, Any], facts: HostFacts, schema_name: str) -> ValidationErrors:
    """Every error of a complete VM record (defaults applied), at once; data is not changed."""
    verrors = ValidationErrors()

    def add(attr: str, msg: str, code: int = errno.EINVAL) -> None:
        verrors.add(f"{schema_name}.{attr}", msg, code)

    if data["name"] in facts.other_names:
        add("name", "This name already exists.", errno.EEXIST)
    if data.get("min_memory") is not None and data["min_memory"] > data["memory"]:
        add("min_memory", "Minimum memory should not be greater than defined/maximum memory")
    total = data["vcpus"] * data["cores"] * data["threads"]
    if total > facts.max_vcpus:
        add("vcpus", f"Maximum {facts.max_vcpus} vcpus are supported; vcpus x cores x threads is {total}")
    cpus = _check_set(verrors_for(verrors, schema_name), "cpuset", data.get("cpuset"),
                      set(range(facts.cpu_count)), "CPU")
    _check_set(verrors_for(verrors, schema_name), "nodeset", data.get("nodeset"), set(facts.numa_nodes),
               "NUMA node")
    if data.get("pin_vcpus"):
        if not data.get("cpuset"):
            add("pin_vcpus", "vCPUs can be pinned only when cpuset is set")
        elif cpus and len(cpus) != total:
            add("pin_vcpus", f"Pinning needs exactly one cpuset CPU per vCPU ({total}), cpuset has {len(cpus)}")
    if data["cpu_mode"] == "CUSTOM" and data.get("cpu_model") and facts.cpu_models \
            and data["cpu_model"] not in facts.cpu_models:
        add("cpu_model", f"Unknown CPU model {data['cpu_model']!r} (see vm.cpu_model_choices)")
    if data["bootloader"] == "UEFI" and not os.path.isfile(os.path.join(facts.ovmf_dir, data["bootloader_ovmf"])):
        add("bootloader_ovmf", f"{data['bootloader_ovmf']} does not exist in {facts.ovmf_dir}", errno.ENOENT)
    if data.get("enable_secure_boot") and data["bootloader"] != "UEFI":
        add("enable_secure_boot", "Secure boot needs the UEFI bootloader")
    try:
        shlex.split(data.get("command_line_args") or "")
    except ValueError as e:
        add("command_line_args", f"Cannot parse arguments: {e}")
    return verrors


class _Prefixed(ValidationErrors):
    """Adds the schema name in front of attributes (shared list with the parent collection)."""

    def __init__(self, parent: ValidationErrors, prefix: str) -> None:
        super().__init__()
        self.errors = parent.errors
        self.prefix = prefix

    def add(self, attribute: str | None, errmsg: str, errno_: int = errno.EINVAL) -> None:
        super().add(f"{self.prefix}.{attribute}" if attribute else self.prefix, errmsg, errno_)


def verrors_for(verrors: ValidationErrors, prefix: str) -> ValidationErrors:
    """A view of verrors that prefixes attributes with the schema name."""
    return _Prefixed(verrors, prefix)
