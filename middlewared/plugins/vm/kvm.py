"""Whether /dev/kvm is really usable by QEMU, and the libvirt domain type that follows from it."""
from __future__ import annotations

import asyncio
import os
import pwd
import re
import selectors
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Callable

DEFAULT_QEMU = "/usr/bin/qemu-system-x86_64"
KVM_DEVICE = "/dev/kvm"
QEMU_CONF = "/etc/libvirt/qemu.conf"
DEFAULT_QEMU_USER = "libvirt-qemu"  # Debian's build default for qemu.conf `user`
NO_KVM = "Your CPU does not support KVM extensions"  # upstream's vm.virtualization_details message

# A 16-bit guest run from the reset vector: the x87 and SSE instructions every firmware and kernel use,
# CPUID, "OK" on the serial port, then QEMU's isa-debug-exit port. A /dev/kvm that opens and creates VMs
# is not enough: on hosts whose KVM emulates guest kernel code in software (nested "kvm_pvm" here) its
# instruction emulator lacks x87/SSE, so KVM_RUN ends in KVM_EXIT_INTERNAL_ERROR (emulation failure) and
# QEMU pauses the guest and hangs instead of exiting. Port I/O alone still works there, so the payload
# must execute FPU and SSE code. Source (GNU as, .code16):
#   fwait; fninit; fld1; fstp %st(0)                 x87
#   mov %cr4,%eax; or $0x200,%eax; mov %eax,%cr4    CR4.OSFXSR, so SSE does not fault
#   xorps %xmm0,%xmm0; xor %eax,%eax; cpuid
#   mov $0x3f8,%dx; mov $'O',%al; out %al,%dx; mov $'K',%al; out %al,%dx
#   mov $0x10,%al; out %al,$0xf4; 1: hlt; jmp 1b
PAYLOAD = bytes.fromhex(
    "9bdbe3" "d9e8" "ddd8"
    "0f20e0" "660d00020000" "0f22e0"
    "0f57c0" "6631c0" "0fa2"
    "baf803" "b04f" "ee" "b04b" "ee"
    "b010" "e6f4" "f4" "ebfd"
)
ROM_SIZE = 0x10000  # QEMU maps a 64 KiB -bios image just below 4 GiB; CS:IP starts at F000:FFF0
RESET_VECTOR = 0xFFF0
MARKER = b"OK"
EXIT_PORT = 0xF4
EXIT_VALUE = 0x10
SUCCESS_STATUS = (EXIT_VALUE << 1) | 1  # isa-debug-exit ends QEMU with status (value << 1) | 1
# What QEMU prints when KVM_RUN fails; after either it pauses the guest rather than exiting.
FAILURES = (b"KVM internal error", b"KVM: entry failed")
REPORT_GRACE = 0.2  # seconds to keep reading after a failure so the whole report is in the message


@dataclass(frozen=True)
class KvmProbe:
    """The probe's verdict: KVM usable, or why not."""

    usable: bool
    error: str | None = None


@dataclass(frozen=True)
class RunAs:
    """The credentials libvirt's system instance gives QEMU."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]


def qemu_conf_user(conf_text: str) -> str:
    """The `user` of libvirt's qemu.conf (a name or +uid), or the build default when it is not set."""
    match = re.search(r'^\s*user\s*=\s*"([^"]+)"', conf_text, re.MULTILINE)
    return match.group(1) if match else DEFAULT_QEMU_USER


def run_as(user: str) -> RunAs | None:
    """Credentials for a qemu.conf user; None when we cannot switch (not root) or it is root or unknown."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwuid(int(user[1:])) if user.startswith("+") else pwd.getpwnam(user)
    except (KeyError, ValueError):
        return None
    if pw.pw_uid == 0:
        return None
    return RunAs(pw.pw_name, pw.pw_uid, pw.pw_gid, tuple(os.getgrouplist(pw.pw_name, pw.pw_gid)))


def libvirt_qemu_user(conf: str = QEMU_CONF) -> RunAs | None:
    """Who qemu:///system runs QEMU as, when that is another user than this process."""
    try:
        with open(conf, encoding="utf-8", errors="replace") as f:
            text = f.read()
    except OSError:
        text = ""
    return run_as(qemu_conf_user(text))


