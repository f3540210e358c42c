"""TrueNAS query filters and query options, evaluated in Python by ``filter_list``."""
from __future__ import annotations

import copy
import operator
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable

from middlewared.errors import MatchNotFound

__all__ = ["FilterError", "OptionsError", "filter_list", "validate_filters", "validate_options"]

MAX_RECURSION_DEPTH = 3
MAX_LIMIT = 10000
TIMESTAMP_DESIGNATOR = ".$date"

Predicate = Callable[[Any], bool]
# One path segment: the dict key, plus its list index when the segment is numeric.
Step = tuple[str, int | None]


class FilterError(ValueError):
    """A malformed query filter, or one that cannot be applied to the data."""


class OptionsError(ValueError):
    """Malformed query options, or an ``order_by`` the data cannot be sorted by."""


# A sentinel rather than None: a key holding null and a missing key behave differently.
_MISSING: Any = object()
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_UNESCAPED_DOT = re.compile(r"(?<!\\)\.")


_COMPARISONS: dict[str, Callable[[Any, Any], Any]] = {
    "=": operator.eq, "!=": operator.ne, ">": operator.gt,
    ">=": operator.ge, "<": operator.lt, "<=": operator.le,
}
# Field on the left, filter value on the right. `~` is handled apart: its value is a pattern.
_BINARY: dict[str, Callable[[Any, Any], Any]] = {
    **_COMPARISONS,
    "in": lambda a, b: a in b,
    # The negative and string operators are false on a null field rather than failing.
    "nin": lambda a, b: a is not None and a not in b,
    "rin": lambda a, b: a is not None and b in a,
    "rnin": lambda a, b: a is not None and b not in a,
    "^": lambda a, b: a is not None and a.startswith(b),
    "!^": lambda a, b: a is not None and not a.startswith(b),
    "$": lambda a, b: a is not None and a.endswith(b),
    "!$": lambda a, b: a is not None and not a.endswith(b),
}
_OPERATORS = frozenset(_BINARY) | {"~"}
# A mirrored timestamp filter puts the literal on the left, so the comparison turns around.
_MIRRORED = {"=": "=", "!=": "!=", ">": "<", ">=": "<=", "<": ">", "<=": ">="}


def _index(segment: str) -> int | None:
    # isdigit() alone accepts characters such as "²" that int() refuses.
    return int(segment) if segment.isascii() and segment.isdigit() else None


def _steps(name: str) -> list[Step]:
    """Split a dotted path (``\\.`` is a literal dot) into steps."""
    segments = (segment.replace("\\.", ".") for segment in _UNESCAPED_DOT.split(name))
    return [(segment, _index(segment)) for segment in segments]


def _fold(value: Any) -> Any:
    if isinstance(value, str):
        return value.casefold()
    if isinstance(value, (list, tuple)):
        return [item.casefold() if isinstance(item, str) else item for item in value]
    return value  # numbers, null and others have no case; comparing them as-is is the useful choice


def _walk(obj: Any, key: str, index: int | None) -> Any:
    """One path step: the value under ``key`` in ``obj``, or _MISSING."""
    if isinstance(obj, dict):
        return obj.get(key, _MISSING)
    if isinstance(obj, (list, tuple)):
        if index is None:
            raise FilterError(f"{key}: must be array index or wildcard character")
        return obj[index] if index < len(obj) else None
    return _MISSING


def _resolve(row: Any, steps: list[Step]) -> list[Any]:
    """Every value the path reaches in ``row`` (several through ``*``); empty when missing."""
    current = [row]
    for key, index in steps:
        found: list[Any] = []
        for obj in current:
            if key == "*" and isinstance(obj, (list, tuple)):
                found.extend(obj)
            elif (value := _walk(obj, key, index)) is not _MISSING:
                found.append(value)
        current = found
    return current


def _compile_regex(value: Any) -> re.Pattern[str]:
    if not isinstance(value, str):
        raise FilterError(f"{value!r}: regular expression must be a string")
    try:
        return re.compile(value)
    except (re.error, OverflowError, RecursionError, ValueError) as exc:
        raise FilterError(f"{value}: invalid regular expression: {exc}") from exc


