"""Build the e2e test guest: a tiny UEFI-bootable ISO made only from Debian packages, cached by content hash.

The guest is a Debian kernel and busybox-static in an initramfs, packed with systemd's EFI stub into one
unified kernel image (UKI) on an El Torito EFI boot image, with Debian's QEMU guest agent. Its init (rootfs/)
prints `GUEST-DISK`, `GUEST-NIC` and `GUEST-READY` lines on the serial console, runs the agent, and powers off on
an ACPI power-button press.

    python -m tests.guest.build [--cache-dir DIR] [--force]    # prints the ISO's path

The cache key hashes this directory's files and the exact versions of the Debian packages used, so the
image is rebuilt when either changes; a lock file keeps parallel callers from building it twice.
"""
from __future__ import annotations

import argparse
import fcntl
import hashlib
import io
import lzma
import os
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

HERE = Path(__file__).resolve().parent
ROOTFS = HERE / "rootfs"
CACHE_ENV = "MIDDLEWARED_GUEST_CACHE"
KEEP_IMAGES = 3
KERNEL_META = "linux-image-amd64"
# The QEMU guest agent (a dynamically linked program) and the packages of the shared libraries it loads; only
# the files its ELF headers name are copied (agent_files), so this list just has to cover them.
AGENT_PACKAGES = ("qemu-guest-agent", "libc6", "libglib2.0-0", "libnuma1", "libudev1", "liburing2", "libpcre2-8-0")
AGENT = "usr/sbin/qemu-ga"
LIB_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu")
PACKAGES = ("busybox-static", "systemd-boot-efi", *AGENT_PACKAGES)
HOST_TOOLS = ("apt-get", "dpkg-deb", "depmod", "modprobe", "objcopy", "objdump", "readelf", "mkfs.vfat", "mmd",
              "mcopy", "xorriso")
EFI_STUB = "usr/lib/systemd/boot/efi/linuxx64.efi.stub"
# console=ttyS0 must be the last console=: it becomes /dev/console, init's stdio.
CMDLINE = "console=ttyS0,115200n8 quiet"
# Drivers the guest loads (all =m in Debian's kernel) only to see its power button, disks and NICs: the
# userspace lives in the initramfs and never mounts the medium. Storage class drivers come before the
# host adapters so disks are probed as the adapters register. xhci_pci drives libvirt's USB controllers
# nec-xhci and qemu-xhci, which USB disks (usb_storage) are plugged into. virtio_console gives the guest agent
# its virtio-serial port.
MODULES = ("button", "evdev", "virtio_pci", "virtio_blk", "virtio_net", "virtio_console", "e1000", "e1000e",
           "sd_mod", "sr_mod", "isofs", "usb_storage", "ahci", "xhci_pci")
# Module parameters by module name, given to insmod (which, unlike modprobe, reads none from the kernel
# command line). usb-storage would wait a second (delay_use) before scanning each new device, and the guest's
# boot waits for its USB disks.
MODULE_OPTIONS = {"usb_storage": "delay_use=0"}
VOLUME_ID = "MWGUEST"

Log = Callable[[str], None]


@dataclass(frozen=True)
class Package:
    """A Debian binary package at an exact version."""

    name: str
    version: str

    def __str__(self) -> str:
        return f"{self.name}={self.version}"


def run(*args: str, cwd: Path | None = None) -> str:
    """Run a host tool; its stdout, or RuntimeError with everything it printed."""
    done = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited with {done.returncode}:\n{done.stdout}{done.stderr}")
    return done.stdout


# -- inputs and cache key -------------------------------------------------------------------------
def _candidate(name: str) -> tuple[str, str]:
    """(Version, Depends) of the package apt would install."""
    try:
        out = run("apt-cache", "show", "--no-all-versions", name)
    except RuntimeError:
        out = ""
    fields = dict(re.findall(r"^(Version|Depends): (.*)$", out, re.M))
    if "Version" not in fields:
        raise RuntimeError(f"apt knows no package {name}: run apt-get update")
    return fields["Version"], fields.get("Depends", "")


