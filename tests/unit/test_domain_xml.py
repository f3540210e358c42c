"""Golden-file and schema tests of the VM domain XML; `UPDATE_GOLDEN=1` rewrites the golden files."""
from __future__ import annotations

import builtins
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from lxml import etree

from middlewared.plugins.vm.domain_xml import (
    METADATA_NS, build_domain, domain_xml_string, ovmf_code_file, ovmf_vars_file,
)
from middlewared.plugins.vm.model import (
    Bootloader, ClockTime, CpuMode, DomainContext, DomainType, VMRecord, parse_cpuset,
)

GOLDEN = Path(__file__).parent / "golden" / "vm"
VALIDATOR = shutil.which("virt-xml-validate")
UUID = "6f1c2e0a-3b7d-4c1e-9a55-0d2f4b8e7c13"
INSTANCE = "0b6a8f4e-5d21-4c7a-8e93-2f1d6c4b9a70"

Case = tuple[VMRecord, DomainContext, list[etree._Element]]


def _vm(vm_id: int, name: str, **fields: Any) -> VMRecord:
    return VMRecord(**{"id": vm_id, "name": name, "memory": 512, "uuid": UUID, **fields})


def _ctx(vm: VMRecord, domain_type: DomainType = DomainType.QEMU, **fields: Any) -> DomainContext:
    """A context as the vm plugin builds it: per-VM NVRAM, the VARS template matching the code."""
    ctx = DomainContext(domain_type, f"/var/lib/libvirt/qemu/nvram/{vm.domain_name}_VARS.fd", instance=INSTANCE,
                        **fields)
    template = ovmf_vars_file(ovmf_code_file(vm, ctx))
    return replace(ctx, nvram_template=f"{ctx.ovmf_dir}/{template}" if template else None)


def _case(vm: VMRecord, domain_type: DomainType = DomainType.QEMU,
          devices: list[etree._Element] | None = None, **ctx_fields: Any) -> Case:
    return vm, _ctx(vm, domain_type, **ctx_fields), devices or []


def _display_devices() -> list[etree._Element]:
    """What the device plugin would hand over for a SPICE display."""
    graphics = etree.Element("graphics", type="spice", port="5900")
    etree.SubElement(graphics, "listen", type="address", address="127.0.0.1")
    video = etree.Element("video")
    etree.SubElement(video, "model", type="qxl")
    return [graphics, video]


