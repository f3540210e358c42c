"""Tests of middlewared.utils.filter_list: examples, a naive reference model and fuzzing."""
from __future__ import annotations

import copy
import re
import time
from datetime import datetime, timezone
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from middlewared.errors import MatchNotFound
from middlewared.utils.filter_list import (
    FilterError,
    OptionsError,
    filter_list,
    validate_filters,
    validate_options,
)

ROWS: list[dict[str, Any]] = [
    {
        "id": 1, "name": "Alpha", "tags": ["a", "B"], "status": {"state": "RUNNING"},
        "memory": 512, "note": None,
        "dev": [{"dtype": "DISK", "attributes": {"path": "/dev/zvol/a"}}, {"dtype": "NIC"}],
    },
    {
        "id": 2, "name": "beta", "tags": [], "status": {"state": "STOPPED"},
        "memory": 1024, "note": "x", "dev": [{"dtype": "CDROM"}],
    },
    {
        "id": 3, "name": "Gamma", "tags": ["c"], "status": {"state": "RUNNING"},
        "memory": 2048, "note": "straße", "dev": [],
    },
]
PRISTINE = copy.deepcopy(ROWS)


@pytest.fixture(autouse=True)
def _rows_are_never_mutated() -> Any:
    yield
    assert ROWS == PRISTINE


def ids(filters: Any, options: Any = None) -> list[int]:
    result = filter_list(ROWS, filters, options)
    assert isinstance(result, list)
    return [row["id"] for row in result]


def error(exc_type: type[Exception], filters: Any, options: Any = None) -> str:
    with pytest.raises(exc_type) as info:
        filter_list(ROWS, filters, options)
    return str(info.value)


# --- operators -----------------------------------------------------------------------------

@pytest.mark.parametrize("flt, expected", [
    (["id", "=", 2], [2]),
    (["id", "!=", 2], [1, 3]),
    (["id", ">", 1], [2, 3]),
    (["id", ">=", 2], [2, 3]),
    (["id", "<", 2], [1]),
    (["id", "<=", 2], [1, 2]),
    (["note", "=", None], [1]),
    (["note", "!=", None], [2, 3]),
    (["name", "~", "[A-Z]"], [1, 3]),
    (["name", "~", "eta"], []),             # re.match is anchored at the start
    (["note", "~", "^$"], [1]),             # a null field matches as ''
    (["id", "in", [1, 3]], [1, 3]),
    (["name", "in", "xAlphax"], [1]),       # substring when the value is a string
    (["id", "nin", [1, 3]], [2]),
    (["note", "nin", ["x"]], [3]),          # null is never "not in"
    (["tags", "rin", "a"], [1]),
    (["tags", "rnin", "a"], [2, 3]),
    (["note", "rin", "x"], [2]),
    (["note", "rnin", "x"], [3]),
    (["name", "^", "A"], [1]),
    (["name", "!^", "A"], [2, 3]),
    (["note", "!^", "s"], [2]),
    (["name", "$", "a"], [1, 2, 3]),
    (["name", "!$", "ta"], [1, 3]),
    (["note", "!$", "e"], [2]),
])
def test_operators(flt: list[Any], expected: list[int]) -> None:
    assert ids([flt]) == expected


@pytest.mark.parametrize("flt, expected", [
    (["name", "C=", "ALPHA"], [1]),
    (["name", "C!=", "alpha"], [2, 3]),
    (["name", "C>", "b"], [2, 3]),
    (["name", "C>=", "BETA"], [2, 3]),
    (["name", "C<", "beta"], [1]),
    (["name", "C<=", "BETA"], [1, 2]),
    (["name", "Cin", ["ALPHA", "GAMMA"]], [1, 3]),
    (["name", "Cnin", ["ALPHA"]], [2, 3]),
    (["tags", "Crin", "b"], [1]),
    (["tags", "Crnin", "b"], [2, 3]),
    (["name", "C^", "al"], [1]),
    (["name", "C!^", "AL"], [2, 3]),
    (["name", "C$", "MA"], [3]),
    (["name", "C!$", "MA"], [1, 2]),
    (["note", "C=", "STRASSE"], [3]),       # casefold, not lower: ß == ss
    (["note", "Cnin", ["X"]], [3]),
    (["id", "C=", 2], [2]),                 # values without case compare as they are
])
def test_case_insensitive_operators(flt: list[Any], expected: list[int]) -> None:
    assert ids([flt]) == expected


