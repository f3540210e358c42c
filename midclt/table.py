"""Results as tables for people (at most 120 characters wide) and as CSV: columns are dotted paths into each row."""
from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timezone
from typing import Any, Sequence

TABLE_WIDTH = 120
CELL_WIDTH = 40  # a default column wider than this is cut
MIN_WIDTH = 4
GAP = "  "
ELLIPSIS = "…"
# What `--output table` shows for these methods' rows unless -c says otherwise (the rest: every scalar field).
DEFAULT_COLUMNS: dict[str, tuple[str, ...]] = {
    "vm.query": ("id", "name", "status.state", "vcpus", "memory", "autostart"),
    "vm.device.query": ("id", "vm", "attributes.dtype", "attributes.type", "order"),
    "core.get_jobs": ("id", "method", "state", "progress.percent", "progress.description", "time_started"),
    "audit.query": ("audit_id", "timestamp", "username", "event", "method", "success"),
    "user.query": ("id", "username", "full_name", "enabled", "locked", "roles"),
    "group.query": ("id", "name", "builtin", "roles"),
}


def parse_columns(text: str) -> tuple[str, ...]:
    """`-c id,name,status.state` -> the dotted paths; empty names are refused."""
    columns = tuple(part.strip() for part in text.split(","))
    if not all(columns):
        raise ValueError(f"empty column name in {text!r}")
    return columns


def lookup(row: Any, path: str) -> Any:
    """The value at a dotted path (``status.state``, ``devices.0.dtype``), or None where it is missing."""
    value = row
    for key in path.split("."):
        if isinstance(value, dict):
            value = value.get(key)
        elif isinstance(value, list) and key.isdigit() and int(key) < len(value):
            value = value[int(key)]
        else:
            return None
    return value


def is_date(value: Any) -> bool:
    """TrueNAS sends times as ``{"$date": milliseconds since the epoch}``."""
    return isinstance(value, dict) and set(value) == {"$date"} and isinstance(value["$date"], (int, float))


def is_scalar(value: Any) -> bool:
    """Whether a value is shown whole in one cell."""
    return value is None or isinstance(value, (str, int, float, bool)) or is_date(value)


def cell(value: Any) -> str:
    """Text of one cell: strings as they are, times in UTC, anything else as compact JSON."""
    if isinstance(value, str):
        return value
    if is_date(value):
        when = datetime.fromtimestamp(value["$date"] / 1000, timezone.utc)
        return when.strftime("%Y-%m-%d %H:%M:%SZ")
    return json.dumps(value)


def leaves(value: Any, prefix: str = "") -> list[str]:
    """Dotted paths of the scalar fields of an object, nested objects included, lists left out."""
    paths: list[str] = []
    for key, item in value.items():
        path = f"{prefix}{key}"
        if is_scalar(item):
            paths.append(path)
        elif isinstance(item, dict):
            paths.extend(leaves(item, path + "."))
    return paths


def scalar_columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Paths (first-seen order) that are scalar in every row that has them."""
    seen: dict[str, None] = {}
    for row in rows:
        seen.update(dict.fromkeys(leaves(row)))
    return [path for path in seen if all(is_scalar(lookup(row, path)) for row in rows)]


def default_columns(rows: Sequence[dict[str, Any]], method: str | None) -> list[str]:
    """The method's usual columns that the rows have, else every scalar field."""
    preferred = [path for path in DEFAULT_COLUMNS.get(method or "", ())
                 if any(lookup(row, path) is not None for row in rows)]
    return preferred or scalar_columns(rows)


def headers(columns: Sequence[str]) -> list[str]:
    """A column's last path component (``status.state`` -> ``state``) unless two columns would share it."""
    last = [path.rsplit(".", 1)[-1] for path in columns]
    return [short if last.count(short) == 1 else path for short, path in zip(last, columns)]


def fit(texts: list[list[str]], width: int, may_drop: bool) -> tuple[list[int], int]:
    """Column widths that fit `width` characters, and how many leading columns are kept.

    Chosen columns are narrowed; default ones are first cut to CELL_WIDTH, then dropped from the right.
    """
    widths = [max(len(row[i]) for row in texts) for i in range(len(texts[0]))]
    if may_drop:
        widths = [min(w, max(CELL_WIDTH, len(texts[0][i]))) for i, w in enumerate(widths)]
        while len(widths) > 1 and sum(widths) + len(GAP) * (len(widths) - 1) > width:
            widths.pop()
    while sum(widths) + len(GAP) * (len(widths) - 1) > width and max(widths) > MIN_WIDTH:
        widest = widths.index(max(widths))
        widths[widest] -= 1
    return widths, len(widths)


def clip(text: str, width: int) -> str:
    """Text cut to width, the cut marked with an ellipsis."""
    return text if len(text) <= width else text[:width - 1] + ELLIPSIS


def one_line(text: str) -> str:
    """A cell's text on one line: line breaks and tabs (a job's error, a description) shown escaped, so that a
    row stays one line and its columns stay aligned."""
    return text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", " ")


def align(texts: list[list[str]], widths: list[int]) -> str:
    """Cells left-aligned in columns two spaces apart; no trailing blanks."""
    return "\n".join(GAP.join(clip(text, w).ljust(w) for text, w in zip(row, widths)).rstrip() for row in texts)


def table(result: Any, method: str | None = None, columns: Sequence[str] | None = None,
          width: int = TABLE_WIDTH) -> tuple[str, list[str]] | None:
    """A result as a table and notes for stderr (columns left out); None if it is no table."""
    if isinstance(result, dict):
        paths = list(columns or leaves(result))
        pairs = [[path, one_line(cell(lookup(result, path)))] for path in paths]
        return (align(pairs, fit(pairs, width, False)[0]) if pairs else ""), []
    if isinstance(result, list) and result and all(isinstance(row, dict) for row in result):
        paths = list(columns or default_columns(result, method))
        if not paths:
            return "", []
        texts = [headers(paths), *[[one_line(cell(lookup(row, path))) for path in paths] for row in result]]
        widths, kept = fit(texts, width, columns is None)
        notes = []
        if kept < len(paths):
            notes.append(f"not shown: {', '.join(paths[kept:])} (choose columns with -c, or use -o json)")
        return align([row[:kept] for row in texts], widths), notes
    if isinstance(result, list) and all(is_scalar(item) for item in result):
        return "\n".join(clip(one_line(cell(item)), width) for item in result), []
    return None


def to_csv(result: Any, method: str | None = None, columns: Sequence[str] | None = None) -> str:
    """A result as CSV with a header row: a list of objects by column, one object as path,value rows."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    if isinstance(result, dict):
        writer.writerow(["field", "value"])
        writer.writerows([path, csv_cell(lookup(result, path))] for path in (columns or leaves(result)))
    elif isinstance(result, list) and all(isinstance(row, dict) for row in result):
        paths = list(columns or (default_columns(result, method) if result else []))
        writer.writerow(paths)
        writer.writerows([csv_cell(lookup(row, path)) for path in paths] for row in result)
    elif isinstance(result, list):
        writer.writerows([csv_cell(item)] for item in result)
    else:
        writer.writerow([csv_cell(result)])
    return out.getvalue().rstrip("\n")


def csv_cell(value: Any) -> str:
    """A CSV field: None is empty, the rest as in a table cell."""
    return "" if value is None else cell(value)
