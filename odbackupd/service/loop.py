"""The service's one asyncio loop: signals, sd_notify, the controller and the transport.

Lifecycle (as Moonraker's components have it): build → async start → serve → stop.
SIGTERM/SIGINT stop cleanly (runs cancel, uploads checkpoint, exit 0 within the stop
timeout; the next start resumes them); SIGHUP re-reads the configuration and keeps the old
one when the new one is invalid, saying why in the log and in ``STATUS=``.

The transport (the D-Bus adapter) is passed in by main.py as a factory, so this module
never imports bus/: ``make_transport(controller)`` returns an object with ``async start()``
(raises when it cannot serve) and ``async stop()``.
"""
from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import Config
from ..journal import setup_logging
from .controller import Controller
from .delivery import Delivery
from .errors import InvalidConfig
from .events import Event, EventKind
from .notify import Notifier

log = logging.getLogger("odbackupd")

DEFAULT_STOP_TIMEOUT = 45.0  # below systemd's default TimeoutStopSec=90s


class Service:
    def __init__(
        self,
        config: Config,
        config_path: Path | None,
        *,
        make_transport: Callable[[Controller], Any] | None = None,
        notifier: Notifier | None = None,
        stop_timeout: float = DEFAULT_STOP_TIMEOUT,
        log_level_fixed: bool = False,
    ) -> None:
        self.controller = Controller(config, config_path.resolve() if config_path else None)
        self.make_transport = make_transport
        self.notifier = notifier or Notifier.from_environment()
        self.stop_timeout = stop_timeout
        self.log_level_fixed = log_level_fixed
        self._stop = asyncio.Event()
        self._reloading: asyncio.Task | None = None
        self._reload_again = False

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_stop_signal, sig)
        loop.add_signal_handler(signal.SIGHUP, self._on_reload_signal)
        ctl = self.controller
        ctl.subscribe(self._on_event)
        from ..statefile import StateUnavailable

        try:
            await ctl.start()
        except StateUnavailable as e:  # read-only or full state directory: one line, exit 1
            log.error("%s", e)
            return 1
        delivery = Delivery(lambda: ctl.config, ctl.state)  # notifications, metrics file
        delivery.start()
        transport = None
        if self.make_transport is not None:
            transport = self.make_transport(ctl)
            try:
                await transport.start()
            except Exception as e:  # noqa: BLE001 - say why and exit non-zero
                log.error("cannot serve on D-Bus: %s", e)
                await delivery.stop()
                await ctl.stop(self.stop_timeout)
                return 1
        watchdog = None
        if self.notifier.watchdog_interval:
            watchdog = loop.create_task(self._watchdog(self.notifier.watchdog_interval))
        log.info("odbackupd serving: %d jobs (%s)",
                 len(ctl.config.jobs), ", ".join(ctl.job_names()) or "none")
        self.notifier.ready(ctl.status_line)
        try:
            await self._stop.wait()
        finally:
            self.notifier.stopping()
            log.info("stopping: cancelling runs "
                     "(their uploads checkpoint; the next start resumes them)")
            if self._reloading is not None:
                await asyncio.gather(self._reloading, return_exceptions=True)
            await delivery.stop()
            await ctl.stop(self.stop_timeout)
            if transport is not None:
                await transport.stop()
            if watchdog is not None:
                watchdog.cancel()
            self.notifier.close()
            log.info("stopped")
        return 0

    def _on_stop_signal(self, sig: signal.Signals) -> None:
        log.info("received %s", signal.Signals(sig).name)
        self._stop.set()

    def _on_reload_signal(self) -> None:
        if self._reloading is not None and not self._reloading.done():
            self._reload_again = True  # a second SIGHUP during a reload: read the file once more
            return
        self._reloading = asyncio.get_running_loop().create_task(self.reload())

    async def reload(self) -> list[str]:
        """Re-read the configuration, telling systemd around it (RELOADING=1 … READY=1)."""
        while True:
            self._reload_again = False
            self.notifier.reloading()
            try:
                before = self.controller.config.daemon.log_level
                warnings = await self.controller.reload()
                after = self.controller.config.daemon.log_level
                if after != before and not self.log_level_fixed:
                    setup_logging("odbackupd", after)
            except InvalidConfig as e:
                log.error("reload failed: %s", e)
                warnings = []
            finally:
                self.notifier.ready(self.controller.status_line)
            if not self._reload_again:
                return warnings

    def _on_event(self, ev: Event) -> None:
        if ev.kind in (EventKind.DAEMON_CHANGED, EventKind.PROGRESS):
            self.notifier.status(self.controller.status_line)

    async def _watchdog(self, interval: float) -> None:
        # pinged from the loop itself: if the loop hangs, the pings stop and systemd acts
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(interval)


def serve(
    config: Config,
    config_path: Path | None,
    *,
    make_transport: Callable[[Controller], Any] | None = None,
    stop_timeout: float = DEFAULT_STOP_TIMEOUT,
    log_level_fixed: bool = False,
) -> int:
    """Run the service until SIGTERM/SIGINT; returns the exit status."""

    async def _main() -> int:
        svc = Service(config, config_path, make_transport=make_transport, stop_timeout=stop_timeout,
                      log_level_fixed=log_level_fixed)
        return await svc.run()

    return asyncio.run(_main())
