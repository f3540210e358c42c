"""`python -m bench [rpc|vm|all|lifecycle|data|velocity|ui|stats|ports]`: run the benchmarks and print each figure beside its raw baseline."""
from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Sequence

BENCHES = ("rpc", "vm", "all", "lifecycle", "data", "velocity", "ui", "stats", "ports")  # all but the first three take minutes: not in all


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("bench", nargs="?", choices=BENCHES, default="all", help="which bench to run [all]")
    parser.add_argument("--duration", type=float, default=1.5,
                        help="rpc: seconds each throughput figure is measured for, split in rounds [1.5]")
    parser.add_argument("--vms", type=int, default=1000, help="vm, ui, stats: how many VMs to define [1000]")
    parser.add_argument("--domains", type=int, default=500, help="ports: how many other domains to define [500]")
    parser.add_argument("--starts", type=int, default=5, help="vm: how many start latencies to take [5]")
    parser.add_argument("--running", type=int, default=10, help="stats: how many of the VMs run [10]")
    parser.add_argument("--intervals", type=int, default=10, help="stats: 2 s intervals each CPU figure spans [10]")
    parser.add_argument("--rounds", type=int, help="lifecycle, data, velocity: counted rounds on each side [3, 5, 3]")
    parser.add_argument("--upload-gib", type=float, default=1.0, help="velocity: GiB uploaded [1]")
    parser.add_argument("--import-gib", type=float, default=2.0, help="data: GiB written in the imported image [2]")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.bench in ("rpc", "all"):
        from bench import rpc
        asyncio.run(rpc.run(duration=args.duration))
    if args.bench in ("vm", "all"):
        from bench import vm
        asyncio.run(vm.run(vms=args.vms, starts=args.starts))
    if args.bench == "lifecycle":
        from bench import lifecycle
        asyncio.run(lifecycle.run(rounds=args.rounds or 3))
    if args.bench == "velocity":
        from bench import velocity
        asyncio.run(velocity.run(vms=args.vms, upload_gib=args.upload_gib, rounds=args.rounds or 3))
    if args.bench == "stats":
        from bench import stats
        asyncio.run(stats.run(vms=args.vms, running=args.running, intervals=args.intervals))
    if args.bench == "data":
        from bench import data
        asyncio.run(data.run(size=int(args.import_gib * 2**30), rounds=args.rounds or 5))
    if args.bench == "ports":
        from bench import ports
        asyncio.run(ports.run(domains=args.domains))
    if args.bench == "ui":
        from bench import ui
        asyncio.run(ui.run(vms=args.vms))
    return 0


if __name__ == "__main__":
    sys.exit(main())
