"""Rendering for the midclt command line: results (json, yaml, table, csv), errors and job progress."""
from __future__ import annotations

import json
from typing import Any, Sequence, TextIO

import yaml

from midclt.exceptions import ClientException, ValidationErrors
from midclt.table import table, to_csv

OUTPUT_FORMATS = ("json", "yaml", "table", "csv")
JOB_PRINT_MODES = ("progressbar", "description")
BAR_WIDTH = 40
# Move the cursor one line up, then erase that whole line.
UP_AND_ERASE = "\x1b[1A\x1b[2K"


def format_result(result: Any, output: str = "json", method: str | None = None,
                  columns: Sequence[str] | None = None) -> str:
    """Render a call result in one of OUTPUT_FORMATS, without a trailing newline."""
    return render(result, output, method, columns)[0]


def render(result: Any, output: str = "json", method: str | None = None,
           columns: Sequence[str] | None = None) -> tuple[str, list[str]]:
    """A result in one of OUTPUT_FORMATS, and notes for stderr (e.g. table columns left out).

    method picks a table's default columns; columns (dotted paths) override them in tables and CSV.
    """
    if output == "yaml":
        return format_yaml(result), []
    if output == "table":
        return table(result, method, columns) or (format_json(result), [])
    if output == "csv":
        return to_csv(result, method, columns), []
    return format_json(result), []


def format_json(result: Any) -> str:
    """Render a result as JSON, except that ints and strings print raw as TrueNAS' midclt does."""
    # bool is an int, but TrueNAS printing Python's True/False is a wart we do not keep.
    if isinstance(result, str) or (isinstance(result, int) and not isinstance(result, bool)):
        return str(result)
    return json.dumps(result)


def format_yaml(result: Any) -> str:
    """Render a result as a YAML document."""
    text = yaml.safe_dump(result, default_flow_style=False, sort_keys=False, allow_unicode=True)
    # A bare scalar comes out as "value\n...\n": drop the document-end marker.
    return text.removesuffix("...\n").rstrip("\n")


def format_error(exc: ClientException, quiet: bool = False, debug: bool = False) -> str:
    """Describe a failed call: validation lines, or the reason plus (unless quiet) its extra data.

    The server's traceback is for developers: shown only with debug.
    """
    if isinstance(exc, ValidationErrors):
        return str(exc)
    lines = [exc.error]
    if not quiet and exc.extra is not None:
        lines.append(f"Extra: {json.dumps(exc.extra, default=str)}")
    formatted = (exc.trace or {}).get("formatted")
    if debug and formatted:
        lines.append(str(formatted).rstrip("\n"))
    return "\n".join(lines)


def render_progress(job: dict[str, Any]) -> list[str]:
    """The two progress lines for a job: its status and a 40-character bar."""
    progress = job.get("progress") or {}
    percent = min(max(float(progress.get("percent") or 0), 0.0), 100.0)
    status = f"Status: {progress.get('description') or ''}"
    if progress.get("extra"):
        status += f" Extra: {progress['extra']}"
    filled = int(BAR_WIDTH * percent / 100)
    bar = "#" * filled + "_" * (BAR_WIDTH - filled)
    return [status.rstrip(), f"Total Progress: [{bar}] {percent:.2f}%"]


class ProgressPrinter:
    """Shows job events on a stream: a bar (redrawn in place on a TTY) or each new description."""

    def __init__(self, stream: TextIO, mode: str = "progressbar", tty: bool | None = None) -> None:
        self._stream = stream
        self._mode = mode
        self._tty = stream.isatty() if tty is None else tty
        self._shown: list[str] = []
        self._job: dict[str, Any] | None = None

    def update(self, job: dict[str, Any]) -> None:
        """Show a job event, when it changes what is displayed."""
        self._job = job
        if self._mode == "description":
            description = (job.get("progress") or {}).get("description")
            if description and [description] != self._shown:
                self._write([description])
        else:
            lines = render_progress(job)
            if lines != self._shown:
                if self._tty and self._shown:
                    self._stream.write(UP_AND_ERASE * len(self._shown))
                self._write(lines)

    def finish(self) -> None:
        """Redraw the bar at 100% once the job succeeded (its last event may have shown less)."""
        if self._mode == "progressbar" and self._job is not None:
            progress = {**(self._job.get("progress") or {}), "percent": 100}
            self.update({**self._job, "progress": progress})

    def _write(self, lines: list[str]) -> None:
        """Print lines and remember them as what is displayed."""
        self._stream.write("".join(line + "\n" for line in lines))
        self._stream.flush()
        self._shown = lines