def probe_rom() -> bytes:
    """The 64 KiB firmware image: the payload at its start, a jump to it at the reset vector."""
    rom = bytearray(b"\xf4" * ROM_SIZE)  # hlt everywhere else
    rom[:len(PAYLOAD)] = PAYLOAD
    # jmp rel16 from the reset vector (next IP 0xFFF3) to offset 0, wrapping in the 64 KiB segment.
    rel = (0 - (RESET_VECTOR + 3)) & 0xFFFF
    rom[RESET_VECTOR:RESET_VECTOR + 3] = bytes([0xE9, rel & 0xFF, rel >> 8])
    return bytes(rom)


def guest_command(qemu: str, rom_path: str, accel: str = "kvm") -> list[str]:
    """The QEMU command line that runs the probe firmware with one accelerator."""
    return [qemu, "-accel", accel, "-machine", "q35", "-nodefaults", "-no-user-config", "-display", "none",
            "-no-reboot", "-m", "16", "-serial", "stdio", "-bios", rom_path,
            "-device", f"isa-debug-exit,iobase={EXIT_PORT:#x},iosize=0x01"]


def classify(status: int | None, stdout: bytes, stderr: bytes, timeout: float) -> KvmProbe:
    """The verdict from how the probe guest ended (status None: it was still running at the deadline)."""
    if status == SUCCESS_STATUS and MARKER in stdout:
        return KvmProbe(True)
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines()]
    lines = [line for line in lines if line and "warning:" not in line]
    failure = next((line for line in lines if line.encode().startswith(FAILURES)), None)
    if failure is not None:
        detail = " (emulation failure)" if b"emulation failure" in stderr else ""
        return KvmProbe(False, f"QEMU cannot run a guest with KVM: {failure}{detail}")
    if status is None:
        return KvmProbe(False, f"QEMU did not finish a trivial KVM guest within {timeout:g} s")
    reason = lines[-1] if lines else "no error message"
    return KvmProbe(False, f"QEMU with KVM exited with status {status}: {reason}")


def _collect(proc: subprocess.Popen[bytes], timeout: float) -> tuple[bytes, bytes, bool]:
    """Read stdout and stderr until both close, a KVM failure is reported, or the deadline; EOF flag."""
    assert proc.stdout is not None and proc.stderr is not None
    out_fd, err_fd = proc.stdout.fileno(), proc.stderr.fileno()
    out = {out_fd: bytearray(), err_fd: bytearray()}
    deadline = time.monotonic() + timeout
    failed = False
    with selectors.DefaultSelector() as sel:
        for fd in out:
            sel.register(fd, selectors.EVENT_READ)
        while sel.get_map() and (remaining := deadline - time.monotonic()) > 0:
            for key, _ in sel.select(remaining):
                chunk = os.read(key.fd, 65536)
                if chunk:
                    out[key.fd] += chunk
                else:
                    sel.unregister(key.fileobj)
            if not failed and any(f in out[err_fd] for f in FAILURES):
                failed = True
                deadline = min(deadline, time.monotonic() + REPORT_GRACE)
        eof = not sel.get_map()
    return bytes(out[out_fd]), bytes(out[err_fd]), eof


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()


