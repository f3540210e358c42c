"""The KVM probe: its firmware, how it reads QEMU's ending, and the domain type that follows."""
from __future__ import annotations

import os

import psutil
import pytest

from middlewared.plugins.vm import kvm
from middlewared.plugins.vm.kvm import KvmProbe, classify, probe_kvm, probe_rom, resolve_domain_type, run_guest

HAS_QEMU = os.access(kvm.DEFAULT_QEMU, os.X_OK)
needs_qemu = pytest.mark.skipif(not HAS_QEMU, reason="QEMU is not installed")

# What QEMU 7.2 printed on this kind of host (nested kvm_pvm) when the guest reached an x87 instruction.
PVM_STDERR = b"""qemu-system-x86_64: warning: host doesn't support requested feature: CPUID.01H:ECX.pni [bit 0]
KVM internal error. Suberror: 1
extra data[0]: 0x0000000000000001
extra data[1]: 0xd8dde8d9e3db9b0f
emulation failure
RAX=0000000000000000 RBX=0000000000000000 RCX=0000000000000000 RDX=0000000000000663
"""


def test_rom_is_64k_with_a_jump_from_the_reset_vector_to_the_payload() -> None:
    rom = probe_rom()
    assert len(rom) == 0x10000
    assert rom[:len(kvm.PAYLOAD)] == kvm.PAYLOAD
    assert rom[0xFFF0] == 0xE9  # jmp rel16
    rel = int.from_bytes(rom[0xFFF1:0xFFF3], "little")
    assert (0xFFF3 + rel) & 0xFFFF == 0


def test_payload_ends_in_the_exit_port() -> None:
    # mov $0x10,%al; out %al,$0xf4 -> QEMU exits with status (0x10 << 1) | 1.
    assert bytes([0xB0, kvm.EXIT_VALUE, 0xE6, kvm.EXIT_PORT]) in kvm.PAYLOAD
    assert kvm.SUCCESS_STATUS == 33


def test_success_needs_the_exit_status_and_the_marker() -> None:
    assert classify(33, b"OK", b"", 5) == KvmProbe(True)
    assert not classify(33, b"", b"", 5).usable
    assert not classify(0, b"OK", b"", 5).usable


def test_internal_error_is_reported_without_warnings_or_register_dump() -> None:
    probe = classify(None, b"", PVM_STDERR, 5)
    assert probe == KvmProbe(False, "QEMU cannot run a guest with KVM: KVM internal error. Suberror: 1 "
                                    "(emulation failure)")


def test_entry_failure_is_reported() -> None:
    probe = classify(None, b"", b"KVM: entry failed, hardware error 0x80000021\nEAX=00000000\n", 5)
    assert probe.error == "QEMU cannot run a guest with KVM: KVM: entry failed, hardware error 0x80000021"


def test_qemu_exiting_with_an_error_reports_its_last_line() -> None:
    stderr = b"Could not access KVM kernel module: Permission denied\n" \
             b"qemu-system-x86_64: -accel kvm: failed to initialize kvm: Permission denied\n"
    probe = classify(1, b"", stderr, 5)
    assert probe.error == ("QEMU with KVM exited with status 1: qemu-system-x86_64: -accel kvm: "
                           "failed to initialize kvm: Permission denied")


def test_a_guest_still_running_at_the_deadline_is_a_failure() -> None:
    assert classify(None, b"", b"", 2.5) == KvmProbe(False, "QEMU did not finish a trivial KVM guest within 2.5 s")


@needs_qemu
def test_the_probe_guest_itself_works_under_tcg() -> None:
    # So a failure under KVM is KVM's, not the payload's.
    status, stdout, stderr = run_guest(kvm.DEFAULT_QEMU, "tcg", 30)
    assert classify(status, stdout, stderr, 30) == KvmProbe(True), stderr


@needs_qemu
def test_probe_leaves_no_process_behind() -> None:
    before = {p.pid for p in psutil.Process().children(recursive=True)}
    probe = probe_kvm(timeout=3)
    assert probe.usable or probe.error
    assert {p.pid for p in psutil.Process().children(recursive=True)} <= before


@needs_qemu
@pytest.mark.skipif(not os.path.exists("/sys/module/kvm_pvm"), reason="only hosts whose KVM is kvm_pvm")
def test_kvm_pvm_is_found_unusable() -> None:
    # /dev/kvm opens and creates VMs here, but its emulator cannot run x87/SSE guest kernel code.
    probe = probe_kvm(timeout=3)
    assert not probe.usable
    assert probe.error is not None and "KVM internal error" in probe.error


def test_missing_qemu() -> None:
    probe = probe_kvm("/nonexistent/qemu-system-x86_64")
    assert not probe.usable and probe.error


def test_explicit_domain_types_do_not_probe() -> None:
    def fail() -> KvmProbe:
        raise AssertionError("probed")
    assert resolve_domain_type("kvm", fail) == ("kvm", None)
    assert resolve_domain_type("qemu", fail) == ("qemu", None)


def test_auto_follows_the_probe() -> None:
    assert resolve_domain_type("auto", lambda: KvmProbe(True)) == ("kvm", None)
    domain_type, reason = resolve_domain_type("auto", lambda: KvmProbe(False, "boom"))
    assert domain_type == "qemu"
    assert reason == "KVM is not usable (boom); guests run with QEMU TCG emulation"


def test_unknown_setting() -> None:
    with pytest.raises(ValueError):
        resolve_domain_type("xen")


@needs_qemu
async def test_cached_probe_runs_once() -> None:
    first = await kvm.cached_probe_kvm()
    assert await kvm.cached_probe_kvm() is first
    assert kvm.probe_kvm_once() is first


def test_qemu_conf_user() -> None:
    assert kvm.qemu_conf_user("") == "libvirt-qemu"
    assert kvm.qemu_conf_user('#user = "root"\n') == "libvirt-qemu"
    assert kvm.qemu_conf_user('group = "kvm"\n  user = "qemu"\n') == "qemu"
    assert kvm.qemu_conf_user('user = "+107"\n') == "+107"


def test_run_as_root_or_unknown_users_is_none() -> None:
    assert kvm.run_as("root") is None
    assert kvm.run_as("+0") is None
    assert kvm.run_as("no-such-user-here") is None


@needs_qemu
@pytest.mark.skipif(os.geteuid() != 0 or kvm.libvirt_qemu_user() is None, reason="needs root and libvirt's user")
def test_the_probe_guest_runs_as_libvirts_qemu_user() -> None:
    user = kvm.libvirt_qemu_user()
    assert user is not None and user.uid != 0
    status, stdout, stderr = run_guest(kvm.DEFAULT_QEMU, "tcg", 30, user)
    assert classify(status, stdout, stderr, 30) == KvmProbe(True), stderr
