"""The bench package imports and its command line takes each bench name (the benches are not run here)."""
from __future__ import annotations

import pytest

from bench.__main__ import parse_args


@pytest.mark.parametrize("name", ["rpc", "vm", "all"])
def test_parser_accepts_each_bench(name: str) -> None:
    assert parse_args([name]).bench == name


def test_parser_defaults_to_all_and_rejects_unknown() -> None:
    assert parse_args([]).bench == "all"
    with pytest.raises(SystemExit):
        parse_args(["nope"])


def test_bench_modules_import() -> None:
    from bench import common, echo, rpc, vm
    assert callable(rpc.run) and callable(vm.run) and callable(echo.main)
    assert common.percentile([1.0, 2.0, 3.0], 50) == 2.0


def test_dispatch_table_measures_both_callers(monkeypatch: pytest.MonkeyPatch) -> None:
    from bench import dispatch
    monkeypatch.setattr(dispatch, "CALLS", 50)
    monkeypatch.setattr(dispatch, "RUNS", 1)
    rendered = dispatch.dispatch_table().render()
    assert "root (unix socket)" in rendered and "anonymous (TCP)" in rendered


def test_velocity_bench_is_offered() -> None:
    from bench import velocity
    assert callable(velocity.run) and parse_args(["velocity", "--upload-gib", "0.5"]).upload_gib == 0.5


def test_data_bench_defaults_to_five_rounds_and_reports_ranges() -> None:
    from bench import data
    assert parse_args(["data"]).rounds is None and parse_args(["data", "--rounds", "7"]).rounds == 7
    assert callable(data.run) and data.spread([2.5, 0.25, 1.0]) == "0.25-2.50"


def test_data_bench_reads_the_steps_of_a_job_log() -> None:
    from bench.data import job_steps
    log = ("block nodes found: 3 ms\nRAM saved: 594 ms\ntook snapshot mw-b95e2ee61fa24d7b of the disks (1 disk(s)); "
           "guest paused for 905 ms\ndisks and NVRAM put back to snapshot mw-b95e2ee61fa24d7b: 26 ms\n"
           "restored the saved guest in 1980 ms\ninspected the source: 16 ms (/a/b.qcow2: qcow2, 1024 bytes)\n")
    assert job_steps(log) == {"block nodes found": 3, "RAM saved": 594, "disks and NVRAM put back to snapshot": 26,
                              "restored the saved guest": 1980, "inspected the source": 16}