def run_guest(qemu: str, accel: str, timeout: float,
              user: RunAs | None = None) -> tuple[int | None, bytes, bytes]:
    """Run the probe firmware (as user); return (exit status or None if still running, stdout, stderr)."""
    with tempfile.TemporaryDirectory(prefix="kvm-probe-") as tmp:
        rom_path = os.path.join(tmp, "probe.rom")
        with open(rom_path, "wb") as f:
            f.write(probe_rom())
        os.chmod(tmp, 0o755)  # readable by the QEMU user
        os.chmod(rom_path, 0o644)
        command = guest_command(qemu, rom_path, accel)
        # A failed guest makes QEMU hang; timeout(1) kills it even if this process dies meanwhile.
        wrapper = shutil.which("timeout")
        if wrapper:
            command = [wrapper, "-s", "KILL", f"{timeout + 1:g}", *command]
        # Its own process group, so one killpg reaches QEMU behind the wrapper.
        proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, start_new_session=True,
                                user=user.uid if user else None, group=user.gid if user else None,
                                extra_groups=user.groups if user else None)
        status: int | None = None
        try:
            stdout, stderr, eof = _collect(proc, timeout)
            if eof:
                try:
                    status = proc.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            _kill_group(proc)
            for pipe in (proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()
    return status, stdout, stderr


def probe_kvm(qemu: str = DEFAULT_QEMU, timeout: float = 5) -> KvmProbe:
    """Decide whether QEMU can really run a guest with KVM on this host (blocking, 0.1 to 0.3 s)."""
    if not os.path.exists(KVM_DEVICE):
        return KvmProbe(False, NO_KVM)
    if not os.access(qemu, os.X_OK):
        return KvmProbe(False, f"{qemu} is not an executable QEMU")
    # First as this process: a KVM that cannot run guests at all is the deeper fault to report. Then as the
    # user libvirt runs QEMU as, whom /dev/kvm's mode may exclude (0600 root here, so libvirt's QEMU fails
    # with "failed to initialize kvm: Permission denied").
    result = _probe_as(qemu, timeout, None)
    user = libvirt_qemu_user()
    if result.usable and user is not None:
        result = _probe_as(qemu, timeout, user)
    return result


def _probe_as(qemu: str, timeout: float, user: RunAs | None) -> KvmProbe:
    try:
        status, stdout, stderr = run_guest(qemu, "kvm", timeout, user)
    except OSError as e:
        return KvmProbe(False, f"Cannot run {qemu}: {e}")
    result = classify(status, stdout, stderr, timeout)
    if user is not None and not result.usable:
        return KvmProbe(False, f"As user {user.name}: {result.error}")
    return result


_cache: dict[str, KvmProbe] = {}
_cache_lock = threading.Lock()


def probe_kvm_once(qemu: str = DEFAULT_QEMU) -> KvmProbe:
    """probe_kvm run once per process; later calls answer from the cache (blocking the first time)."""
    # A thread lock, not an asyncio one: callers come from worker threads and, in tests, several loops.
    with _cache_lock:
        if qemu not in _cache:
            _cache[qemu] = probe_kvm(qemu)
        return _cache[qemu]


def host_fingerprint(qemu: str = DEFAULT_QEMU) -> str:
    """What the probe's verdict depends on: this boot, the kernel, the QEMU binary and /dev/kvm.

    A verdict stored with the same fingerprint can be reused, sparing the daemon a QEMU boot at start.
    """
    parts = [os.uname().release]
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            parts.append(f.read().strip())
    except OSError:
        parts.append("no-boot-id")
    for path in (qemu, "/dev/kvm"):
        try:
            st = os.stat(path)
            parts.append(f"{path}:{st.st_mtime_ns}:{st.st_size}:{st.st_rdev}:{st.st_mode:o}:{st.st_gid}")
        except OSError:
            parts.append(f"{path}:absent")
    return "|".join(parts)


def remember(probe: KvmProbe, qemu: str = DEFAULT_QEMU) -> None:
    """Seed the per-process cache with a verdict known to be current (from the database)."""
    with _cache_lock:
        _cache.setdefault(qemu, probe)


async def cached_probe_kvm(qemu: str = DEFAULT_QEMU) -> KvmProbe:
    """probe_kvm_once without blocking the event loop."""
    cached = _cache.get(qemu)
    if cached is not None:
        return cached
    return await asyncio.to_thread(probe_kvm_once, qemu)


def resolve_domain_type(setting: str, probe: Callable[[], KvmProbe] = probe_kvm_once) -> tuple[str, str | None]:
    """The libvirt domain type for the `[libvirt] domain_type` setting, and why KVM is not used (auto only)."""
    if setting in ("kvm", "qemu"):
        return setting, None
    if setting != "auto":
        raise ValueError(f"domain_type must be auto, kvm or qemu, not {setting!r}")
    result = probe()
    if result.usable:
        return "kvm", None
    return "qemu", f"KVM is not usable ({result.error}); guests run with QEMU TCG emulation"