def _compile_test(base: str, value: Any, fold: bool) -> Predicate:
    if base == "~":
        pattern = _compile_regex(value)
        return lambda field: pattern.match("" if field is None else field) is not None
    binary = _BINARY[base]
    if fold:
        folded = _fold(value)
        return lambda field: binary(_fold(field), folded)
    return lambda field: binary(field, value)


def _check_operation(op: Any) -> str:
    """The operator without its case-insensitive ``C`` prefix, once known to be valid."""
    if not isinstance(op, str):
        raise FilterError(f"Invalid operation: {op}")
    base = op[1:] if op.startswith("C") else op
    if op.startswith("C") and base == "~":
        raise FilterError(f"Invalid case-insensitive operation: {op}")
    if base not in _OPERATORS:
        raise FilterError(f"Invalid operation: {op}")
    return base


def _compile_leaf(f: list[Any] | tuple[Any, ...]) -> Predicate:
    name, op, value = f
    if not isinstance(name, str):
        raise FilterError(f"Invalid filter {f}")
    base = _check_operation(op)
    if name.endswith(TIMESTAMP_DESIGNATOR) or (
        isinstance(value, str) and value.endswith(TIMESTAMP_DESIGNATOR)
    ):
        return _compile_timestamp(name, op, value)
    steps = _steps(name)
    test = _compile_test(base, value, op != base)
    if all(key != "*" for key, _ in steps):
        def predicate(row: Any) -> bool:
            field = row
            for key, index in steps:  # _walk passes _MISSING through, so no early exit needed
                field = _walk(field, key, index)
            try:
                return field is not _MISSING and test(field)
            except (TypeError, AttributeError) as exc:
                raise _incompatible(f, field) from exc
        return predicate

    def any_predicate(row: Any) -> bool:
        # "Any" semantics over wildcard matches, left to right, so errors are reproducible.
        for field in _resolve(row, steps):
            try:
                if test(field):
                    return True
            except (TypeError, AttributeError) as exc:
                raise _incompatible(f, field) from exc
        return False
    return any_predicate


def _incompatible(f: Any, field: Any) -> FilterError:
    return FilterError(f"Invalid filter {f}: cannot apply {f[1]} to a {type(field).__name__} value")


def _parse_timestamp(literal: Any) -> datetime:
    try:
        moment = datetime.fromisoformat(literal)
    except (TypeError, ValueError) as exc:
        raise FilterError(f"{literal}: must be an ISO-8601 formatted timestamp string") from exc
    # Naive values are taken as UTC so they compare with the aware ones ejson decodes to.
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _as_datetime(raw: Any) -> Any:
    """The datetime behind a row value, None for null, or _MISSING when it holds no date."""
    if isinstance(raw, dict):
        raw = raw.get("$date", _MISSING)
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            try:
                return _EPOCH + timedelta(milliseconds=raw)
            except (OverflowError, ValueError) as exc:
                raise FilterError(f"{raw}: timestamp out of range") from exc
    if isinstance(raw, datetime):
        return raw if raw.tzinfo else raw.replace(tzinfo=timezone.utc)
    return None if raw is None else _MISSING


def _compile_timestamp(name: str, op: str, value: Any) -> Predicate:
    if op not in _COMPARISONS:
        raise FilterError(f"{op}: invalid timestamp operation.")
    mirrored = not name.endswith(TIMESTAMP_DESIGNATOR)
    path, literal = (value, name) if mirrored else (name, value)
    moment = _parse_timestamp(literal)
    compare = _COMPARISONS[_MIRRORED[op] if mirrored else op]
    steps = _steps(path[: -len(TIMESTAMP_DESIGNATOR)])

    def predicate(row: Any) -> bool:
        for raw in _resolve(row, steps):
            when = _as_datetime(raw)
            if when is _MISSING:
                continue
            # A null timestamp (an unfinished job, say) differs from every date, orders with none.
            if (op == "!=") if when is None else compare(when, moment):
                return True
        return False
    return predicate


