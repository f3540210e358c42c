"""VM group quotas: a quota bounds its whole subtree, and no quota may exceed an ancestor's."""
from __future__ import annotations

import sqlite3

from middlewared.datastore import apply_migrations
from middlewared.datastore.migrations import MIGRATIONS
from middlewared.plugins.auth.quotas import Usage, above_parent, excess, problem

PARENTS = {1: None, 2: 1, 3: 2, 4: None}


def test_a_quota_bounds_the_subtree() -> None:
    quotas = {1: {"cpus": 4, "memory_mib": None}, 3: {"cpus": 2, "memory_mib": 512}}
    usage = {2: Usage(2, 256), 3: Usage(1, 128)}
    assert excess(PARENTS, quotas, usage, 3, Usage(1, 64)) is None          # 3 of 4, 2 of 2 in group 3
    assert "group 3" in str(excess(PARENTS, quotas, usage, 3, Usage(2, 64)))   # group 3's own quota
    assert "group 1" in str(excess(PARENTS, quotas, usage, 2, Usage(2, 0)))    # the ancestor's, subtree-wide
    assert "memory_mib" in str(excess(PARENTS, quotas, usage, 3, Usage(0, 400)))
    assert excess(PARENTS, quotas, usage, 4, Usage(99, 99999)) is None      # another branch: no quota


def test_no_quota_above_an_ancestors() -> None:
    quotas = {1: {"cpus": 4, "memory_mib": None}, 2: {"cpus": None, "memory_mib": 1024}}
    assert above_parent(PARENTS, quotas, 2, {"cpus": 4, "memory_mib": 1024}) is None
    assert "group 1" in str(above_parent(PARENTS, quotas, 2, {"cpus": 5}))
    assert "group 2" in str(above_parent(PARENTS, quotas, 2, {"memory_mib": 2048}))
    assert above_parent(PARENTS, quotas, None, {"cpus": 1000}) is None


def test_problem_reads_the_stored_vms_inside_a_transaction() -> None:
    db = sqlite3.connect(":memory:")
    apply_migrations(db, MIGRATIONS)
    db.execute("INSERT INTO vm_group (id, name, parent, quota_cpus) VALUES (1, 'a', NULL, 2)")
    columns = ("name, vcpus, cores, threads, memory, autostart, time, bootloader, bootloader_ovmf, cpu_mode,"
               " enable_cpu_topology_extension, pin_vcpus, hyperv_enlightenments, shutdown_timeout, hide_from_msr,"
               " ensure_display_device, suspend_on_snapshot, trusted_platform_module, enable_secure_boot, uuid")
    for vm_id, cpus in ((1, 1), (2, 1)):
        db.execute(f"INSERT INTO vm_vm (id, {columns}) VALUES (?, ?, ?, 1, 1, 64, 0, 'LOCAL', 'UEFI', 'x',"
                   " 'CUSTOM', 0, 0, 0, 90, 0, 1, 0, 0, 0, ?)", (vm_id, f"vm{vm_id}", cpus, f"u{vm_id}"))
        db.execute("INSERT INTO vm_group_member (vm, vm_group) VALUES (?, 1)", (vm_id,))
    assert problem(db, 1) is None
    assert "cpus quota of group 1 is 2" in str(problem(db, 1, Usage(1, 0)))
    assert problem(db, 1, Usage(1, 0), leaving=(2,)) is None                 # the VM being changed
