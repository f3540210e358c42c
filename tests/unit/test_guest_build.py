"""The test guest's pure parts: the ISO cache key, the drivers' parameters, the guest agent's files, and the parser
of what the guest prints."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.e2e.support import boots
from tests.guest import build

PACKAGES = [build.Package("linux-image-6.1.0-57-amd64", "6.1.192-3"), build.Package("busybox-static", "1:1.35.0-4"),
            build.Package("systemd-boot-efi", "252.39-1")]


@pytest.fixture
def builder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the builder (build.py and rootfs/) that cache_key reads instead of the real one."""
    copy = tmp_path / "guest"
    shutil.copytree(build.HERE, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(build, "HERE", copy)
    return copy


@pytest.mark.parametrize("change", ["rootfs file", "new rootfs file", "builder", "package"])
def test_cache_key_changes_with_the_builder_its_rootfs_and_the_packages(builder: Path, change: str) -> None:
    packages = list(PACKAGES)
    key = build.cache_key(packages)
    assert build.cache_key(list(PACKAGES)) == key
    if change == "rootfs file":
        rcs = builder / "rootfs" / "etc" / "init.d" / "rcS"
        rcs.write_text(rcs.read_text() + "\n")
    elif change == "new rootfs file":
        (builder / "rootfs" / "lib" / "extra.sh").write_text("true\n")
    elif change == "builder":
        (builder / "build.py").write_text((builder / "build.py").read_text() + "\n")
    else:
        packages[0] = build.Package(packages[0].name, "6.1.192-4")
    assert build.cache_key(packages) != key


def test_cache_key_ignores_bytecode(builder: Path) -> None:
    key = build.cache_key(PACKAGES)
    (builder / "__pycache__").mkdir(exist_ok=True)
    (builder / "__pycache__" / "build.cpython-311.pyc").write_bytes(b"\0")
    assert build.cache_key(PACKAGES) == key


def test_module_lines_carry_the_parameters_of_their_module() -> None:
    assert build.module_line("kernel/drivers/usb/storage/usb-storage.ko") == \
        "kernel/drivers/usb/storage/usb-storage.ko delay_use=0"
    assert build.module_line("kernel/drivers/usb/host/xhci-pci.ko") == "kernel/drivers/usb/host/xhci-pci.ko"


def test_disk_lines_are_parsed_with_their_bus_and_a_serial_with_blanks() -> None:
    (boot,) = boots("\x1b[2JBdsDxe: starting Boot0001\r\n"
                    "GUEST-DISK sda size=2097152 bus=usb serial=AB 12\r\n"
                    "GUEST-DISK sr0 size=11608064 bus=sata serial=\r\n"
                    "GUEST-DISK vda size=4096 serial=old\r\n"
                    "GUEST-READY uptime=4.36\r\n")
    assert boot.ready
    assert boot.disks == {"sda": {"size": "2097152", "bus": "usb", "serial": "AB 12"},
                          "sr0": {"size": "11608064", "bus": "sata", "serial": ""},
                          "vda": {"size": "4096", "serial": "old"}}
    assert boot.serials == {"AB 12", "old"}


HOST_LIBS = Path("/lib/x86_64-linux-gnu")


@pytest.fixture
def agent_root(tmp_path: Path) -> Path:
    """An unpacked-packages tree in the layout of Debian's: this host's ls as the agent (it needs libselinux,
    which needs libpcre2-8 and libc), its libraries, and /lib64's loader as an absolute link, as libc6 ships it."""
    if shutil.which("readelf") is None or not (HOST_LIBS / "libselinux.so.1").exists():
        pytest.skip("needs readelf and a Debian x86-64 host's /usr/bin/ls")
    root = tmp_path / "agent"
    (root / "usr" / "sbin").mkdir(parents=True)
    shutil.copy(shutil.which("ls") or "/usr/bin/ls", root / build.AGENT)
    libs = root / "lib" / "x86_64-linux-gnu"
    libs.mkdir(parents=True)
    for name in ("libselinux.so.1", "libpcre2-8.so.0", "libc.so.6", "ld-linux-x86-64.so.2"):
        shutil.copy(HOST_LIBS / name, libs / name)
    (root / "lib64").mkdir()
    (root / "lib64" / "ld-linux-x86-64.so.2").symlink_to("/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2")
    return root


def test_agent_files_are_the_program_its_loader_and_every_library_it_needs(agent_root: Path) -> None:
    files = build.agent_files(agent_root)
    libs = "lib/x86_64-linux-gnu"
    assert sorted(files) == sorted([build.AGENT, "lib64/ld-linux-x86-64.so.2", f"{libs}/libselinux.so.1",
                                    f"{libs}/libpcre2-8.so.0", f"{libs}/libc.so.6"])
    # The loader's absolute link was followed inside the tree, to the file itself.
    assert files["lib64/ld-linux-x86-64.so.2"] == (agent_root / libs / "ld-linux-x86-64.so.2").read_bytes()


def test_agent_files_name_a_library_no_package_has(agent_root: Path) -> None:
    (agent_root / "lib" / "x86_64-linux-gnu" / "libpcre2-8.so.0").unlink()
    with pytest.raises(RuntimeError, match="no libpcre2-8.so.0 in the agent's packages"):
        build.agent_files(agent_root)