def resolve_packages() -> list[Package]:
    """The exact packages: the kernel the linux-image-amd64 metapackage points at, busybox, the EFI stub, the
    guest agent and its libraries."""
    _, depends = _candidate(KERNEL_META)
    match = re.match(r"(linux-image-[^\s,]+)", depends)
    if match is None:
        raise RuntimeError(f"cannot find the kernel package in {KERNEL_META}'s Depends: {depends!r}")
    names = (match[1], *PACKAGES)
    return [Package(name, _candidate(name)[0]) for name in names]


def builder_files() -> list[Path]:
    """Every file of the builder (this module and rootfs/), in a stable order."""
    return sorted(p for p in HERE.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def cache_key(packages: list[Package]) -> str:
    """Hash of the builder's files and the package versions."""
    h = hashlib.sha256()
    for path in builder_files():
        h.update(str(path.relative_to(HERE)).encode() + b"\0" + path.read_bytes() + b"\0")
    for package in packages:
        h.update(f"{package}\n".encode())
    return h.hexdigest()[:16]


def default_cache_dir() -> Path:
    """$MIDDLEWARED_GUEST_CACHE, else /var/cache/middlewared-tests/guest as root, else ~/.cache."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    if os.geteuid() == 0:
        return Path("/var/cache/middlewared-tests/guest")
    return Path.home() / ".cache" / "middlewared-guest"


# -- the initramfs --------------------------------------------------------------------------------
class Cpio:
    """An in-memory cpio archive in the kernel's "newc" format, with fixed owners and times; parent directories
    are added on first use."""

    def __init__(self) -> None:
        self._out = io.BytesIO()
        self._ino = 0
        self._dirs: set[str] = set()

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        parent = name.rpartition("/")[0]
        if parent and parent not in self._dirs:
            self.directory(parent)
        self._ino += 1
        fields = (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(name) + 1, 0)
        self._out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + name.encode() + b"\0")
        self._pad()
        self._out.write(data)
        self._pad()

    def _pad(self) -> None:
        self._out.write(b"\0" * (-self._out.tell() % 4))

    def directory(self, name: str) -> None:
        if name not in self._dirs:
            self._dirs.add(name)
            self._entry(name, 0o040755)

    def file(self, name: str, data: bytes, executable: bool = False) -> None:
        self._entry(name, 0o100755 if executable else 0o100644, data)

    def symlink(self, name: str, target: str) -> None:
        self._entry(name, 0o120777, target.encode())

    def char_device(self, name: str, major: int, minor: int) -> None:
        self._entry(name, 0o020600, rdev=(major, minor))

    def finish(self) -> bytes:
        self._entry("TRAILER!!!", 0)
        return self._out.getvalue()


def module_paths(kernel_root: Path, kver: str) -> list[str]:
    """The .ko files of MODULES and their dependencies, in load order, relative to lib/modules/KVER."""
    run("depmod", "-b", str(kernel_root), kver)
    base = kernel_root / "lib" / "modules" / kver
    ordered: list[str] = []
    for module in MODULES:
        shown = run("modprobe", "-d", str(kernel_root), "-S", kver, "--show-depends", module)
        for line in shown.splitlines():
            if line.startswith("insmod "):
                rel = str(Path(line.split()[1]).relative_to(base))
                # Soft dependencies bring CPU-specific crypto (crct10dif-pclmul) that TCG's CPU model
                # may lack; the generic implementation beside it suffices.
                if rel not in ordered and not rel.startswith("kernel/arch/"):
                    ordered.append(rel)
    return ordered


def module_line(rel: str) -> str:
    """A line of the guest's /etc/modules: the .ko path and the module's parameters, if any."""
    name = Path(rel).name.partition(".")[0].replace("-", "_")
    return f"{rel} {MODULE_OPTIONS[name]}" if name in MODULE_OPTIONS else rel


def _in_root(root: Path, path: Path) -> Path:
    """path with its symbolic links followed inside root (an absolute link target means one under root)."""
    for _ in range(40):
        if not path.is_symlink():
            return path
        target = os.readlink(path)
        path = root / target.lstrip("/") if target.startswith("/") else path.parent / target
    raise RuntimeError(f"too many symbolic links at {path}")


def _find_library(root: Path, soname: str) -> Path:
    for lib_dir in LIB_DIRS:
        path = _in_root(root, root / lib_dir / soname)
        if path.is_file():
            return path
    raise RuntimeError(f"no {soname} in the agent's packages: add its package to AGENT_PACKAGES")


def agent_files(root: Path) -> dict[str, bytes]:
    """The guest agent, its dynamic loader and exactly the shared libraries it needs, transitively (the NEEDED
    entries of each ELF file), by their path in the guest; root holds the unpacked AGENT_PACKAGES."""
    interp = re.search(r"program interpreter: (/\S+)\]", run("readelf", "-l", str(root / AGENT)))
    if interp is None:
        raise RuntimeError(f"{AGENT} names no program interpreter")
    # The loader's path is compiled into the program; the libraries go in a directory glibc searches by default.
    files = {AGENT: (root / AGENT).read_bytes(), interp[1].lstrip("/"): _find_library(root, Path(interp[1]).name)
             .read_bytes()}
    pending, seen = [root / AGENT], {Path(interp[1]).name}
    while pending:
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", run("readelf", "-d", str(pending.pop())))
        for soname in needed:
            if soname not in seen:
                seen.add(soname)
                path = _find_library(root, soname)
                files[f"{LIB_DIRS[0]}/{soname}"] = path.read_bytes()
                pending.append(path)
    return files


def initramfs(kernel_root: Path, kver: str, busybox: Path, agent: dict[str, bytes]) -> bytes:
    """The xz-compressed initramfs: busybox and its applet links, the guest agent, the rootfs/ files, the
    drivers."""
    archive = Cpio()
    for name in ("dev", "proc", "sys", "run", "tmp", "root"):
        archive.directory(name)
    archive.char_device("dev/console", 5, 1)
    archive.file("bin/busybox", busybox.read_bytes(), executable=True)
    archive.symlink("init", "/bin/busybox")
    for applet in sorted(set(run(str(busybox), "--list-full").split()) - {"bin/busybox"}):
        archive.symlink(applet, "/bin/busybox")
    for name, data in sorted(agent.items()):
        archive.file(name, data, executable=True)
    for path in sorted(p for p in ROOTFS.rglob("*") if p.is_file()):
        data = path.read_bytes()
        archive.file(str(path.relative_to(ROOTFS)), data, executable=data.startswith(b"#!"))
    modules = module_paths(kernel_root, kver)
    for rel in modules:
        archive.file(f"lib/modules/{rel}", (kernel_root / "lib" / "modules" / kver / rel).read_bytes())
    archive.file("etc/modules", "".join(f"{module_line(rel)}\n" for rel in modules).encode())
    # The kernel's xz decoder knows only CRC32 checks (and no BCJ filters: plain LZMA2 is the default).
    return lzma.compress(archive.finish(), format=lzma.FORMAT_XZ, check=lzma.CHECK_CRC32, preset=9)


# -- the boot image -------------------------------------------------------------------------------
def _section_end(stub: Path) -> int:
    """The first page-aligned address after the stub's last section (its VMAs include ImageBase)."""
    headers = run("objdump", "-h", str(stub))
    ends = [int(vma, 16) + int(size, 16)
            for size, vma in re.findall(r"^\s*\d+\s+\S+\s+([0-9a-f]+)\s+([0-9a-f]+)\s", headers, re.M)]
    return _page(max(ends))


def _page(n: int) -> int:
    return (n + 0xFFF) & ~0xFFF


def unified_kernel_image(stub: Path, sections: dict[str, Path], out: Path) -> None:
    """Append sections to systemd's EFI stub, each page-aligned after the last, as ukify does (bookworm's
    systemd 252 ships no ukify). The stub boots .linux with .initrd and .cmdline."""
    args, address = ["objcopy"], _section_end(stub)
    for name, path in sections.items():
        args += ["--add-section", f"{name}={path}", "--change-section-vma", f"{name}={address:#x}"]
        address = _page(address + path.stat().st_size)
    run(*args, str(stub), str(out))


def efi_iso(uki: Path, work: Path, out: Path) -> None:
    """An ISO whose El Torito EFI image, also GPT partition 2 (EFI System), holds \\EFI\\BOOT\\BOOTX64.EFI."""
    fat = work / "efiboot.img"
    size_kib = uki.stat().st_size // 1024 + 1024
    run("mkfs.vfat", "-C", "-n", "MWGUESTEFI", str(fat), str(size_kib))
    run("mmd", "-i", str(fat), "::/EFI", "::/EFI/BOOT")
    run("mcopy", "-i", str(fat), str(uki), "::/EFI/BOOT/BOOTX64.EFI")
    tree = work / "iso"
    tree.mkdir()
    (tree / "README.TXT").write_text("middlewared e2e test guest; built by tests/guest/build.py\n")
    run("xorriso", "-as", "mkisofs", "-o", str(out), "-V", VOLUME_ID, "-append_partition", "2", "0xef", str(fat),
        "-appended_part_as_gpt", "-e", "--interval:appended_partition_2:all::", "-no-emul-boot", str(tree))


# -- putting it together --------------------------------------------------------------------------
def download(packages: list[Package], dest: Path) -> dict[str, Path]:
    """apt-get download each package into dest; name -> .deb."""
    options = ["-o", "APT::Sandbox::User=root"] if os.geteuid() == 0 else []
    run("apt-get", "download", "-q", *options, *map(str, packages), cwd=dest)
    return {p.name: next(dest.glob(f"{p.name}_*.deb")) for p in packages}


def build(packages: list[Package], out: Path, log: Log) -> None:
    """Build the ISO at out from the given packages (in a temporary work directory)."""
    missing = [tool for tool in HOST_TOOLS if shutil.which(tool) is None]
    if missing:
        raise RuntimeError(f"missing host tools {' '.join(missing)}: run make apt")
    kernel, busybox, boot = packages[:3]
    kver = kernel.name.removeprefix("linux-image-")
    with tempfile.TemporaryDirectory(prefix="guest-build-", dir=out.parent) as tmp:
        work = Path(tmp)
        log(f"downloading {' '.join(map(str, packages))}")
        debs = download(packages, work)
        roots = {package.name: work / package.name for package in packages}
        # The agent's packages unpack into one tree, as they would install.
        roots |= {name: work / "agent" for name in AGENT_PACKAGES}
        for name, deb in debs.items():
            run("dpkg-deb", "-x", str(deb), str(roots[name]))
        log("packing the initramfs")
        agent = agent_files(work / "agent")
        (work / "initrd").write_bytes(initramfs(roots[kernel.name], kver, roots[busybox.name] / "bin" / "busybox",
                                                agent))
        (work / "cmdline").write_text(CMDLINE + "\n")
        sections = {".osrel": ROOTFS / "etc" / "os-release", ".cmdline": work / "cmdline",
                    ".linux": roots[kernel.name] / "boot" / f"vmlinuz-{kver}", ".initrd": work / "initrd"}
        log("making the unified kernel image and the ISO")
        unified_kernel_image(roots[boot.name] / EFI_STUB, sections, work / "BOOTX64.EFI")
        efi_iso(work / "BOOTX64.EFI", work, work / "guest.iso")
        os.replace(work / "guest.iso", out)


def _prune(cache: Path, keep: Path) -> None:
    """Keep the newest KEEP_IMAGES images (builder edits would otherwise pile them up)."""
    images = sorted(cache.glob("guest-*.iso"), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in images[KEEP_IMAGES:]:
        if old != keep:
            old.unlink(missing_ok=True)


def guest_iso(cache_dir: Path | None = None, *, force: bool = False, log: Log = lambda _: None) -> Path:
    """The guest ISO for the current builder and packages, built on first use and cached."""
    cache = cache_dir or default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    packages = resolve_packages()
    iso = cache / f"guest-{cache_key(packages)}.iso"
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if force or not iso.exists():
            # Work directories left by a builder that was killed (the lock says none is running).
            for stale in cache.glob("guest-build-*"):
                shutil.rmtree(stale, ignore_errors=True)
            log(f"building {iso}")
            build(packages, iso, log)
            _prune(cache, iso)
    return iso


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.guest.build", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache-dir", type=Path, default=None, help="where images are kept")
    parser.add_argument("--force", action="store_true", help="rebuild even when cached")
    args = parser.parse_args(argv)
    iso = guest_iso(args.cache_dir, force=args.force, log=lambda m: print(m, file=sys.stderr, flush=True))
    print(iso)
    return 0


if __name__ == "__main__":
    sys.exit(main())
