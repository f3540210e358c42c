"""The midclt command: call methods, ping, wait for the daemon and follow events."""
from __future__ import annotations

import argparse
import errno
import getpass
import json
import os
import queue
import sys
import time
from typing import Any, Callable, Sequence, TextIO

from midclt import console
from midclt.client import CALL_TIMEOUT, CONNECT_TIMEOUT, Client
from midclt.exceptions import ClientException, ConnectError
from midclt.output import JOB_PRINT_MODES, OUTPUT_FORMATS, ProgressPrinter, format_error, render
from midclt.table import parse_columns

WAITREADY_TIMEOUT = 60.0
WAITREADY_INTERVAL = 0.5
DAEMON_NOT_RUNNING = "Failed to run middleware call. Daemon not running?"


class CliError(Exception):
    """A failure already worded for the user: printed on stderr, exit status 1."""


EXAMPLES = """\
examples:
  midclt call core.ping
  midclt call vm.query '[["status.state", "=", "RUNNING"]]' '{"select": ["id", "name"]}'
  midclt -o table call vm.query                              id, name, state, vcpus, memory, autostart
  midclt -o table -c id,name,status.state,devices.0.dtype call vm.query
  midclt -o csv call audit.query
  midclt call vm.create '{"name": "demo", "memory": 512}'
  echo '{"name": "demo2", "memory": 512}' | midclt call vm.create -
  midclt call -j vm.stop 1 '{"force_after_timeout": true}'  waits for the job, progress on stderr
  midclt subscribe vm.query -n 1                            the next change of a VM, as a JSON line
  midclt console 1                                          the VM's serial console (Ctrl-] leaves)
  midclt -u ws://127.0.0.1:8016/api/current -U ops call vm.query

arguments: each ARG is a JSON value. A word that is not JSON (core.ping, 127.0.0.1) is passed as a
string, as TrueNAS' midclt does; an ARG starting with {, [ or " must be valid JSON (a typo is an error,
not a string). Tables are at most 120 characters wide: -c picks columns by dotted path.
"""