@pytest.mark.parametrize("flt, message", [
    (["id", "C~", "x"], "Invalid case-insensitive operation: C~"),
    (["id", "===", 1], "Invalid operation: ==="),
    (["id", "C", 1], "Invalid operation: C"),
    (["id", "CC=", 1], "Invalid operation: CC="),
    (["id", 5, 1], "Invalid operation: 5"),
    (["id", "="], "Invalid operation: id"),
    (["id"], "Invalid filter ['id']"),
    (["id", "=", 1, 2], "Invalid filter ['id', '=', 1, 2]"),
    ("id", "Invalid filter id"),
    ([1, "=", 1], "Invalid filter [1, '=', 1]"),
    (["OR", []], "OR filter requires at least one branch."),
    (["OR", "x"], "Invalid filter ['OR', 'x']"),
    (["OR", [[]]], "Invalid filter []"),
])
def test_malformed_filters(flt: Any, message: str) -> None:
    with pytest.raises(FilterError) as info:
        validate_filters([flt])
    assert str(info.value) == message
    assert error(FilterError, [flt]) == message


@pytest.mark.parametrize("filters", ["x", 5, {"a": 1}, True])
def test_filters_must_be_a_list(filters: Any) -> None:
    with pytest.raises(FilterError):
        validate_filters(filters)


def test_no_filters() -> None:
    assert ids(None) == ids([]) == [1, 2, 3]
    validate_filters(None)
    validate_filters([])


@pytest.mark.parametrize("pattern", ["(", 5, None, "a{2,1}"])
def test_bad_regex_is_a_filter_error(pattern: Any) -> None:
    with pytest.raises(FilterError):
        validate_filters([["name", "~", pattern]])


@pytest.mark.parametrize("flt", [
    ["name", ">", 1],          # str vs int
    ["note", ">", "a"],        # null vs str
    ["id", "in", 5],           # int is not a container
    ["tags", "^", "a"],        # a list has no startswith
    ["name", "^", 1],          # startswith(int)
    ["id", "~", "1"],          # regex on an int
    ["status", "in", {"a": 1}] ,  # unhashable dict key
    ["tags.*", "C>", 1],       # through a wildcard
])
def test_incompatible_types_raise_filter_error(flt: list[Any]) -> None:
    assert "Invalid filter" in error(FilterError, [flt])


# --- OR and nesting --------------------------------------------------------------------------

def nested_or(levels: int) -> list[Any]:
    flt: list[Any] = ["id", "=", 1]
    for _ in range(levels):
        flt = ["OR", [flt]]
    return [flt]


def test_or() -> None:
    assert ids([["OR", [["id", "=", 1], ["id", "=", 3]]]]) == [1, 3]
    # A branch may be a list of filters, ANDed.
    branches = [[["id", ">", 1], ["memory", "<", 2000]], ["name", "=", "Alpha"]]
    assert ids([["OR", branches]]) == [1, 2]
    assert ids([["status.state", "=", "RUNNING"], ["OR", [["id", "=", 1], ["id", "=", 2]]]]) == [1]
    assert ids([["OR", [["nokey", "=", 1]]]]) == []


def test_or_short_circuits_left_to_right() -> None:
    # The second branch would fail on str > int, but the first one already matches.
    assert filter_list(ROWS[:1], [["OR", [["id", "=", 1], ["name", ">", 1]]]]) == ROWS[:1]
    # And the AND at the top level stops at the first false filter.
    assert filter_list(ROWS[1:], [["id", "=", 1], ["name", ">", 1]]) == []


def test_recursion_depth() -> None:
    assert ids(nested_or(3)) == [1]
    assert error(FilterError, nested_or(4)) == "query-filters max recursion depth exceeded"
    with pytest.raises(FilterError, match="max recursion depth"):
        validate_filters(nested_or(10))


# --- field paths -------------------------------------------------------------------------------