def _always(row: Any) -> bool:
    return True


def _compile_and(predicates: list[Predicate]) -> Predicate:
    if not predicates:
        return _always
    if len(predicates) == 1:
        return predicates[0]

    def predicate(row: Any) -> bool:
        for each in predicates:
            if not each(row):
                return False
        return True
    return predicate


def _compile_or(predicates: list[Predicate]) -> Predicate:
    def predicate(row: Any) -> bool:
        for each in predicates:
            if each(row):
                return True
        return False
    return predicate


def _compile_filter(f: Any, depth: int) -> Predicate:
    if not isinstance(f, (list, tuple)) or len(f) not in (2, 3):
        raise FilterError(f"Invalid filter {f}")
    if len(f) == 3:
        return _compile_leaf(f)
    op, branches = f
    if op != "OR":
        raise FilterError(f"Invalid operation: {op}")
    if not isinstance(branches, (list, tuple)):
        raise FilterError(f"Invalid filter {f}")
    if not branches:
        raise FilterError("OR filter requires at least one branch.")
    compiled = []
    for branch in branches:
        # A branch whose first item is itself a filter is a list of filters, ANDed.
        nested = isinstance(branch, (list, tuple)) and bool(branch) and isinstance(branch[0], (list, tuple))
        compiled.append(_compile_filters(branch if nested else [branch], depth + 1))
    return _compile_or(compiled)


def _compile_filters(filters: Any, depth: int) -> Predicate:
    """A predicate for the ANDed filters; ``_always`` when there is nothing to test."""
    if depth > MAX_RECURSION_DEPTH:
        raise FilterError("query-filters max recursion depth exceeded")
    if filters is None:
        return _always
    if not isinstance(filters, (list, tuple)):
        raise FilterError(f"Invalid filters {filters}: must be a list")
    return _compile_and([_compile_filter(f, depth) for f in filters])


def validate_filters(filters: Any) -> None:
    """Raise FilterError unless ``filters`` is a well-formed query-filters list (None is empty)."""
    _compile_filters(filters, 0)


def _check_select(select: Any) -> None:
    if not isinstance(select, list):
        raise OptionsError("Options select must be a list")
    for item in select:
        if isinstance(item, (list, tuple)) and len(item) == 2 and all(isinstance(i, str) for i in item):
            source = item[0]
        elif isinstance(item, str):
            source = item
        else:
            raise OptionsError(f"{item}: select items must be strings or [field, alias] pairs")
        if any(index is not None for _, index in _steps(source)):
            raise OptionsError("Selecting by list index is not supported")


_OPTION_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "extra": (lambda value: isinstance(value, dict), "an object"),
    "order_by": (lambda value: isinstance(value, list) and all(isinstance(i, str) for i in value),
                 "a list of strings"),
    "count": (lambda value: isinstance(value, bool), "a boolean"),
    "get": (lambda value: isinstance(value, bool), "a boolean"),
    "offset": (lambda value: type(value) is int and value >= 0, "a non-negative integer"),
    "limit": (lambda value: type(value) is int, "an integer"),
    "force_sql_filters": (lambda value: isinstance(value, bool), "a boolean"),
}


def validate_options(options: Any) -> dict[str, Any]:
    """Return ``options`` (None is empty) with defaults filled in; raise OptionsError if invalid."""
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise OptionsError("Query options must be an object")
    result: dict[str, Any] = {
        "extra": {}, "order_by": [], "select": [], "count": False, "get": False,
        "offset": 0, "limit": 0, "force_sql_filters": False,
    }
    for key in options:
        if key not in result:
            raise OptionsError(f"{key}: Extra inputs are not permitted")
    for key, (check, expected) in _OPTION_CHECKS.items():
        if key in options and not check(options[key]):
            raise OptionsError(f"Options {key} must be {expected}")
    _check_select(options.get("select", []))
    # Copies, so that nothing done to the result reaches the caller's options.
    result.update({key: copy.copy(value) for key, value in options.items()})
    if result["get"] and (result["limit"] > 1 or result["offset"]):
        raise OptionsError("Invalid options combination. `get` implies a single result.")
    if not 0 <= result["limit"] <= MAX_LIMIT:
        raise OptionsError(f"Options limit must be between 1 and {MAX_LIMIT}")
    return result


