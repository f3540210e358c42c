"""libvirt domain XML of a VM, as a pure function of its record, host context and device elements."""
from __future__ import annotations

import copy
import re
import shlex
from collections.abc import Sequence

from lxml import etree

from middlewared.plugins.vm.model import (
    Bootloader, ClockTime, CpuMode, DomainContext, DomainType, VMRecord, parse_cpuset,
)
from middlewared.plugins.vm.xml_helpers import on, sub

QEMU_NS = "http://libvirt.org/schemas/domain/qemu/1.0"
# The namespace of the daemon's own element in <metadata> (https://libvirt.org/formatdomain.html#general-metadata).
METADATA_NS = "urn:middlewared:domain:1"
METADATA_PREFIX = "middlewared"
DEFAULT_ARCH = "x86_64"
# libvirt expands the alias to the newest versioned pc-q35-X.Y machine of the installed QEMU.
DEFAULT_MACHINE = "q35"

# Debian names its OVMF builds OVMF_CODE[_4M][.secboot|.ms|.snakeoil].fd; `.ms` and `.snakeoil` are
# secure-boot builds too (https://salsa.debian.org/qemu-team/edk2/-/blob/debian/debian/README.Debian).
_OVMF_CODE = re.compile(r"OVMF_CODE(?P<size>_\dM)?(?P<variant>\.secboot|\.ms|\.snakeoil)?\.fd")
# Enlightenments Windows guests use (spinlocks, which takes a value, is added apart); stimer needs
# synic and vpindex, ipi and tlbflush need vpindex.
# https://libvirt.org/formatdomain.html#hypervisor-features
_HYPERV_FEATURES = ("relaxed", "vapic", "vpindex", "runtime", "synic", "stimer", "reset",
                    "frequencies", "ipi", "tlbflush")


def build_domain(
    vm: VMRecord, ctx: DomainContext, devices: Sequence[etree._Element] = (),
) -> etree._Element:
    """Return the `<domain>` element for `vm`; `devices` are copied in after the fixed devices."""
    root = etree.Element("domain", {"type": str(ctx.domain_type)}, nsmap={"qemu": QEMU_NS})
    sub(root, "name", vm.domain_name)
    if vm.uuid:
        sub(root, "uuid", vm.uuid)
    sub(root, "title", vm.name)
    if vm.description:
        sub(root, "description", vm.description)
    if ctx.instance:
        _add_metadata(root, vm, ctx.instance)
    _add_memory(root, vm)
    _add_vcpus(root, vm)
    root.append(_os(vm, ctx))
    root.append(_features(vm, ctx))
    root.append(_cpu(vm, ctx))
    root.append(_clock(vm, ctx))
    # Stated explicitly (they are libvirt's defaults) so `vm.stop` and guest reboots behave the same
    # whatever libvirt's defaults become.
    sub(root, "on_poweroff", "destroy")
    sub(root, "on_reboot", "restart")
    sub(root, "on_crash", "destroy")
    root.append(_devices(vm, ctx, devices))
    _add_commandline(root, vm.command_line_args)
    return root


def domain_xml_string(
    vm: VMRecord, ctx: DomainContext, devices: Sequence[etree._Element] = (),
) -> str:
    """Return `build_domain(...)` serialised as pretty-printed XML text, ready for `defineXML`."""
    return etree.tostring(build_domain(vm, ctx, devices), encoding="unicode", pretty_print=True)


def ovmf_code_file(vm: VMRecord, ctx: DomainContext) -> str:
    """Return the OVMF code file name the loader uses: `bootloader_ovmf`, or a secure-boot build."""
    if vm.enable_secure_boot and not _is_secure_boot_build(vm.bootloader_ovmf):
        return ctx.secure_boot_code
    return vm.bootloader_ovmf


def ovmf_vars_file(code_file: str) -> str | None:
    """Return the name of the VARS template matching an OVMF code file, or None for unknown names."""
    match = _OVMF_CODE.fullmatch(code_file)
    if match is None:
        return None
    size, variant = match["size"] or "", match["variant"]
    if variant == ".snakeoil":
        suffix = ".snakeoil"
    elif variant is not None:
        # The Microsoft-keys VARS: secure boot is enrolled and on from the first boot.
        suffix = ".ms"
    else:
        suffix = ""
    return f"OVMF_VARS{size}{suffix}.fd"