@pytest.mark.parametrize("flt, expected", [
    (["status.state", "=", "RUNNING"], [1, 3]),
    (["dev.*.dtype", "=", "NIC"], [1]),
    (["dev.*.dtype", "!=", "DISK"], [1, 2]),    # any element
    (["dev.0.dtype", "=", "CDROM"], [2]),
    (["dev.1.dtype", "=", "NIC"], [1]),
    (["dev.5", "=", None], [1, 2, 3]),           # out of range is null, not missing
    (["dev.*.attributes.path", "^", "/dev/zvol"], [1]),
    (["tags.*", "C=", "b"], [1]),
    (["tags.0", "=", "c"], [3]),
    (["nokey", "!=", 1], []),                    # missing is false, even for != ...
    (["nokey", "nin", [1]], []),                 # ... and for nin
    (["status.nokey", "=", None], []),
    (["memory.x", "=", None], []),               # a path through a scalar is missing
    (["note.x", "!=", 1], []),
    (["dev.*.nokey", "!=", 1], []),
])
def test_paths(flt: list[Any], expected: list[int]) -> None:
    assert ids([flt]) == expected


def test_escaped_dot() -> None:
    rows = [{"a.b": 1, "a": {"b": 2}}]
    assert filter_list(rows, [["a\\.b", "=", 1]]) == rows
    assert filter_list(rows, [["a.b", "=", 2]]) == rows
    assert filter_list(rows, [["a.b", "=", 1]]) == []
    assert filter_list(rows, [], {"select": ["a\\.b"]}) == [{"a.b": 1}]


def test_non_index_segment_on_a_list() -> None:
    assert error(FilterError, [["dev.dtype", "=", "NIC"]]) == (
        "dtype: must be array index or wildcard character")
    assert error(FilterError, [["id", ">", 0], ["tags.x", "=", 1]]) == (
        "x: must be array index or wildcard character")


# --- timestamps -------------------------------------------------------------------------------

TS_ROWS: list[dict[str, Any]] = [
    {"id": 1, "ts": {"$date": 1700000000000}},                  # 2023-11-14T22:13:20Z
    {"id": 2, "ts": {"$date": 1700000001000}},
    {"id": 3, "ts": None},
    {"id": 4},
    {"id": 5, "ts": datetime(2023, 11, 14, 22, 13, 21, tzinfo=timezone.utc)},
    {"id": 6, "ts": {"$date": None}},
]


@pytest.mark.parametrize("flt, expected", [
    (["ts.$date", ">", "2023-11-14T22:13:20"], [2, 5]),
    (["ts.$date", "=", "2023-11-14T22:13:20+00:00"], [1]),
    (["ts.$date", "!=", "2023-11-14T22:13:20Z"], [2, 3, 5, 6]),
    (["ts.$date", "<", "2023-11-14T23:13:20+01:00"], []),
    (["ts.$date", "<=", "2023-11-14T23:13:20+01:00"], [1]),
    (["ts.$date", ">=", "2023-11-14"], [1, 2, 5]),
    (["2023-11-14T22:13:20", "<", "ts.$date"], [2, 5]),          # mirrored
    (["2023-11-14T22:13:20", ">=", "ts.$date"], [1]),
])
def test_timestamps(flt: list[Any], expected: list[int]) -> None:
    assert [row["id"] for row in filter_list(TS_ROWS, [flt])] == expected  # type: ignore[index]


@pytest.mark.parametrize("flt, message", [
    (["ts.$date", "in", ["x"]], "in: invalid timestamp operation."),
    (["ts.$date", "C=", "2023-01-01"], "C=: invalid timestamp operation."),
    (["ts.$date", ">", "yesterday"], "yesterday: must be an ISO-8601 formatted timestamp string"),
    (["ts.$date", ">", 5], "5: must be an ISO-8601 formatted timestamp string"),
    (["now", ">", "ts.$date"], "now: must be an ISO-8601 formatted timestamp string"),
])
def test_timestamp_errors(flt: list[Any], message: str) -> None:
    with pytest.raises(FilterError) as info:
        validate_filters([flt])
    assert str(info.value) == message


# --- options -----------------------------------------------------------------------------------

def test_validate_options_defaults() -> None:
    defaults = {
        "extra": {}, "order_by": [], "select": [], "count": False, "get": False,
        "offset": 0, "limit": 0, "force_sql_filters": False,
    }
    assert validate_options(None) == defaults
    options: dict[str, Any] = {"limit": 5, "extra": {"x": 1}, "force_sql_filters": True}
    result = validate_options(options)
    assert result == {**defaults, **options}
    result["extra"]["y"] = 2
    assert options == {"limit": 5, "extra": {"x": 1}, "force_sql_filters": True}
    assert ids([], {"extra": {"anything": 1}, "force_sql_filters": True}) == [1, 2, 3]


