"""Entry point: read the config, build the Middleware, serve until SIGTERM/SIGINT."""
from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
import time
from typing import Sequence

from middlewared import config as config_
from middlewared.api.server import Listeners, ListenError
from middlewared.datastore import Datastore
from middlewared.middleware import Middleware
from middlewared.plugins import PLUGINS

logger = logging.getLogger("middlewared")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="middlewared", description="Manage virtual machines through libvirt.")
    parser.add_argument("--config", help="TOML config file (default: $MIDDLEWARED_CONFIG, then "
                                         f"{config_.DEFAULT_PATH} when present, else built-in defaults)")
    parser.add_argument("--debug", action="store_true", help="log at DEBUG level")
    return parser.parse_args(argv)


async def serve(config: config_.Config) -> int:
    """Run the daemon until a signal asks it to stop; return the exit code (ListenError when it cannot listen)."""
    started = time.monotonic()
    middleware = Middleware(config, PLUGINS)
    middleware.datastore = Datastore(config.database.path)
    listeners = Listeners(middleware)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await middleware.datastore.open()
        await middleware.setup()
        await listeners.start()
    except ListenError:
        await middleware.teardown()
        await middleware.datastore.close()
        raise
    logger.info("ready in %.2f s: %s:%d and %s", time.monotonic() - started, config.server.host,
                config.server.port, config.server.unix_socket)
    await stop.wait()
    logger.info("shutting down")
    await listeners.stop()
    await middleware.teardown()
    await middleware.datastore.close()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the daemon in the foreground."""
    args = parse_args(argv)
    try:
        config = config_.load(args.config)
    except config_.ConfigError as e:
        print(f"middlewared: bad configuration: {e}", file=sys.stderr)
        return 1
    level = logging.DEBUG if args.debug else getattr(logging, config.log.level)
    logging.basicConfig(level=level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # libvirt's asyncio event glue logs every handle update at DEBUG: noise, even for --debug.
    logging.getLogger("virEventAsyncIOImpl").setLevel(logging.INFO)
    try:
        return asyncio.run(serve(config))
    except ListenError as e:
        # Said once everything has stopped (asyncio.run waits for the worker threads, which may still log), so
        # the reason is the last line the daemon writes.
        print(f"middlewared: {e}", file=sys.stderr)
        return 1
