"""When a process started, from /proc: the stat line's parsing, a fake /proc, and a real child process."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from middlewared.plugins.vm import process
from middlewared.plugins.vm.hypervisor import Hypervisor


def stat_line(comm: str, ticks: int) -> str:
    # Fields 3..52 of a real line; field 22 (the start time) is the 20th of them.
    fields = ["S"] + [str(i) for i in range(4, 22)] + [str(ticks)] + ["0"] * 30
    return f"4242 ({comm}) {' '.join(fields)}\n"


@pytest.mark.parametrize("comm", ["qemu-system-x86", "a b", "x) (y", ")"])
def test_start_ticks_counts_fields_after_the_command_name(comm: str) -> None:
    assert process.start_ticks(stat_line(comm, 123456)) == 123456


def test_started_at_adds_the_ticks_to_the_boot_time(tmp_path: Path) -> None:
    (tmp_path / "4242").mkdir()
    (tmp_path / "4242" / "stat").write_text(stat_line("qemu (1)", 50 * process.TICKS_PER_SECOND))
    assert process.started_at(4242, str(tmp_path)) == pytest.approx(process.boot_time() + 50, abs=0.05)


def test_started_at_is_none_for_a_missing_or_garbled_process(tmp_path: Path) -> None:
    assert process.started_at(4242, str(tmp_path)) is None
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "stat").write_text("7 (cut")
    assert process.started_at(7, str(tmp_path)) is None


def test_started_at_of_a_real_process_is_when_it_was_started() -> None:
    before = time.time()
    child = subprocess.Popen(["sleep", "30"])
    after = time.time()
    try:
        started = process.started_at(child.pid)
        assert started is not None
        # One clock tick of resolution, and the boot time is derived from two clocks read a moment apart.
        assert before - 0.05 <= started <= after + 0.05
    finally:
        child.kill()
        child.wait()
    assert process.started_at(child.pid) is None


def test_the_hypervisor_reads_a_process_once_and_again_after_a_state_change(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    monkeypatch.setattr("middlewared.plugins.vm.hypervisor.started_at", lambda pid: reads.append(pid) or 1000.0 + pid)
    monkeypatch.setattr("middlewared.plugins.vm.hypervisor._qemu_pid", lambda name: 5)
    hypervisor = Hypervisor("test:///default")
    hypervisor.states["1_vm"] = "RUNNING"
    assert hypervisor.status("1_vm").started_at == 1005.0
    assert hypervisor.status("1_vm").as_dict()["started_at"] == 1005.0
    assert reads == [5]
    hypervisor._notify("1_vm", "SHUTOFF")
    hypervisor.states["1_vm"] = "SHUTOFF"
    assert hypervisor.status("1_vm").as_dict() == {"state": "STOPPED", "pid": None, "domain_state": "SHUTOFF",
                                                   "started_at": None}
    hypervisor.states["1_vm"] = "RUNNING"
    monkeypatch.setattr("middlewared.plugins.vm.hypervisor._qemu_pid", lambda name: 6)
    assert hypervisor.status("1_vm").started_at == 1006.0
    assert reads == [5, 6]