@pytest.mark.parametrize("options, message", [
    ({"get": True, "limit": 2}, "Invalid options combination. `get` implies a single result."),
    ({"get": True, "offset": 1}, "Invalid options combination. `get` implies a single result."),
    ({"limit": 10001}, "Options limit must be between 1 and 10000"),
    ({"limit": -1}, "Options limit must be between 1 and 10000"),
    ({"select": ["dev.0.dtype"]}, "Selecting by list index is not supported"),
    ({"select": [["dev.0", "d"]]}, "Selecting by list index is not supported"),
    ({"bogus": 1}, "bogus: Extra inputs are not permitted"),
    ({"count": "yes"}, "Options count must be a boolean"),
    ({"get": 1}, "Options get must be a boolean"),
    ({"force_sql_filters": None}, "Options force_sql_filters must be a boolean"),
    ({"offset": -1}, "Options offset must be a non-negative integer"),
    ({"offset": True}, "Options offset must be a non-negative integer"),
    ({"limit": "5"}, "Options limit must be an integer"),
    ({"extra": []}, "Options extra must be an object"),
    ({"order_by": "id"}, "Options order_by must be a list of strings"),
    ({"order_by": [1]}, "Options order_by must be a list of strings"),
    ({"select": "id"}, "Options select must be a list"),
    ({"select": [1]}, "1: select items must be strings or [field, alias] pairs"),
    ({"select": [["a"]]}, "['a']: select items must be strings or [field, alias] pairs"),
    ({"select": [["a", 1]]}, "['a', 1]: select items must be strings or [field, alias] pairs"),
    ([], "Query options must be an object"),
])
def test_bad_options(options: Any, message: str) -> None:
    with pytest.raises(OptionsError) as info:
        validate_options(options)
    assert str(info.value) == message
    assert error(OptionsError, [], options) == message


def test_select() -> None:
    options = {"select": ["id", "status.state", "nokey", "status.nokey", ["name", "label"]]}
    assert filter_list(ROWS, [["id", "=", 1]], options) == [
        {"id": 1, "status": {"state": "RUNNING"}, "label": "Alpha"}]
    assert filter_list(ROWS, [["id", "=", 1]], {"select": [["status.state", "s"]]}) == [
        {"s": "RUNNING"}]
    both = filter_list(ROWS, [["id", "=", 1]], {"select": ["status.state", "status"]})
    assert both == [{"status": {"state": "RUNNING"}}]


def test_select_returns_copies() -> None:
    result = filter_list(ROWS, [], {"select": ["dev", "status"], "get": True})
    assert isinstance(result, dict)
    result["dev"][0]["dtype"] = "CHANGED"
    result["status"]["state"] = "CHANGED"
    # The autouse fixture checks ROWS was not touched.


def test_without_select_rows_are_the_originals_in_a_new_list() -> None:
    result = filter_list(ROWS, [])
    assert result == ROWS and result is not ROWS
    assert all(a is b for a, b in zip(result, ROWS))  # type: ignore[arg-type]
    assert filter_list(ROWS, [], {"get": True}) is ROWS[0]


def test_data_may_be_any_iterable() -> None:
    assert filter_list((row for row in ROWS), [["id", ">", 1]], {"count": True}) == 2
    assert filter_list(iter(ROWS), [["id", ">", 1]], {"get": True}) is ROWS[1]


def test_count() -> None:
    assert filter_list(ROWS, [], {"count": True}) == 3
    assert filter_list(ROWS, [["id", ">", 1]], {"count": True}) == 2
    # limit, offset and order_by are ignored for counting.
    assert filter_list(ROWS, [], {"count": True, "limit": 1, "offset": 2, "order_by": ["id"]}) == 3
    assert filter_list(ROWS, [["nokey", "=", 1]], {"count": True}) == 0