def _is_secure_boot_build(code_file: str) -> bool:
    match = _OVMF_CODE.fullmatch(code_file)
    return match is not None and match["variant"] is not None


def _add_metadata(root: etree._Element, vm: VMRecord, instance: str) -> None:
    # Which daemon instance defined the domain, and for which row: what start-up reconciliation reads.
    metadata = sub(root, "metadata")
    etree.SubElement(metadata, f"{{{METADATA_NS}}}owner", {"instance": instance, "vm": str(vm.id)},
                     nsmap={METADATA_PREFIX: METADATA_NS})


def _add_memory(root: etree._Element, vm: VMRecord) -> None:
    kib = str(vm.memory * 1024)
    sub(root, "memory", kib, unit="KiB")
    if vm.min_memory is not None:
        # The guest boots with all of `memory`; the XML only allows ballooning. Shrinking towards
        # `min_memory` is a run-time call, virDomainSetMemoryFlags(..., LIVE), made when the host
        # runs short (vm.start with overcommit counts only `min_memory` as needed). The balloon's
        # autodeflate hands pages back to the guest before its OOM killer would fire.
        sub(root, "currentMemory", kib, unit="KiB")


def _add_vcpus(root: etree._Element, vm: VMRecord) -> None:
    vcpu = sub(root, "vcpu", str(vm.total_vcpus))
    if vm.cpuset:
        vcpu.set("cpuset", vm.cpuset)
        if vm.pin_vcpus:
            # One vCPU per host CPU, in the order the cpuset lists them (validation ensures the
            # counts match).
            cputune = sub(root, "cputune")
            for index, cpu in zip(range(vm.total_vcpus), parse_cpuset(vm.cpuset)):
                sub(cputune, "vcpupin", vcpu=str(index), cpuset=str(cpu))
    if vm.nodeset:
        numatune = sub(root, "numatune")
        sub(numatune, "memory", nodeset=vm.nodeset)


def _os(vm: VMRecord, ctx: DomainContext) -> etree._Element:
    os_el = etree.Element("os")
    sub(os_el, "type", "hvm", arch=vm.arch_type or DEFAULT_ARCH,
        machine=vm.machine_type or DEFAULT_MACHINE)
    if vm.bootloader is Bootloader.UEFI:
        sub(os_el, "loader", f"{ctx.ovmf_dir}/{ovmf_code_file(vm, ctx)}", readonly="yes",
            type="pflash", secure="yes" if vm.enable_secure_boot else "no")
        nvram = sub(os_el, "nvram", ctx.nvram_path)
        if ctx.nvram_template:
            nvram.set("template", ctx.nvram_template)
    # UEFI_CSM: no <loader>, so libvirt boots QEMU's default SeaBIOS.
    return os_el


def _hyperv(vm: VMRecord, ctx: DomainContext) -> bool:
    # Hyper-V enlightenments are KVM paravirtual interfaces: under TCG QEMU refuses to start
    # ("kernel doesn't allow setting HyperV VP_INDEX"), so they are dropped there.
    return vm.hyperv_enlightenments and ctx.domain_type is DomainType.KVM


def _features(vm: VMRecord, ctx: DomainContext) -> etree._Element:
    features = etree.Element("features")
    # OVMF needs ACPI tables, and ACPI shutdown is how `vm.stop` asks the guest to power off.
    sub(features, "acpi")
    sub(features, "apic")
    if _hyperv(vm, ctx):
        hyperv = sub(features, "hyperv")
        on(hyperv, *_HYPERV_FEATURES)
        # Retries before a spinning vCPU notifies the hypervisor; 8191 is Microsoft's advice.
        sub(hyperv, "spinlocks", state="on", retries="8191")
    if vm.hide_from_msr:
        # Hides the KVM signature from CPUID so guest drivers (e.g. NVIDIA's) do not refuse to load.
        on(sub(features, "kvm"), "hidden")
    if vm.enable_secure_boot:
        # A secure-boot OVMF keeps its variable store in SMM-protected flash; QEMU refuses to
        # start it without SMM (https://libvirt.org/formatdomain.html#bios-bootloader).
        on(features, "smm")
    return features


