"""How a snapshot is taken, reverted and deleted, behind one small interface (blocking: run via Hypervisor.run).

libvirt 9.0 (Debian 12) refuses internal snapshots of domains with pflash firmware, which every UEFI VM has
("internal snapshots of a VM with pflash based firmware are not supported"; libvirt 10.10 lifts it), and cannot
revert external ones. `QcowInternalEngine` therefore does the parts itself with what 9.0 and QEMU 7.2 offer:

- disks: qcow2 internal snapshots, by QEMU (`blockdev-snapshot-internal-sync` in one QMP transaction, so every
  disk is taken at the same instant) while the guest runs, by `qemu-img snapshot` while it is stopped;
- RAM: libvirt's external memory snapshot (a save image) of the paused guest, its disks left alone;
- firmware variables: a copy of the NVRAM file.

A running guest is held for the instant of the disk snapshot (and the memory dump): its filesystems frozen
through the guest agent when it answers, else the VM paused. A revert stops QEMU, applies the qcow2 snapshots
and the NVRAM copy, and restores the save image. A libvirt with native pflash snapshots can replace this class.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol

import libvirt
import libvirt_qemu
from lxml import etree

from middlewared.errors import CallError
from middlewared.plugins.vm_device import qemu_img


@dataclass(frozen=True)
class Target:
    """What one snapshot covers: the domain, its qcow2 images, its NVRAM, and where its own files live."""

    domain: str
    tag: str
    disks: tuple[str, ...]
    nvram: str | None
    state_dir: str

    @property
    def memory_file(self) -> str:
        return os.path.join(self.state_dir, f"{self.tag}.mem")

    @property
    def nvram_copy(self) -> str:
        return os.path.join(self.state_dir, f"{self.tag}.nvram")


@dataclass
class Outcome:
    """What a snapshot operation did: lines for the job log, how long the guest was held, sizes."""

    log: list[str] = field(default_factory=list)
    held_ms: float | None = None
    memory_size: int = 0
    size: int = 0
    vm_state: str = "STOPPED"

    @contextlib.contextmanager
    def step(self, what: str) -> Iterator[None]:
        """Log how long a step took (the job log is where a slow snapshot is explained)."""
        began = time.monotonic()
        yield
        self.log.append(f"{what}: {(time.monotonic() - began) * 1000:.0f} ms")


class SnapshotEngine(Protocol):
    """Takes, reverts and deletes the snapshot of a Target (each call blocking, given a libvirt connection)."""

    def create(self, conn: libvirt.virConnect, target: Target, memory: bool) -> Outcome:
        """Take the snapshot (with the guest's RAM when memory and the domain runs)."""
        ...

    def revert(self, conn: libvirt.virConnect, target: Target, memory_state: str | None) -> Outcome:
        """Bring disks and NVRAM back to the snapshot, stopping a running domain; with a memory_state (RUNNING or
        SUSPENDED) restore the saved guest in that state."""
        ...

    def delete(self, conn: libvirt.virConnect, target: Target) -> Outcome:
        """Remove the snapshot's data from the disks and its files (other snapshots stay valid)."""
        ...


def _domain(conn: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError as e:
        if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return None
        raise


def _qmp(dom: libvirt.virDomain, command: str, arguments: dict[str, Any] | None = None) -> Any:
    message: dict[str, Any] = {"execute": command}
    if arguments:
        message["arguments"] = arguments
    reply = json.loads(libvirt_qemu.qemuMonitorCommand(dom, json.dumps(message), 0))
    if "error" in reply:
        raise CallError(f"QEMU refused {command}: {reply['error'].get('desc')}", errno.EIO)
    return reply.get("return")


def _nodes(dom: libvirt.virDomain, disks: tuple[str, ...]) -> dict[str, str]:
    """image path -> QEMU's qcow2 node name for it."""
    found = {os.path.realpath(n["file"]): n["node-name"] for n in _qmp(dom, "query-named-block-nodes", {"flat": True})
             if n.get("drv") == "qcow2"}
    missing = [d for d in disks if os.path.realpath(d) not in found]
    if missing:
        raise CallError(f"the running guest does not use {', '.join(missing)} as qcow2 images "
                        "(start it again after disk changes)", errno.EINVAL)
    return {d: found[os.path.realpath(d)] for d in disks}


def _file_size(path: str) -> int:
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _disk_bytes(disks: tuple[str, ...]) -> int:
    # What `qemu-img info` calls actual-size (the blocks the file takes), without starting a process per disk.
    return sum(os.stat(d).st_blocks * 512 for d in disks if os.path.exists(d))


class QcowInternalEngine:
    """qcow2 internal snapshots, a save image for RAM and an NVRAM copy, assembled by the daemon."""

    def create(self, conn: libvirt.virConnect, target: Target, memory: bool) -> Outcome:
        os.makedirs(target.state_dir, mode=0o700, exist_ok=True)
        dom = _domain(conn, target.domain)
        out = Outcome()
        try:
            if dom is not None and dom.isActive():
                self._create_live(dom, target, memory, out)
            else:
                if memory:
                    out.log.append("the VM is stopped: the snapshot holds its disks only")
                self._create_offline(target, out)
        except BaseException:
            self._remove_files(target)
            raise
        out.memory_size = _file_size(target.memory_file)
        out.size = out.memory_size + _file_size(target.nvram_copy) + _disk_bytes(target.disks)
        return out

    def _create_offline(self, target: Target, out: Outcome) -> None:
        made: list[str] = []
        try:
            for disk in target.disks:
                qemu_img.snapshot(disk, "-c", target.tag)
                made.append(disk)
        except BaseException:
            for disk in made:
                with contextlib.suppress(CallError):
                    qemu_img.snapshot(disk, "-d", target.tag)
            raise
        self._copy_nvram(target, out)
        out.log.append(f"took qcow2 snapshot {target.tag} of {len(made)} stopped disk(s) with qemu-img")

    def _create_live(self, dom: libvirt.virDomain, target: Target, memory: bool, out: Outcome) -> None:
        was_paused = dom.state()[0] == libvirt.VIR_DOMAIN_PAUSED
        out.vm_state = "SUSPENDED" if was_paused else "RUNNING"
        with out.step("block nodes found"):
            nodes = _nodes(dom, target.disks)
        # Prepared before the guest is held, which then lasts only as long as QEMU's own work.
        memory_xml = self._memory_snapshot_xml(dom, target) if memory else None
        began = time.monotonic()
        # A guest whose memory is saved must not run on meanwhile: only a disk-only snapshot may freeze instead.
        frozen = not memory and not was_paused and self._freeze(dom, out)
        paused = not frozen and not was_paused
        if paused:
            dom.suspend()
        try:
            if nodes:
                with out.step("disk snapshot"):
                    _qmp(dom, "transaction", {"actions": [
                        {"type": "blockdev-snapshot-internal-sync", "data": {"device": node, "name": target.tag}}
                        for node in nodes.values()]})
            self._copy_nvram(target, out)
            if memory_xml is not None:
                with out.step("RAM saved"):
                    dom.snapshotCreateXML(memory_xml, libvirt.VIR_DOMAIN_SNAPSHOT_CREATE_NO_METADATA)
        except BaseException:
            for node in nodes.values():
                with contextlib.suppress(CallError, libvirt.libvirtError):
                    _qmp(dom, "blockdev-snapshot-delete-internal-sync", {"device": node, "name": target.tag})
            raise
        finally:
            if frozen:
                dom.fsThaw()
            if paused:
                dom.resume()
        out.held_ms = (time.monotonic() - began) * 1000
        how = "filesystems frozen by the guest agent" if frozen else \
            "guest was already paused" if was_paused else "guest paused (no guest agent answered)"
        what = "disks and RAM" if memory else "disks"
        out.log.append(f"took snapshot {target.tag} of the {what} of the running VM ({len(nodes)} disk(s)); "
                       f"{how} for {out.held_ms:.0f} ms")

    @staticmethod
    def _freeze(dom: libvirt.virDomain, out: Outcome) -> bool:
        try:
            count = dom.fsFreeze()
        except libvirt.libvirtError as e:
            out.log.append(f"no filesystem freeze ({e.get_error_message()}): pausing the VM instead")
            return False
        # The agent freezes what it can (mounted filesystems on block devices); the count tells a guest with
        # none of those (only pseudo filesystems) from a real freeze.
        out.log.append(f"guest filesystems frozen through the QEMU guest agent: {count}")
        return True

    @staticmethod
    def _memory_snapshot_xml(dom: libvirt.virDomain, target: Target) -> str:
        # An external memory snapshot with every disk left out: QEMU migrates RAM and device state to a file
        # that virDomainRestore reads back. Taken after the disk snapshot, because the migration leaves the
        # block devices inactive until the guest resumes.
        snap = etree.Element("domainsnapshot")
        etree.SubElement(snap, "memory", snapshot="external", file=target.memory_file)
        disks = etree.SubElement(snap, "disks")
        for disk in etree.fromstring(dom.XMLDesc(0)).iterfind("devices/disk/target"):
            etree.SubElement(disks, "disk", name=str(disk.get("dev")), snapshot="no")
        return etree.tostring(snap, encoding="unicode")

    @staticmethod
    def _copy_nvram(target: Target, out: Outcome) -> None:
        if target.nvram and os.path.exists(target.nvram):
            shutil.copyfile(target.nvram, target.nvram_copy)

    def revert(self, conn: libvirt.virConnect, target: Target, memory_state: str | None) -> Outcome:
        out = Outcome()
        dom = _domain(conn, target.domain)
        if dom is not None and dom.isActive():
            with out.step("powered the running VM off"):
                dom.destroy()
        with out.step(f"disks and NVRAM put back to snapshot {target.tag}"):
            for disk in target.disks:
                if not os.path.exists(disk):
                    out.log.append(f"{disk} no longer exists: left out")
                elif target.tag not in qemu_img.snapshot_tags(disk):
                    out.log.append(f"{disk} has no snapshot {target.tag}: left as it is")
                else:
                    qemu_img.snapshot(disk, "-a", target.tag)
            if target.nvram and os.path.exists(target.nvram_copy):
                shutil.copyfile(target.nvram_copy, target.nvram)
        if memory_state:
            began = time.monotonic()
            xml = etree.fromstring(conn.saveImageGetXMLDesc(target.memory_file, 0))
            # The VM may have been renamed since: the saved guest comes back as today's domain.
            name = xml.find("name")
            if name is not None:
                name.text = target.domain
            # The image was written from a paused guest: say which state it comes back in.
            flags = libvirt.VIR_DOMAIN_SAVE_PAUSED if memory_state == "SUSPENDED" else libvirt.VIR_DOMAIN_SAVE_RUNNING
            conn.restoreFlags(target.memory_file, etree.tostring(xml, encoding="unicode"), flags)
            out.held_ms = (time.monotonic() - began) * 1000
            out.log.append(f"restored the saved guest in {out.held_ms:.0f} ms")
        return out

    def delete(self, conn: libvirt.virConnect, target: Target) -> Outcome:
        out = Outcome()
        dom = _domain(conn, target.domain)
        running = dom is not None and dom.isActive()
        disks = tuple(d for d in target.disks if os.path.exists(d) and target.tag in qemu_img.snapshot_tags(d))
        if running and disks:
            for disk, node in _nodes(dom, disks).items():
                _qmp(dom, "blockdev-snapshot-delete-internal-sync", {"device": node, "name": target.tag})
        else:
            for disk in disks:
                qemu_img.snapshot(disk, "-d", target.tag)
        self._remove_files(target)
        out.log.append(f"removed snapshot {target.tag} from {len(disks)} disk(s)")
        return out

    @staticmethod
    def _remove_files(target: Target) -> None:
        for path in (target.memory_file, target.nvram_copy):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