@pytest.mark.parametrize("order_by, expected", [
    (["id"], [1, 2, 3]),
    (["-memory"], [3, 2, 1]),
    (["name"], [1, 3, 2]),                  # plain str ordering: upper case first
    (["status.state"], [1, 3, 2]),          # stable within equal keys
    (["-status.state"], [2, 1, 3]),
    (["note"], [1, 3, 2]),                  # null sorts as the smallest value
    (["-note"], [2, 3, 1]),
    (["nulls_first:note"], [1, 3, 2]),
    (["nulls_last:note"], [3, 2, 1]),
    (["nulls_first:-note"], [1, 2, 3]),
    (["nulls_last:-note"], [2, 3, 1]),
    (["nokey"], [1, 2, 3]),
    (["dev.0.dtype"], [3, 2, 1]),           # dev.0 of row 3 is out of range: null
    (["-id", "status.state"], [3, 1, 2]),   # each key re-sorts: the last one is primary
])
def test_order_by(order_by: list[str], expected: list[int]) -> None:
    assert ids([], {"order_by": order_by}) == expected


def test_order_by_runs_after_select() -> None:
    result = filter_list(ROWS, [], {"select": ["name"], "order_by": ["-memory"]})
    assert result == [{"name": "Alpha"}, {"name": "beta"}, {"name": "Gamma"}]


def test_order_by_incompatible_types() -> None:
    rows = [{"v": 1}, {"v": "a"}]
    with pytest.raises(OptionsError, match="v: cannot order values of incompatible types"):
        filter_list(rows, [], {"order_by": ["v"]})
    assert filter_list([{"v": None}, {"v": 2}, {"v": None}], [], {"order_by": ["-v"]}) == [
        {"v": 2}, {"v": None}, {"v": None}]


def test_get() -> None:
    assert filter_list(ROWS, [["id", ">", 1]], {"get": True}) is ROWS[1]
    assert filter_list(ROWS, [], {"get": True, "order_by": ["-id"]}) is ROWS[2]
    assert filter_list(ROWS, [], {"get": True, "limit": 1, "select": ["id"]}) == {"id": 1}
    with pytest.raises(MatchNotFound):
        filter_list(ROWS, [["id", "=", 9]], {"get": True})
    with pytest.raises(MatchNotFound):
        filter_list(ROWS, [["id", "=", 9]], {"get": True, "order_by": ["id"]})
    # The get shortcut stops at the first match: later rows are never evaluated.
    assert filter_list(ROWS, [["OR", [["id", "=", 1], ["name", ">", 1]]]], {"get": True}) is ROWS[0]
    assert issubclass(MatchNotFound, IndexError)


@pytest.mark.parametrize("options, expected", [
    ({"offset": 1}, [2, 3]),
    ({"limit": 2}, [1, 2]),
    ({"offset": 1, "limit": 1}, [2]),
    ({"offset": 5}, []),
    ({"limit": 0}, [1, 2, 3]),
    ({"limit": 10000}, [1, 2, 3]),
    ({"order_by": ["-id"], "offset": 1, "limit": 1}, [2]),
])
def test_offset_and_limit(options: dict[str, Any], expected: list[int]) -> None:
    assert ids([], options) == expected


def test_a_thousand_vms_is_fast() -> None:
    vms = [
        {"id": i, "name": f"vm{i}", "status": {"state": "RUNNING" if i % 2 else "STOPPED"},
         "devices": [{"attributes": {"dtype": "DISK"}}, {"attributes": {"dtype": "NIC"}}]}
        for i in range(1000)
    ]
    for filters in ([["name", "=", "vm500"]], [["status.state", "=", "RUNNING"]]):
        best = min(_timed(lambda: filter_list(vms, filters)) for _ in range(5))
        assert best < 0.010, best
    assert filter_list(vms, [["id", "=", 500]], {"get": True})["name"] == "vm500"  # type: ignore[index]


def _timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# --- a naive reference model, compared on random data ------------------------------------------

def ref_split(name: str) -> list[str]:
    segments, current, i = [], "", 0
    while i < len(name):
        if name[i] == "\\" and i + 1 < len(name) and name[i + 1] == ".":
            current += "."
            i += 2
            continue
        if name[i] == ".":
            segments.append(current)
            current = ""
        else:
            current += name[i]
        i += 1
    segments.append(current)
    return segments


def is_index(segment: str) -> bool:
    return segment != "" and all(ch in "0123456789" for ch in segment)