def _cpu(vm: VMRecord, ctx: DomainContext) -> etree._Element:
    mode = vm.cpu_mode.lower()
    if vm.cpu_mode is CpuMode.HOST_PASSTHROUGH and ctx.domain_type is DomainType.QEMU:
        # TCG has no host CPU to pass through (libvirt: "CPU mode 'host-passthrough' ... is not
        # supported by hypervisor"); 'maximum' is its nearest: every feature TCG can emulate.
        mode = "maximum"
    cpu = etree.Element("cpu", mode=mode)
    model = vm.cpu_model if vm.cpu_mode is CpuMode.CUSTOM else None
    if model:
        # forbid: fail to start rather than silently run on a CPU lacking the model's features.
        sub(cpu, "model", model, fallback="forbid")
    sub(cpu, "topology", sockets=str(vm.vcpus), cores=str(vm.cores), threads=str(vm.threads))
    if mode == "host-passthrough":
        sub(cpu, "cache", mode="passthrough")
    # libvirt rejects <feature> in custom mode without a <model> ("Non-empty feature list specified
    # without CPU model"), so topoext needs a model or a host-* mode.
    if vm.enable_cpu_topology_extension and (model or vm.cpu_mode is not CpuMode.CUSTOM):
        # AMD only: lets the guest see SMT threads as siblings instead of separate cores.
        sub(cpu, "feature", policy="require", name="topoext")
    return cpu


def _clock(vm: VMRecord, ctx: DomainContext) -> etree._Element:
    clock = etree.Element("clock", offset="utc" if vm.time is ClockTime.UTC else "localtime")
    if _hyperv(vm, ctx):
        # Hyper-V reference TSC page: a cheap, stable clock source for Windows.
        sub(clock, "timer", name="hypervclock", present="yes")
    return clock


def _devices(
    vm: VMRecord, ctx: DomainContext, given: Sequence[etree._Element],
) -> etree._Element:
    devices = etree.Element("devices")
    sub(devices, "emulator", ctx.emulator)
    # Always present so `virsh console` (vm.get_console) works; virtlogd tees it into the log file.
    serial = sub(devices, "serial", type="pty")
    if ctx.serial_log_path:
        sub(serial, "log", file=ctx.serial_log_path, append="on")
    # libvirt picks the socket path and adds the virtio-serial controller itself.
    channel = sub(devices, "channel", type="unix")
    sub(channel, "target", type="virtio", name="org.qemu.guest_agent.0")
    if vm.trusted_platform_module:
        # swtpm emulator; libvirt keeps its state under /var/lib/libvirt/swtpm/<uuid> and deletes it
        # on undefine unless VIR_DOMAIN_UNDEFINE_KEEP_TPM is passed.
        tpm = sub(devices, "tpm", model="tpm-crb")
        sub(tpm, "backend", type="emulator", version="2.0")
    if vm.min_memory is not None:
        sub(devices, "memballoon", model="virtio", autodeflate="on")
    for element in given:
        # Copied so the caller's elements are not moved out of their own tree (lxml re-parents).
        devices.append(copy.deepcopy(element))
    if vm.ensure_display_device and not any(el.tag in ("graphics", "video") for el in given):
        # Guests such as Windows misbehave without a display adapter even when headless.
        video = sub(devices, "video")
        sub(video, "model", type="qxl")
    return devices


def _add_commandline(root: etree._Element, args: str) -> None:
    # Extra QEMU arguments, passed through by libvirt untouched
    # (https://libvirt.org/drvqemu.html#pass-through-of-arbitrary-qemu-commands).
    tokens = shlex.split(args)
    if tokens:
        commandline = sub(root, f"{{{QEMU_NS}}}commandline")
        for token in tokens:
            sub(commandline, f"{{{QEMU_NS}}}arg", value=token)
