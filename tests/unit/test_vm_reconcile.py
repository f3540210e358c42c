"""Start-up reconciliation's decisions (a pure plan), its listing of libvirt's domains (libvirt's test driver) and
its id bookkeeping in SQLite."""
from __future__ import annotations

import sqlite3

import libvirt

from middlewared.plugins.vm.domain_xml import METADATA_NS
from middlewared.plugins.vm.reconcile import Domain, list_domains, mark_ids_used, parse_owner, plan

ME, OTHER = "11111111-1111-4111-8111-111111111111", "22222222-2222-4222-8222-222222222222"


def test_orphan_of_this_instance_is_undefined_and_its_id_remembered() -> None:
    todo = plan(ME, [Domain("7_a", False, ME, 7), Domain("9_b", False, ME, 9)], {7: "7_a"})
    assert [d.name for d in todo.orphans] == ["9_b"] and todo.highest_orphan_id == 9
    assert todo.define == [] and todo.stale == [] and todo.left_alone == []


def test_other_instances_and_untagged_domains_are_left_alone() -> None:
    domains = [Domain("9_b", False, OTHER, 9), Domain("3_x", False), Domain("manual", True)]
    todo = plan(ME, domains, {})
    assert todo.orphans == [] and todo.stale == [] and todo.define == [] and todo.left_alone == []


def test_row_without_domain_or_with_untagged_domain_is_defined() -> None:
    todo = plan(ME, [Domain("2_old", False)], {1: "1_gone", 2: "2_old"})
    assert todo.define == [1, 2]


def test_row_whose_name_another_instance_holds_is_reported_not_redefined() -> None:
    todo = plan(ME, [Domain("4_x", False, OTHER, 4)], {4: "4_x"})
    assert todo.define == [] and todo.orphans == []
    assert todo.left_alone and OTHER in todo.left_alone[0]


def test_uncommitted_rename_is_undone() -> None:
    todo = plan(ME, [Domain("5_new", False, ME, 5)], {5: "5_old"})
    assert [d.name for d in todo.stale] == ["5_new"] and todo.define == [5] and todo.orphans == []


def test_running_orphan_is_reported_not_touched() -> None:
    todo = plan(ME, [Domain("6_live", True, ME, 6)], {})
    assert todo.orphans == [] and todo.left_alone == ["6_live: running, but no row names it"]


def test_parse_owner() -> None:
    assert parse_owner(f'<owner instance="{ME}" vm="3"/>') == (ME, 3)
    assert parse_owner('<owner instance="x"/>') is None
    assert parse_owner("<owner") is None


def test_mark_ids_used_only_raises_the_counter() -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.execute("CREATE TABLE vm_vm (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT)")
    mark_ids_used(db, 5)  # no insert has created vm_vm's counter yet
    db.execute("INSERT INTO vm_vm (name) VALUES ('a')")
    mark_ids_used(db, 3)
    db.execute("INSERT INTO vm_vm (name) VALUES ('b')")
    assert [r[0] for r in db.execute("SELECT id FROM vm_vm ORDER BY id")] == [6, 7]


def test_list_domains_reads_metadata_of_the_daemons_names_only() -> None:
    conn = libvirt.open("test:///default")
    owner = f'<metadata><m:owner xmlns:m="{METADATA_NS}" instance="{ME}" vm="7"/></metadata>'
    defined = []
    try:
        for name, extra in (("7_tagged", owner), ("8_untagged", ""), ("plain", owner)):
            defined.append(conn.defineXML(f"<domain type='test'><name>{name}</name><memory>8192</memory>"
                                          f"<os><type>hvm</type></os>{extra}</domain>"))
        defined[0].create()
        # The test driver's own "test" domain and "plain" are not named as the daemon names its domains.
        assert sorted(list_domains(conn), key=lambda d: d.name) == [
            Domain("7_tagged", True, ME, 7), Domain("8_untagged", False)]
    finally:
        for dom in defined:
            if dom.isActive():
                dom.destroy()
            dom.undefine()
        conn.close()