def ref_values(obj: Any, segments: list[str]) -> list[Any]:
    if not segments:
        return [obj]
    segment, rest = segments[0], segments[1:]
    if isinstance(obj, dict):
        return ref_values(obj[segment], rest) if segment in obj else []
    if isinstance(obj, list):
        if segment == "*":
            found = []
            for item in obj:
                found += ref_values(item, rest)
            return found
        if is_index(segment):
            index = int(segment)
            return ref_values(obj[index] if index < len(obj) else None, rest)
        raise FilterError("not an index")
    return []


def ref_fold(value: Any) -> Any:
    if isinstance(value, str):
        return value.casefold()
    if isinstance(value, list):
        return [item.casefold() if isinstance(item, str) else item for item in value]
    return value


def ref_test(a: Any, op: str, b: Any) -> bool:
    if op == "=":
        return bool(a == b)
    if op == "!=":
        return bool(a != b)
    if op == ">":
        return bool(a > b)
    if op == ">=":
        return bool(a >= b)
    if op == "<":
        return bool(a < b)
    if op == "<=":
        return bool(a <= b)
    if op == "~":
        return re.match(b, "" if a is None else a) is not None
    if op == "in":
        return a in b
    if a is None:
        return False
    if op == "nin":
        return a not in b
    if op == "rin":
        return b in a
    if op == "rnin":
        return b not in a
    if op == "^":
        return bool(a.startswith(b))
    if op == "!^":
        return not a.startswith(b)
    if op == "$":
        return bool(a.endswith(b))
    assert op == "!$"
    return not a.endswith(b)


def ref_match_one(row: Any, flt: list[Any]) -> bool:
    if len(flt) == 2:
        for branch in flt[1]:
            branch_filters = branch if isinstance(branch[0], list) else [branch]
            if ref_match(row, branch_filters):
                return True
        return False
    name, op, value = flt
    case_insensitive = op.startswith("C")
    if case_insensitive:
        op = op[1:]
        value = ref_fold(value)
    for field in ref_values(row, ref_split(name)):
        if case_insensitive:
            field = ref_fold(field)
        try:
            if ref_test(field, op, value):
                return True
        except (TypeError, AttributeError):
            raise FilterError("incompatible")
    return False


def ref_match(row: Any, filters: list[Any]) -> bool:
    for flt in filters:
        if not ref_match_one(row, flt):
            return False
    return True


