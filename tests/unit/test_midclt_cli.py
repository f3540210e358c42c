"""Unit tests for midclt: arguments, output, progress, errors, and the client against a scripted server."""
from __future__ import annotations

import asyncio
import errno
import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import WSMsgType, web

from midclt import AsyncClient, CallTimeout, Client, ClientException, ConnectError, ValidationErrors
from midclt.cli import CliError, build_parser, main, parse_call_args, read_api_key
from midclt.exceptions import errname
from midclt.output import ProgressPrinter, UP_AND_ERASE, format_error, format_result, render_progress
from midclt.protocol import error_from_rpc, job_outcome, parse_uri


# --- argument parsing -------------------------------------------------------------------------

def test_parser_global_options_and_call() -> None:
    ns = build_parser().parse_args(
        ["-u", "ws://h:1/api/current", "-U", "root", "-P", "pw", "-t", "5", "--output", "yaml",
         "call", "-q", "-j", "-jp", "description", "vm.query", "[]", "x"]
    )
    assert (ns.uri, ns.username, ns.password, ns.timeout, ns.output) == ("ws://h:1/api/current", "root", "pw", 5.0, "yaml")
    assert (ns.command, ns.quiet, ns.job, ns.job_print, ns.method, ns.args) == (
        "call", True, True, "description", "vm.query", ["[]", "x"]
    )


def test_parser_defaults() -> None:
    ns = build_parser().parse_args(["call", "core.ping"])
    assert ns.uri is None and ns.timeout is None and ns.output == "json" and ns.columns is None
    assert ns.debug is False
    assert ns.job is False and ns.job_print == "progressbar" and ns.quiet is False and ns.args == []


def test_parser_subscribe_has_its_own_timeout() -> None:
    ns = build_parser().parse_args(["-t", "3", "subscribe", "vm.query", "-n", "2", "-t", "7"])
    assert (ns.timeout, ns.event, ns.number, ns.wait) == (3.0, "vm.query", 2, 7.0)


def test_parser_output_options_after_call_too() -> None:
    ns = build_parser().parse_args(["-o", "csv", "call", "-c", "id,name", "--debug", "vm.query"])
    assert (ns.output, ns.columns, ns.debug) == ("csv", "id,name", True)
    ns = build_parser().parse_args(["-o", "table", "-c", "id", "call", "vm.query"])
    assert (ns.output, ns.columns, ns.debug) == ("table", "id", False)


def test_help_has_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and "midclt -o table -c " in out and "plain word" not in out.split("examples:")[0]


