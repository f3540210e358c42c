"""midclt tables and CSV: default columns per method, dotted -c paths, 120-character fit, times."""
from __future__ import annotations

import csv
import io
from typing import Any

import pytest

from midclt.output import format_result, render
from midclt.table import TABLE_WIDTH, cell, headers, lookup, parse_columns, table


def vm(ident: int, name: str, state: str = "STOPPED", **fields: Any) -> dict[str, Any]:
    """A vm.query row with every field the daemon sends (the table must not show them all)."""
    return {"id": ident, "name": name, "description": "x" * 60, "vcpus": 2, "cores": 1, "threads": 1, "memory": 512,
            "min_memory": None, "autostart": False, "time": "LOCAL", "bootloader": "UEFI",
            "bootloader_ovmf": "OVMF_CODE.fd", "cpu_mode": "CUSTOM", "shutdown_timeout": 90,
            "uuid": "76e46349-5c50-4a69-ab30-0b467c2976cc", "command_line_args": "",
            "devices": [{"id": 7, "attributes": {"dtype": "DISPLAY", "type": "SPICE"}}],
            "status": {"state": state, "pid": None, "domain_state": "SHUTOFF"}, **fields}


def test_vm_query_default_columns() -> None:
    rows = [vm(1, "demo", "RUNNING"), vm(12, "a-longer-name", autostart=True)]
    assert format_result(rows, "table", "vm.query").splitlines() == [
        "id  name           state    vcpus  memory  autostart",
        "1   demo           RUNNING  2      512     false",
        "12  a-longer-name  STOPPED  2      512     true",
    ]


def test_default_columns_follow_select() -> None:
    # `{"select": ["name", "status"]}` leaves only some of the usual columns.
    rows = [{"name": "demo", "status": {"state": "RUNNING"}}]
    assert format_result(rows, "table", "vm.query").splitlines() == ["name  state", "demo  RUNNING"]
    assert format_result([{"x": 1}], "table", "vm.query").splitlines() == ["x", "1"]  # none of them: all fields


def test_dotted_columns() -> None:
    rows = [vm(1, "demo")]
    columns = parse_columns("name,status.state, status.domain_state,devices.0.attributes.dtype,nothing.here")
    assert format_result(rows, "table", "vm.query", columns).splitlines() == [
        "name  state    domain_state  dtype    here",
        "demo  STOPPED  SHUTOFF       DISPLAY  null",
    ]
    assert lookup(rows[0], "devices.5.id") is None and lookup(rows[0], "name.x") is None
    assert headers(["a.id", "b.id", "name"]) == ["a.id", "b.id", "name"]  # ambiguous: the whole path
    with pytest.raises(ValueError, match="empty column"):
        parse_columns("id,,name")


def test_generic_table_fits_and_says_what_it_left_out() -> None:
    rows = [vm(1, "demo"), vm(2, "other")]
    text, notes = render(rows, "table", "not.a.known.method")
    assert max(len(line) for line in text.splitlines()) <= TABLE_WIDTH
    assert text.splitlines()[0].split()[:3] == ["id", "name", "description"]
    [note] = notes
    assert note.startswith("not shown: ") and "status.state" in note and "-c" in note


def test_chosen_columns_are_narrowed_not_dropped() -> None:
    rows = [{"a": "x" * 100, "b": "y" * 100, "c": 1}]
    text, notes = render(rows, "table", None, ["a", "b", "c"])
    header, line = text.splitlines()
    assert header.split() == ["a", "b", "c"] and notes == []
    assert len(line) <= TABLE_WIDTH and line.count("…") == 2 and line.endswith("  1")


def test_one_object_as_dotted_lines() -> None:
    text = format_result(vm(1, "demo"), "table")
    assert ["status.state", "STOPPED"] in [line.split() for line in text.splitlines()]
    assert max(len(line) for line in text.splitlines()) <= TABLE_WIDTH
    assert format_result(vm(1, "demo"), "table", None, ["name", "status.state"]).splitlines() == [
        "name          demo", "status.state  STOPPED"]


def test_times_and_cells() -> None:
    assert cell({"$date": 1796193995113}) == "2026-12-02 06:46:35Z"
    assert (cell(None), cell(True), cell("s"), cell([1, "a"])) == ("null", "true", "s", '[1, "a"]')
    rows = [{"audit_id": 1, "timestamp": {"$date": 0}, "username": "root", "event": "METHOD_CALL",
             "method": "vm.create", "params": [{"name": "demo"}], "success": True}]
    assert format_result(rows, "table", "audit.query").splitlines()[1].split() == [
        "1", "1970-01-01", "00:00:00Z", "root", "METHOD_CALL", "vm.create", "true"]


def test_csv() -> None:
    rows = [vm(1, "demo, the first", "RUNNING"), vm(2, "two", min_memory=None)]
    parsed = list(csv.reader(io.StringIO(format_result(rows, "csv", "vm.query"))))
    assert parsed == [["id", "name", "status.state", "vcpus", "memory", "autostart"],
                      ["1", "demo, the first", "RUNNING", "2", "512", "false"],
                      ["2", "two", "STOPPED", "2", "512", "false"]]
    long_text = format_result(rows, "csv", None, ["description", "min_memory"])
    assert long_text.splitlines() == ["description,min_memory", "x" * 60 + ",", "x" * 60 + ","]  # never cut
    assert format_result({"id": 1, "status": {"state": "RUNNING"}}, "csv").splitlines() == [
        "field,value", "id,1", "status.state,RUNNING"]
    assert format_result(["a", None], "csv") == 'a\n""'  # an empty field, not a blank line
    assert format_result("pong", "csv") == "pong"
    assert format_result([], "csv") == ""


def test_not_a_table() -> None:
    assert table([[1], {"a": 1}]) is None
    assert format_result([[1], {"a": 1}], "table") == '[[1], {"a": 1}]'
    assert format_result([], "table") == ""


def test_cells_with_line_breaks_and_long_scalars_keep_the_width() -> None:
    rendered, _ = table([{"id": 1, "error": "first line\nsecond\tline"}, {"id": 2, "error": "x"}])
    assert rendered.splitlines() == ["id  error", "1   first line\\nsecond line", "2   x"]
    rendered, _ = table({"reason": "a\nb"})
    assert rendered == "reason  a\\nb"
    rendered, _ = table(["y" * 300, "short"])
    assert [len(line) for line in rendered.splitlines()] == [TABLE_WIDTH, 5]