CASES: dict[str, Case] = {
    "minimal_uefi": _case(_vm(1, "vm")),
    "uefi_csm": _case(_vm(2, "legacy", bootloader=Bootloader.UEFI_CSM, ensure_display_device=False)),
    "secure_boot_tpm": _case(
        _vm(3, "secure", enable_secure_boot=True, trusted_platform_module=True,
            bootloader_ovmf="OVMF_CODE_4M.fd", machine_type="pc-q35-7.2"),
        DomainType.KVM, serial_log_path="/var/log/libvirt/qemu/3_secure.console.log",
    ),
    "pinned_passthrough": _case(
        _vm(4, "pinned", vcpus=1, cores=2, threads=2, cpuset="2-3,6,7", nodeset="0", pin_vcpus=True,
            cpu_mode=CpuMode.HOST_PASSTHROUGH, enable_cpu_topology_extension=True,
            bootloader_ovmf="OVMF_CODE_4M.fd"),
        DomainType.KVM,
    ),
    "custom_model": _case(
        _vm(5, "custom", vcpus=2, cpu_model="Skylake-Client", enable_cpu_topology_extension=True),
    ),
    "windows": _case(
        _vm(6, "windows", memory=4096, min_memory=1024, hyperv_enlightenments=True, hide_from_msr=True,
            time=ClockTime.UTC, cpu_mode=CpuMode.HOST_MODEL,
            description='Windows <11> & "friends"\x07 bell', bootloader_ovmf="OVMF_CODE_4M.fd"),
        DomainType.KVM,
    ),
    "command_line_args": _case(
        _vm(7, "args", command_line_args="-global 'ICH9-LPC.disable_s3=1' -smbios \"type=1,serial=a b\""),
    ),
    "display": _case(
        _vm(8, "display", arch_type="x86_64", machine_type="q35"), devices=_display_devices(),
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case: str, tmp_path: Path) -> None:
    vm, ctx, devices = CASES[case]
    text = domain_xml_string(vm, ctx, devices)
    golden = GOLDEN / f"{case}.xml"
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text(text)
    assert text == golden.read_text()
    _validate(text, tmp_path / golden.name)


def _validate(text: str, path: Path) -> None:
    if VALIDATOR is None:
        pytest.skip("virt-xml-validate not installed (Debian package libvirt-clients)")
    path.write_text(text)
    result = subprocess.run([VALIDATOR, str(path), "domain"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr + result.stdout


def test_deterministic_without_io(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_open(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"build_domain opened {args!r}")

    monkeypatch.setattr(builtins, "open", no_open)
    monkeypatch.setattr(os, "open", no_open)
    for vm, ctx, devices in CASES.values():
        assert domain_xml_string(vm, ctx, devices) == domain_xml_string(vm, ctx, devices)


def test_given_devices_are_copied_not_moved() -> None:
    vm, ctx, devices = CASES["display"]
    build_domain(vm, ctx, devices)
    assert all(element.getparent() is None for element in devices)


def test_ensure_display_device_off_adds_no_video() -> None:
    vm = _vm(1, "vm", ensure_display_device=False)
    root = build_domain(vm, _ctx(vm))
    assert root.find("devices/video") is None


def test_description_is_escaped_and_cleaned() -> None:
    root = build_domain(*CASES["windows"][:2])
    assert root.findtext("description") == 'Windows <11> & "friends" bell'


def test_metadata_names_the_instance_and_row() -> None:
    vm = _vm(42, "tagged")
    owner = build_domain(vm, _ctx(vm)).find(f"metadata/{{{METADATA_NS}}}owner")
    assert owner is not None and owner.attrib == {"instance": INSTANCE, "vm": "42"}
    untagged = build_domain(vm, replace(_ctx(vm), instance=None))
    assert untagged.find("metadata") is None


def test_tcg_drops_kvm_only_cpu_features() -> None:
    vm = _vm(1, "vm", cpu_mode=CpuMode.HOST_PASSTHROUGH, hyperv_enlightenments=True)
    root = build_domain(vm, _ctx(vm))
    assert root.xpath("string(cpu/@mode)") == "maximum" and root.find("cpu/cache") is None
    assert root.find("features/hyperv") is None and root.find("clock/timer") is None


def test_from_row_converts_and_ignores_extra_keys() -> None:
    row = {
        "id": 9, "name": "db", "memory": 1024, "time": "UTC", "bootloader": "UEFI_CSM",
        "cpu_mode": "HOST-MODEL", "autostart": 0, "pin_vcpus": 1,
        "status": {"state": "STOPPED"}, "devices": [], "display_available": False,
    }
    vm = VMRecord.from_row(row)
    assert vm.time is ClockTime.UTC and vm.bootloader is Bootloader.UEFI_CSM
    assert vm.cpu_mode is CpuMode.HOST_MODEL
    assert vm.autostart is False and vm.pin_vcpus is True
    assert vm.domain_name == "9_db"


@pytest.mark.parametrize(("spec", "cpus"), [("0", [0]), ("0-3,8", [0, 1, 2, 3, 8]), ("5, 1-2", [5, 1, 2])])
def test_parse_cpuset(spec: str, cpus: list[int]) -> None:
    assert parse_cpuset(spec) == cpus


@pytest.mark.parametrize("spec", ["", "3-1", "a", "-1", "1-"])
def test_parse_cpuset_rejects(spec: str) -> None:
    with pytest.raises(ValueError):
        parse_cpuset(spec)


@pytest.mark.parametrize(("code", "vars_file"), [
    ("OVMF_CODE.fd", "OVMF_VARS.fd"),
    ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd"),
    ("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.ms.fd"),
    ("OVMF_CODE.ms.fd", "OVMF_VARS.ms.fd"),
    ("OVMF_CODE_4M.snakeoil.fd", "OVMF_VARS_4M.snakeoil.fd"),
    ("custom.fd", None),
])
def test_ovmf_vars_file(code: str, vars_file: str | None) -> None:
    assert ovmf_vars_file(code) == vars_file


def test_secure_boot_keeps_a_secure_build() -> None:
    vm = _vm(1, "vm", enable_secure_boot=True, bootloader_ovmf="OVMF_CODE_4M.ms.fd")
    assert ovmf_code_file(vm, _ctx(vm)) == "OVMF_CODE_4M.ms.fd"
    vm = _vm(1, "vm", enable_secure_boot=True)
    assert ovmf_code_file(vm, _ctx(vm)) == "OVMF_CODE_4M.secboot.fd"