@pytest.mark.parametrize("argv", [[], ["call"], ["-o", "xml", "ping"], ["call", "-jp", "bar", "m"]])
def test_parser_rejects(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == 2


def test_call_args_are_json_or_plain_words() -> None:
    args = ["1", "true", "null", '{"a": [1]}', "[1, 2]", '"quoted"', "plain", "1.5", "127.0.0.1", "core.ping"]
    assert parse_call_args(args, io.StringIO()) == [
        1, True, None, {"a": [1]}, [1, 2], "quoted", "plain", 1.5, "127.0.0.1", "core.ping"]


@pytest.mark.parametrize("arg", ["{broken", '{"name": "x",}', '[["id", "=", 1]', ' {"a": 1', '"unterminated'])
def test_call_args_that_look_like_json_must_be_json(arg: str) -> None:
    with pytest.raises(CliError, match="Argument 2 is not valid JSON"):
        parse_call_args(["1", arg], io.StringIO())


def test_call_args_dash_reads_stdin() -> None:
    assert parse_call_args(["a", "-"], io.StringIO('{"name": "vm1"}\n')) == ["a", {"name": "vm1"}]
    with pytest.raises(CliError, match="stdin"):
        parse_call_args(["-"], io.StringIO("not json"))
    with pytest.raises(CliError, match="Only one"):
        parse_call_args(["-", "-"], io.StringIO("1"))


def test_api_key_from_file_or_value(tmp_path: Path) -> None:
    keyfile = tmp_path / "key"
    keyfile.write_text("1-secret\n")
    assert read_api_key(str(keyfile)) == "1-secret"
    assert read_api_key("2-other") == "2-other"


# --- output -------------------------------------------------------------------------------------

@pytest.mark.parametrize("result, text", [
    ("pong", "pong"), (5, "5"), (True, "true"), (False, "false"), (None, "null"), (1.5, "1.5"),
    ([1, "a"], '[1, "a"]'), ({"a": None}, '{"a": null}'),
])
def test_json_output(result: Any, text: str) -> None:
    assert format_result(result, "json") == text


def test_yaml_output() -> None:
    data = [{"id": 1, "name": "vm1", "devices": [{"dtype": "NIC"}]}]
    assert yaml.safe_load(format_result(data, "yaml")) == data
    assert format_result("pong", "yaml") == "pong"
    assert format_result(None, "yaml") == "null"


def test_table_of_objects_keeps_scalar_columns() -> None:
    rows = [
        {"id": 1, "name": "vm1", "devices": [], "autostart": True, "status": {"state": "RUNNING"}},
        {"id": 12, "name": "a-long-name", "devices": [{}], "autostart": None, "memory": 512},
    ]
    assert format_result(rows, "table").splitlines() == [
        "id  name         autostart  state    memory",
        "1   vm1          true       RUNNING  null",
        "12  a-long-name  null       null     512",
    ]


def test_table_of_one_object_and_of_scalars() -> None:
    assert format_result({"id": 1, "status": {"state": "RUNNING"}, "name": "x"}, "table").splitlines() == [
        "id            1",
        "status.state  RUNNING",
        "name          x",
    ]
    assert format_result(["a", 2], "table") == "a\n2"
    assert format_result("pong", "table") == "pong"
    assert format_result([[1], {"a": 1}], "table") == '[[1], {"a": 1}]'


# --- progress -----------------------------------------------------------------------------------

def test_render_progress() -> None:
    lines = render_progress({"progress": {"percent": 53, "description": "Copying", "extra": None}})
    assert lines == ["Status: Copying", "Total Progress: [" + "#" * 21 + "_" * 19 + "] 53.00%"]
    assert render_progress({}) == ["Status:", "Total Progress: [" + "_" * 40 + "] 0.00%"]
    assert render_progress({"progress": {"percent": 100, "description": "x", "extra": {"a": 1}}})[0] == (
        "Status: x Extra: {'a': 1}"
    )


def _job(percent: int, description: str) -> dict[str, Any]:
    return {"id": 1, "progress": {"percent": percent, "description": description, "extra": None}}


def test_progress_bar_plain_lines_when_not_a_tty() -> None:
    stream = io.StringIO()
    printer = ProgressPrinter(stream, "progressbar", tty=False)
    printer.update(_job(10, "a"))
    printer.update(_job(10, "a"))  # unchanged: not printed again
    printer.update(_job(50, "b"))
    printer.finish()
    text = stream.getvalue()
    assert "\x1b" not in text
    assert text.splitlines() == [
        "Status: a", "Total Progress: [" + "#" * 4 + "_" * 36 + "] 10.00%",
        "Status: b", "Total Progress: [" + "#" * 20 + "_" * 20 + "] 50.00%",
        "Status: b", "Total Progress: [" + "#" * 40 + "] 100.00%",
    ]


def test_progress_bar_redraws_on_a_tty() -> None:
    stream = io.StringIO()
    printer = ProgressPrinter(stream, "progressbar", tty=True)
    printer.update(_job(10, "a"))
    printer.update(_job(60, "b"))
    first, second = stream.getvalue().split(UP_AND_ERASE * 2)
    assert first.startswith("Status: a\n") and second.startswith("Status: b\n") and second.endswith("60.00%\n")


def test_progress_descriptions_only() -> None:
    stream = io.StringIO()
    printer = ProgressPrinter(stream, "description", tty=True)
    for job in (_job(0, ""), _job(10, "one"), _job(20, "one"), _job(30, "two")):
        printer.update(job)
    printer.finish()
    assert stream.getvalue() == "one\ntwo\n"


# --- errors -------------------------------------------------------------------------------------

def test_validation_error_from_response() -> None:
    exc = error_from_rpc({"code": -32602, "message": "Invalid params", "data": {
        "error": 22, "errname": "EINVAL", "reason": "...", "trace": None,
        "extra": [["vm_create.memory", "Too small", 22], [None, "Nope", 2]],
    }})
    assert isinstance(exc, ValidationErrors)
    assert [tuple(e) for e in exc.errors] == [("vm_create.memory", "Too small", 22), (None, "Nope", 2)]
    assert format_error(exc) == "[EINVAL] vm_create.memory: Too small\n[ENOENT] ALL: Nope"


def test_call_error_from_response() -> None:
    trace = {"class": "CallError", "formatted": "Traceback...\nCallError: boom\n", "repr": "CallError()"}
    exc = error_from_rpc({"code": -32001, "message": "Method call error", "data": {
        "error": 12, "errname": "ENOMEM", "reason": "[ENOMEM] boom", "trace": trace, "extra": None,
    }})
    assert type(exc) is ClientException
    assert (exc.error, exc.errno, exc.trace, exc.extra, exc.code) == ("[ENOMEM] boom", 12, trace, None, -32001)
    assert format_error(exc) == format_error(exc, quiet=True) == "[ENOMEM] boom"  # no trace for people
    assert format_error(exc, debug=True) == "[ENOMEM] boom\nTraceback...\nCallError: boom"


def test_other_errors_and_errnames() -> None:
    exc = error_from_rpc({"code": -32601, "message": "Method does not exist"})
    assert (str(exc), exc.code) == ("Method does not exist", -32601)
    assert format_error(ClientException("bad", 22, None, {"k": 1})) == 'bad\nExtra: {"k": 1}'
    assert (errname(207), errname(22), errname(99999), errname(None)) == ("ENOTAUTHENTICATED", "EINVAL", "EUNKNOWN", "EUNKNOWN")


def test_job_outcomes() -> None:
    assert job_outcome({"state": "SUCCESS", "result": [1]}) == [1]
    with pytest.raises(ValidationErrors) as verr:
        job_outcome({"state": "FAILED", "error": "x", "exc_info": {"type": "VALIDATION", "extra": [["a", "bad", 22]]}})
    assert str(verr.value) == "[EINVAL] a: bad"
    with pytest.raises(ClientException) as failed:
        job_outcome({"state": "FAILED", "error": "[EFAULT] no", "exception": "Traceback",
                     "exc_info": {"type": "CallError", "errno": 14, "extra": None, "repr": "r"}})
    assert (failed.value.error, failed.value.errno) == ("[EFAULT] no", 14)
    assert failed.value.trace is not None and failed.value.trace["formatted"] == "Traceback"
    with pytest.raises(ClientException, match="aborted"):
        job_outcome({"state": "ABORTED", "error": None})


def test_parse_uri() -> None:
    assert parse_uri(None) == ("ws://localhost/api/current", "/run/middleware/middlewared.sock")
    assert parse_uri("ws+unix:///tmp/x.sock") == ("ws://localhost/api/current", "/tmp/x.sock")
    assert parse_uri("wss://nas/api/current") == ("wss://nas/api/current", None)
    with pytest.raises(ValueError):
        parse_uri("http://nas/api/current")


# --- the client against a scripted WebSocket server ------------------------------------------------

class ScriptedServer:
    """A tiny JSON-RPC server speaking the daemon's protocol for a handful of test methods."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        subscribed: set[str] = set()
        async for msg in ws:
            if msg.type is WSMsgType.TEXT:
                message = json.loads(msg.data)
                self.requests.append(message)
                await self.answer(ws, message, subscribed)
        return ws

    async def answer(self, ws: web.WebSocketResponse, message: dict[str, Any], subscribed: set[str]) -> None:
        method, params, call_id = message["method"], message["params"], message["id"]

        async def reply(result: Any) -> None:
            await ws.send_json({"jsonrpc": "2.0", "id": call_id, "result": result})

        async def error(code: int, data: dict[str, Any]) -> None:
            await ws.send_json({"jsonrpc": "2.0", "id": call_id, "error": {"code": code, "message": "m", "data": data}})

        async def event(collection: str, msg: str, fields: dict[str, Any]) -> None:
            if collection in subscribed:
                params = {"msg": msg, "collection": collection, "id": fields["id"], "fields": fields}
                await ws.send_json({"jsonrpc": "2.0", "method": "collection_update", "params": params})

        if method == "core.set_options":
            await reply({"legacy_jobs": False, "private_methods": False, "py_exceptions": False})
        elif method == "core.subscribe":
            subscribed.add(params[0])
            await event(params[0], "added", {"id": "early"})  # sent before the reply on purpose
            await reply(f"sub-{params[0]}")
        elif method in ("core.unsubscribe", "core.ping"):
            await reply(None if method == "core.unsubscribe" else "pong")
        elif method in ("test.job", "test.bad_job"):
            job = {"id": 7, "message_ids": [call_id], "state": "WAITING", "result": None,
                   "progress": {"percent": 0, "description": "", "extra": None}}
            await event("core.get_jobs", "added", job)
            await event("core.get_jobs", "changed", {**job, "state": "RUNNING",
                                                     "progress": {"percent": 50, "description": "half", "extra": None}})
            if method == "test.job":
                await event("core.get_jobs", "changed", {**job, "state": "SUCCESS", "result": params})
            else:
                await event("core.get_jobs", "changed", {**job, "state": "FAILED", "error": "bad", "exc_info": {
                    "type": "VALIDATION", "extra": [["x", "wrong", 22]]}})
            await reply("final response, ignored")
        elif method == "test.error":
            await error(-32001, {"error": 13, "reason": "Not authorized", "trace": None, "extra": None})
        elif method == "test.end_sub":
            # The notice goes before the reply (as test.emit's event does), so the test may look for it as soon as
            # the call returns.
            await ws.send_json({"jsonrpc": "2.0", "method": "notify_unsubscribed", "params": {
                "collection": params[0], "error": {"error": 5, "reason": "gone", "trace": None, "extra": None}}})
            await reply(None)
        elif method == "test.emit":
            await event(params[0], "changed", {"id": 1, "n": params[1]})
            await reply(None)
        elif method == "test.close":
            await ws.close()
        # test.hang: never answered


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ScriptedServer, str]]:
    """The scripted server on a unix socket, served from its own thread and loop."""
    scripted = ScriptedServer()
    socket_path = str(tmp_path_factory.mktemp("midclt") / "test.sock")
    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_get("/api/current", scripted.handle)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.UnixSite(runner, socket_path).start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield scripted, f"ws+unix://{socket_path}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result()
    loop.call_soon_threadsafe(loop.stop)
    thread.join()
    loop.close()


async def test_async_client_job_flow(server: tuple[ScriptedServer, str]) -> None:
    scripted, uri = server
    async with await AsyncClient.connect(uri) as client:
        assert await client.ping() == "pong"
        assert await client.call("test.job", 1) == 7  # returns on the ADDED event naming the call
        seen: list[dict[str, Any]] = []
        assert await client.call("test.job", 1, "a", job=True, callback=seen.append) == [1, "a"]
        assert [job["state"] for job in seen] == ["WAITING", "RUNNING", "SUCCESS"]
        assert seen[1]["progress"]["description"] == "half"
        with pytest.raises(ValidationErrors) as exc:
            await client.call("test.bad_job", job=True)
        assert str(exc.value) == "[EINVAL] x: wrong"
    methods = [request["method"] for request in scripted.requests]
    assert methods[:3] == ["core.set_options", "core.ping", "core.subscribe"]
    assert scripted.requests[0]["params"] == [{"legacy_jobs": False}]
    assert methods.count("core.subscribe") == 1


async def test_async_client_errors_and_subscriptions(server: tuple[ScriptedServer, str]) -> None:
    _, uri = server
    client = await AsyncClient.connect(uri)
    with pytest.raises(ClientException) as exc:
        await client.call("test.error")
    assert (exc.value.error, exc.value.errno) == ("Not authorized", 13)
    with pytest.raises(CallTimeout):
        await client.call("test.hang", timeout=0.2)

    events: list[dict[str, Any]] = []
    ends: list[ClientException | None] = []
    ident = await client.subscribe("vm.query", events.append, ends.append)
    assert ident == "sub-vm.query"
    await client.call("test.emit", "vm.query", 1)
    await client.call("test.emit", "other", 2)
    assert [e["fields"]["id"] for e in events] == ["early", 1]
    await client.call("test.end_sub", "vm.query")
    assert len(ends) == 1 and ends[0] is not None and ends[0].error == "gone"
    await client.call("test.emit", "vm.query", 3)
    assert len(events) == 2

    await client.subscribe("vm.query", events.append, ends.append)
    pending = asyncio.ensure_future(client.call("test.hang", timeout=None))
    await asyncio.sleep(0)
    with pytest.raises(ClientException):
        await client.call("test.close", timeout=5)
    with pytest.raises(ClientException, match="closed"):
        await pending
    assert client.closed and len(ends) == 2
    with pytest.raises(ClientException):
        await client.ping()
    await client.close()


async def test_connect_to_a_missing_socket(tmp_path: Path) -> None:
    with pytest.raises(ConnectError) as exc:
        await AsyncClient.connect(f"ws+unix://{tmp_path}/none.sock")
    assert exc.value.errno == errno.ENOENT


def test_sync_client(server: tuple[ScriptedServer, str]) -> None:
    _, uri = server
    with Client(uri) as client:
        assert client.ping() == "pong"
        assert client.call("test.job", 2, job=True) == [2]

        def reenter(params: dict[str, Any]) -> None:
            errors.append(pytest.raises(RuntimeError, client.ping))

        errors: list[Any] = []
        client.subscribe("vm.query", reenter)
        client.call("test.emit", "vm.query", 1)
        assert len(errors) == 2  # the early event and the emitted one, each refused
    assert client.closed


# --- the command line against the scripted server -------------------------------------------------

def test_cli_call_ping_and_errors(server: tuple[ScriptedServer, str], capsys: pytest.CaptureFixture[str]) -> None:
    _, uri = server
    assert main(["-u", uri, "call", "core.ping"]) == 0
    assert capsys.readouterr().out == "pong\n"
    assert main(["-u", uri, "ping"]) == 0
    assert capsys.readouterr().out == "pong\n"
    assert main(["-u", uri, "call", "test.error"]) == 1
    assert capsys.readouterr().err == "Not authorized\n"
    assert main(["-u", uri, "call", "-j", "test.bad_job"]) == 1
    assert "[EINVAL] x: wrong" in capsys.readouterr().err


def test_cli_job_progress_and_output(server: tuple[ScriptedServer, str], capsys: pytest.CaptureFixture[str]) -> None:
    _, uri = server
    assert main(["-u", uri, "-o", "yaml", "call", "-j", "test.job", "1", "x"]) == 0
    captured = capsys.readouterr()
    assert captured.out == "- 1\n- x\n"
    assert "Status: half" in captured.err and captured.err.rstrip().endswith("100.00%")
    assert main(["-u", uri, "call", "-j", "-jp", "description", "test.job"]) == 0
    assert capsys.readouterr().err == "half\n"
    assert main(["-u", uri, "call", "test.job"]) == 0
    assert capsys.readouterr().out == "7\n"


def test_cli_subscribe(server: tuple[ScriptedServer, str], capsys: pytest.CaptureFixture[str]) -> None:
    _, uri = server
    assert main(["-u", uri, "subscribe", "vm.query", "-n", "1"]) == 0
    assert json.loads(capsys.readouterr().out)["fields"] == {"id": "early"}
    assert main(["-u", uri, "subscribe", "vm.query", "-n", "2", "-t", "0.3"]) == 1
    assert "Timed out" in capsys.readouterr().err


def test_cli_daemon_not_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    uri = f"ws+unix://{tmp_path}/none.sock"
    assert main(["-u", uri, "call", "core.ping"]) == 1
    assert capsys.readouterr().err == "Failed to run middleware call. Daemon not running?\n"
    assert main(["-u", uri, "-t", "0.3", "waitready"]) == 1
    assert "not ready" in capsys.readouterr().err


def test_cli_waitready(server: tuple[ScriptedServer, str]) -> None:
    assert main(["-u", server[1], "waitready"]) == 0


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_cli_subscribe_says_what_it_waits_for_on_a_terminal(server: tuple[ScriptedServer, str],
                                                            monkeypatch: pytest.MonkeyPatch,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    stderr = _Tty()
    monkeypatch.setattr("sys.stderr", stderr)
    assert main(["-u", server[1], "subscribe", "vm.query", "-n", "1"]) == 0
    assert stderr.getvalue().startswith("Waiting for 1 vm.query event(s), printed as JSON lines")
    assert json.loads(capsys.readouterr().out)["fields"] == {"id": "early"}  # stdout holds only the events