def ref_select(row: dict[str, Any], select: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in select:
        source, alias = (item, None) if isinstance(item, str) else item
        segments = ref_split(source)
        value: Any = row
        found = True
        for segment in segments:
            if isinstance(value, dict) and segment in value:
                value = value[segment]
            else:
                found = False
                break
        if not found:
            continue
        value = copy.deepcopy(value)
        if alias is not None:
            out[alias] = value
            continue
        target = out
        for segment in segments[:-1]:
            if not isinstance(target.get(segment), dict):
                target[segment] = {}
            target = target[segment]
        target[segments[-1]] = value
    return out


def ref_order_value(row: Any, segments: list[str]) -> Any:
    for segment in segments:
        if isinstance(row, dict):
            row = row.get(segment)
        elif isinstance(row, list) and is_index(segment) and int(segment) < len(row):
            row = row[int(segment)]
        else:
            return None
    return row


def ref_less(a: Any, b: Any) -> bool:
    if a is None:
        return b is not None
    if b is None or a == b:
        return False
    return bool(a < b)


def ref_sort(rows: list[Any], item: str) -> list[Any]:
    nulls = None
    for prefix in ("nulls_first:", "nulls_last:"):
        if item.startswith(prefix):
            nulls, item = prefix, item[len(prefix):]
            break
    descending = item.startswith("-")
    if descending:
        item = item[1:]
    keyed = [(ref_order_value(row, ref_split(item)), row) for row in rows]
    null_rows = [row for key, row in keyed if key is None] if nulls else []
    if nulls:
        keyed = [(key, row) for key, row in keyed if key is not None]
    for i in range(len(keyed)):
        for j in range(len(keyed)):
            a, b = keyed[i][0], keyed[j][0]
            if a is not None and b is not None and a != b:
                try:
                    a < b
                except TypeError:
                    raise OptionsError("incomparable")
    ordered: list[Any] = []
    for key, row in keyed:   # a stable insertion sort
        position = len(ordered)
        for i, (other, _) in enumerate(ordered):
            if ref_less(other, key) if descending else ref_less(key, other):
                position = i
                break
        ordered.insert(position, (key, row))
    result = [row for _, row in ordered]
    if nulls == "nulls_first:":
        return null_rows + result
    return result + null_rows


def ref_filter_list(data: list[Any], filters: list[Any], options: dict[str, Any]) -> Any:
    select = options.get("select", [])
    order_by = options.get("order_by", [])
    if options.get("get") and not order_by:
        for row in data:
            if ref_match(row, filters):
                return ref_select(row, select) if select else row
        raise MatchNotFound()
    rows = []
    for row in data:
        if ref_match(row, filters):
            rows.append(ref_select(row, select) if select else row)
    if options.get("count"):
        return len(rows)
    for item in order_by:
        rows = ref_sort(rows, item)
    if options.get("get"):
        if not rows:
            raise MatchNotFound()
        return rows[0]
    offset, limit = options.get("offset", 0), options.get("limit", 0)
    rows = rows[offset:]
    if limit:
        rows = rows[:limit]
    return rows


OPS = ["=", "!=", ">", ">=", "<", "<=", "in", "nin", "rin", "rnin", "^", "!^", "$", "!$"]
FIELDS = [
    "a", "b", "c", "l", "a.x", "c.y", "c.0", "l.*", "l.0", "l.1", "l.*.x", "l.*.*",
    "x\\.y", "nokey", "a.0", "*",
]
SCALARS = st.none() | st.booleans() | st.integers(-3, 3) | st.sampled_from(
    ["", "a", "A", "ab", "Ab", "b", "ß", "SS", "x.y"])
VALUES = st.recursive(
    SCALARS,
    lambda children: st.lists(children, max_size=3)
    | st.dictionaries(st.sampled_from(["x", "y", "0", "*"]), children, max_size=2),
    max_leaves=4,
)
# Filter values are drawn flatter than row values: recursive draws dominate the run time.
FILTER_VALUES = SCALARS | st.lists(SCALARS, max_size=3) | st.fixed_dictionaries({"x": SCALARS})
ROW_STRATEGY = st.fixed_dictionaries({}, optional={key: VALUES for key in ["a", "b", "c", "l", "x.y"]})


@st.composite
def leaf_filters(draw: Any, pool: tuple[Any, ...] = ()) -> list[Any]:
    field = draw(st.sampled_from(FIELDS))
    if draw(st.integers(0, 9)) == 0:
        return [field, "~", draw(st.sampled_from(["a", "^A", ".*", "[ab]+$", "", "b|ß"]))]
    # Weighted towards operators that never fail on mixed types, so that more rows survive.
    op = draw(st.sampled_from(OPS + ["=", "!=", "in", "nin"] * 3))
    values = FILTER_VALUES | st.sampled_from(pool) if pool else FILTER_VALUES
    value = draw(st.lists(values, max_size=3) if op in ("in", "nin") else values)
    return [field, ("C" + op) if draw(st.booleans()) else op, value]


@st.composite
def filter_lists(draw: Any, depth: int = 0, pool: tuple[Any, ...] = ()) -> list[Any]:
    filters = []
    for _ in range(draw(st.integers(0 if depth == 0 else 1, 2))):
        if depth < 3 and draw(st.integers(0, 3)) == 0:
            branches = []
            for _ in range(draw(st.integers(1, 2))):
                nested = draw(filter_lists(depth + 1, pool))
                branches.append(nested if len(nested) > 1 or draw(st.booleans()) else nested[0])
            filters.append(["OR", branches])
        else:
            filters.append(draw(leaf_filters(pool)))
    return filters


@st.composite
def option_dicts(draw: Any) -> dict[str, Any]:
    options: dict[str, Any] = {
        "select": draw(st.lists(st.sampled_from(
            ["a", "c.y", "c.*", "x\\.y", ["b", "alias"], ["a.x", "ax"], "nokey", "l", "a.x.y"]),
            max_size=3)),
        "order_by": draw(st.lists(st.sampled_from(
            ["a", "-a", "b", "nulls_first:b", "nulls_last:-b", "nulls_first:-a", "nulls_last:a",
             "c.y", "-l.0", "alias", "nokey", "-b"]), max_size=2)),
        "count": draw(st.sampled_from([False, False, False, True])),
        "get": draw(st.sampled_from([False, False, False, True])),
    }
    if options["get"]:
        options["limit"] = draw(st.sampled_from([0, 1]))
    else:
        options["offset"] = draw(st.integers(0, 3))
        options["limit"] = draw(st.integers(0, 3))
    return options


def outcome(fn: Any) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except (FilterError, OptionsError, MatchNotFound) as exc:
        return type(exc).__name__, None


@st.composite
def cases(draw: Any) -> tuple[list[Any], list[Any], dict[str, Any]]:
    data = draw(st.lists(ROW_STRATEGY, max_size=6))
    # Filter values taken from the rows themselves, so that filters do match now and then.
    pool = [value for row in data for value in row.values()]
    pool += [item for value in pool if isinstance(value, list) for item in value]
    return data, draw(filter_lists(0, tuple(pool))), draw(option_dicts())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=cases())