def add_output_options(parser: argparse.ArgumentParser, top: bool) -> None:
    """--output, --columns and --debug, accepted before the command and after `call` alike."""
    # After `call` they have no default, so they leave what was given before the command in place.
    defaults: dict[str, Any] = {"output": "json", "columns": None, "debug": False} if top else {}
    parser.add_argument("-o", "--output", choices=OUTPUT_FORMATS, default=defaults.get("output", argparse.SUPPRESS),
                        help="result format (default: json)")
    parser.add_argument("-c", "--columns", metavar="PATH,...", default=defaults.get("columns", argparse.SUPPRESS),
                        help="table/csv columns, dotted paths into each row (e.g. id,name,status.state)")
    parser.add_argument("--debug", action="store_true", default=defaults.get("debug", argparse.SUPPRESS),
                        help="print tracebacks with errors: midclt's own, and the server's (sent to full administrators only)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser: TrueNAS' midclt options and commands, plus output formats and waitready."""
    parser = argparse.ArgumentParser(prog="midclt", description="Call the middleware daemon's API.", epilog=EXAMPLES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-u", "--uri", help="ws://host:port/api/current, wss://… or ws+unix:///path (default: unix socket)")
    parser.add_argument("-U", "--username", help="log in as this user (password prompted if not given)")
    parser.add_argument("-P", "--password")
    parser.add_argument("-K", "--api-key", metavar="KEY|PATH", help="log in with an API key, or a file holding it")
    parser.add_argument("-t", "--timeout", type=float, help="seconds to wait for a call (waitready: for the daemon)")
    add_output_options(parser, top=True)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    call = commands.add_parser("call", help="call a method and print its result", epilog=EXAMPLES,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
    call.add_argument("-q", "--quiet", action="store_true", help="on error, print only the reason")
    call.add_argument("-j", "--job", action="store_true", help="wait for a job method to finish")
    call.add_argument("-jp", "--job-print", choices=JOB_PRINT_MODES, default="progressbar",
                      help="how to show job progress on stderr")
    add_output_options(call, top=False)
    call.add_argument("method")
    call.add_argument("args", nargs="*", metavar="ARG", help="a JSON value, or a plain word; '-' reads JSON from stdin")

    commands.add_parser("ping", help="check that the daemon answers")
    commands.add_parser("waitready", help="wait until the daemon answers (up to --timeout)")

    subscribe = commands.add_parser("subscribe", help="print events as JSON lines (e.g. vm.query: VM changes)")
    subscribe.add_argument("event")
    subscribe.add_argument("-n", "--number", type=int, help="exit after this many events")
    subscribe.add_argument("-t", "--timeout", dest="wait", type=float, help="exit 1 if not done after this many seconds")
    console = commands.add_parser("console", help="a VM's serial console in this terminal (Ctrl-] leaves)")
    console.add_argument("vm_id", type=int, metavar="VM_ID")
    return parser


def parse_call_args(args: Sequence[str], stdin: TextIO) -> list[Any]:
    """Turn command-line arguments into call params: JSON, or a plain word as a string.

    Only what looks like JSON ({, [ or ") must parse; 127.0.0.1 or core.ping stay strings as with
    TrueNAS' midclt, but a broken object is an error instead of silently becoming a string.
    """
    if list(args).count("-") > 1:
        raise CliError("Only one argument may be read from stdin ('-')")
    params = []
    for position, arg in enumerate(args, 1):
        if arg == "-":
            try:
                params.append(json.loads(stdin.read()))
            except ValueError as exc:
                raise CliError(f"Invalid JSON on stdin: {exc}") from exc
            continue
        try:
            params.append(json.loads(arg))
        except ValueError as exc:
            if arg.lstrip()[:1] in ("{", "[", '"'):
                raise CliError(f"Argument {position} is not valid JSON: {exc}\n  {arg}") from exc
            params.append(arg)
    return params


def read_api_key(value: str) -> str:
    """An API key given directly, or read from the file it names."""
    if os.path.isfile(value):
        with open(value, encoding="utf-8") as keyfile:
            return keyfile.read().strip()
    return value


def connect(ns: argparse.Namespace) -> Client:
    """Open a client as the options say and log in when credentials were given."""
    try:
        client = Client(ns.uri, timeout=ns.timeout or CONNECT_TIMEOUT)
    except ConnectError as exc:
        if exc.errno in (errno.ENOENT, errno.ECONNREFUSED):
            raise CliError(DAEMON_NOT_RUNNING) from exc
        raise CliError(str(exc)) from exc
    except ValueError as exc:  # a malformed --uri
        raise CliError(str(exc)) from exc
    try:
        if ns.api_key:
            # With -U the key is proven by SCRAM and never sent (the official client's default).
            client.login_with_api_key(read_api_key(ns.api_key), ns.username)
        elif ns.username:
            password = ns.password if ns.password is not None else getpass.getpass()
            client.login(ns.username, password)
    except ClientException as exc:
        client.close()
        # TrueNAS' midclt exits 0 after "Failed to login"; a script must be able to tell, so exit 1.
        raise CliError(f"Failed to login: {exc}") from exc
    return client


def cmd_call(ns: argparse.Namespace) -> int:
    """midclt call: print the result of one method call."""
    params = parse_call_args(ns.args, sys.stdin)
    try:
        columns = parse_columns(ns.columns) if ns.columns else None
    except ValueError as exc:
        raise CliError(f"--columns: {exc}") from exc
    printer = ProgressPrinter(sys.stderr, ns.job_print) if ns.job else None
    with connect(ns) as client:
        try:
            result = client.call(
                ns.method, *params, job=ns.job, timeout=ns.timeout or CALL_TIMEOUT,
                callback=printer.update if printer else None,
            )
        except ClientException as exc:
            print(format_error(exc, ns.quiet, ns.debug), file=sys.stderr)
            return 1
    if printer:
        printer.finish()
    text, notes = render(result, ns.output, ns.method, columns)
    print(text)
    for note in notes:
        print(note, file=sys.stderr)
    return 0


def cmd_ping(ns: argparse.Namespace) -> int:
    """midclt ping: print pong."""
    with connect(ns) as client:
        try:
            print(client.ping(ns.timeout or CONNECT_TIMEOUT))
        except ClientException as exc:
            print(f"Ping failed: {exc}", file=sys.stderr)
            return 1
    return 0


def cmd_waitready(ns: argparse.Namespace) -> int:
    """midclt waitready: retry until the daemon answers core.ping, up to --timeout seconds."""
    deadline = time.monotonic() + (ns.timeout or WAITREADY_TIMEOUT)
    while True:
        remaining = deadline - time.monotonic()
        try:
            with Client(ns.uri, timeout=max(remaining, 0.1)) as client:
                client.ping(max(remaining, 0.1))
            return 0
        except ClientException as exc:
            if time.monotonic() + WAITREADY_INTERVAL > deadline:
                print(f"Middleware is not ready: {exc}", file=sys.stderr)
                return 1
        time.sleep(WAITREADY_INTERVAL)


class _Ended:
    """Queued by the subscription's end callback, to wake the printing loop."""

    def __init__(self, error: ClientException | None) -> None:
        self.error = error


def cmd_subscribe(ns: argparse.Namespace) -> int:
    """midclt subscribe: print each event's params as one JSON line."""
    events: queue.Queue[dict[str, Any] | _Ended] = queue.Queue()
    deadline = None if ns.wait is None else time.monotonic() + ns.wait
    received = 0
    with connect(ns) as client:
        try:
            client.subscribe(ns.event, events.put, lambda error: events.put(_Ended(error)))
        except ClientException as exc:
            print(format_error(exc, debug=ns.debug), file=sys.stderr)
            return 1
        if sys.stderr.isatty():
            # A person sees what the silence is about; scripts read only stdout.
            what = f"{ns.event} events" if ns.number is None else f"{ns.number} {ns.event} event(s)"
            print(f"Waiting for {what}, printed as JSON lines (Ctrl-C to stop)", file=sys.stderr)
        while ns.number is None or received < ns.number:
            try:
                item = events.get(timeout=None if deadline is None else max(deadline - time.monotonic(), 0))
            except queue.Empty:
                print(f"Timed out after {received} event(s)", file=sys.stderr)
                return 1
            if isinstance(item, _Ended):
                if item.error is None:
                    return 0
                print(format_error(item.error, debug=ns.debug), file=sys.stderr)
                return 1
            print(json.dumps(item), flush=True)
            received += 1
    return 0



def cmd_console(ns: argparse.Namespace) -> int:
    """midclt console: ask for a console URI, then relay the terminal to it (midclt/console.py)."""
    with connect(ns) as client:
        uri = client.call("vm.get_console_web_uri", ns.vm_id)
    return console.run(uri, ns.uri, ns.vm_id)

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "call": cmd_call,
    "ping": cmd_ping,
    "waitready": cmd_waitready,
    "subscribe": cmd_subscribe,
    "console": cmd_console,
}


def main(argv: Sequence[str] | None = None) -> int:
    """Run midclt with the given arguments (default: sys.argv[1:]); returns the exit status."""
    ns = build_parser().parse_args(argv)
    try:
        return COMMANDS[ns.command](ns)
    except CliError as exc:
        print(exc, file=sys.stderr)
        return 1
    except ClientException as exc:  # e.g. the connection dropped mid-call
        print(format_error(exc, debug=ns.debug), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: quietly stop, as other CLI tools do.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a bug of midclt's own: one line unless --debug
        if ns.debug:
            raise
        print(f"midclt: {type(exc).__name__}: {exc} (--debug shows the traceback)", file=sys.stderr)
        return 1