def _lenient_get(row: Any, steps: list[Step], default: Any) -> Any:
    """Walk a select or order_by path; anything unreachable gives ``default``, never an error."""
    for key, index in steps:
        if isinstance(row, dict):
            row = row.get(key, default)
        elif isinstance(row, (list, tuple)) and index is not None and index < len(row):
            row = row[index]
        else:
            return default
    return row


def _compile_select(select: list[Any]) -> Callable[[Any], dict[str, Any]]:
    specs = [(_steps(item), None) if isinstance(item, str) else (_steps(item[0]), item[1])
             for item in select]

    def project(row: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for steps, alias in specs:
            value = _lenient_get(row, steps, _MISSING)
            if value is _MISSING:
                continue
            if isinstance(value, (dict, list)):
                value = copy.deepcopy(value)  # the projection must never alias the caller's rows
            target = out
            if alias is None:
                for key, _ in steps[:-1]:
                    if not isinstance(target.get(key), dict):
                        target[key] = {}
                    target = target[key]
            target[alias if alias is not None else steps[-1][0]] = value
        return out
    return project


def _null_smallest(pair: tuple[Any, Any]) -> tuple[bool, Any]:
    # TrueNAS' plain sort raises TypeError on null; ordering null first keeps queries working.
    return (pair[0] is not None, pair[0])


def _order(rows: list[dict[str, Any]], item: str) -> list[dict[str, Any]]:
    field, nulls = item, ""
    for prefix in ("nulls_first:", "nulls_last:"):
        if item.startswith(prefix):
            field, nulls = item[len(prefix):], prefix
            break
    descending = field.startswith("-")
    steps = _steps(field[1:] if descending else field)
    # Sorting is forgiving: anything unreachable sorts as null rather than failing the query.
    keyed = [(_lenient_get(row, steps, None), row) for row in rows]
    nulls_part: list[dict[str, Any]] = []
    if nulls:
        nulls_part = [row for key, row in keyed if key is None]
        keyed = [pair for pair in keyed if pair[0] is not None]
    try:
        keyed.sort(key=_null_smallest, reverse=descending)
    except TypeError as exc:
        raise OptionsError(f"{item}: cannot order values of incompatible types") from exc
    ordered = [row for _, row in keyed]
    if nulls == "nulls_first:":
        return nulls_part + ordered
    return ordered + nulls_part if nulls else ordered


def filter_list(
    data: Iterable[dict[str, Any]],
    filters: list[Any] | None = None,
    options: dict[str, Any] | None = None,
) -> list[dict[str, Any]] | dict[str, Any] | int:
    """Filter, project, order and page ``data`` as a TrueNAS query method would."""
    # Without select the result holds the caller's own row objects (copying 1,000 VMs per
    # query is too slow): callers must not mutate them. With select every row is a fresh copy.
    predicate = _compile_filters(filters, 0)
    opts = validate_options(options)
    project = _compile_select(opts["select"]) if opts["select"] else None
    matches = data if predicate is _always else (row for row in data if predicate(row))
    if opts["get"] and not opts["order_by"]:
        for row in matches:
            return project(row) if project else row
        raise MatchNotFound()
    # select runs before ordering, as in TrueNAS: unselected order_by fields sort as null.
    rows = [project(row) for row in matches] if project else list(matches)
    if opts["count"]:
        return len(rows)
    # Each key re-sorts the whole list, so the last order_by item is the primary one.
    for item in opts["order_by"]:
        rows = _order(rows, item)
    if opts["get"]:
        if not rows:
            raise MatchNotFound()
        return rows[0]
    if opts["offset"]:
        rows = rows[opts["offset"]:]
    if opts["limit"]:
        rows = rows[:opts["limit"]]
    return rows