def test_matches_the_reference_model(case: tuple[list[Any], list[Any], dict[str, Any]]) -> None:
    data, filters, options = case
    snapshot = copy.deepcopy((data, filters, options))
    validate_filters(filters)
    validate_options(options)
    expected = outcome(lambda: ref_filter_list(data, filters, options))
    actual = outcome(lambda: filter_list(data, filters, options))
    assert actual == expected
    assert (data, filters, options) == snapshot


FLAT_ROWS = st.lists(st.fixed_dictionaries(
    {"a": st.integers(0, 4), "b": st.none() | st.sampled_from(["x", "X", "y", "xy"])},
    optional={"c": st.fixed_dictionaries({"y": st.integers(0, 2)}), "l": st.lists(st.integers(0, 3))},
), min_size=2, max_size=8)
FLAT_FILTERS = st.lists(st.one_of(
    st.tuples(st.sampled_from(["a", "c.y", "l.*", "l.0"]),
              st.sampled_from(["=", "!=", ">", ">=", "<", "<=", "in", "nin"]),
              st.integers(0, 4) | st.lists(st.integers(0, 4), max_size=3)),
    st.tuples(st.just("b"), st.sampled_from(["C=", "^", "C!^", "$", "!$", "Cin", "nin", "rnin", "~"]),
              st.sampled_from(["x", "Y", "^x"])),
).map(list), max_size=2)


@settings(max_examples=100, deadline=None)
@given(data=FLAT_ROWS, filters=FLAT_FILTERS, options=option_dicts())
def test_matches_the_reference_model_on_flat_rows(data: Any, filters: Any, options: Any) -> None:
    # Homogeneous columns: most rows survive filtering, so ordering and paging get exercised.
    expected = outcome(lambda: ref_filter_list(data, filters, options))
    assert outcome(lambda: filter_list(data, filters, options)) == expected


# --- garbage in, only FilterError / OptionsError out ------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=6), children, max_size=4),
    max_leaves=12,
)
TOKENS = st.sampled_from(
    OPS + ["C" + op for op in OPS] + ["~", "C~", "OR", "a", "a.b", "l.*", "l.0", "l.x",
                                      "ts.$date", "2024-01-01", "nulls_first:-a", "-a"])
FILTERISH = st.recursive(JSON | TOKENS, lambda children: st.lists(children, max_size=4),
                         max_leaves=15)
OPTION_KEYS = ["extra", "order_by", "select", "count", "get", "offset", "limit",
               "force_sql_filters", "bogus"]
OPTIONISH = JSON | st.dictionaries(
    st.sampled_from(OPTION_KEYS),
    JSON | TOKENS | st.lists(TOKENS | st.lists(TOKENS, max_size=3), max_size=3),
    max_size=5,
)
SAMPLE = [
    {"a": 1, "l": [{"x": 1}, 2, "s"], "ts": {"$date": 1700000000000}, "s": "abc"},
    {"a": "b", "l": [], "ts": None, "b": {"c": [1, 2]}},
    {"a": None, "ts": {"$date": "bad"}, "l": [[1], {"x": None}]},
]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(filters=FILTERISH, options=OPTIONISH)
def test_garbage_raises_only_filter_and_options_errors(filters: Any, options: Any) -> None:
    snapshot = copy.deepcopy((filters, options))
    try:
        validate_filters(filters)
    except FilterError:
        pass
    try:
        validate_options(options)
    except OptionsError:
        pass
    for fl, opts in ((filters, None), (None, options), (filters, options)):
        try:
            filter_list(SAMPLE, fl, opts)
        except (FilterError, OptionsError, MatchNotFound):
            pass
    assert (filters, options) == snapshot
