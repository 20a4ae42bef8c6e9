"""The blocking client's view of the server's clock: rounds of ``time`` probes, on the I/O
thread every :data:`CLOCK_PERIOD_S` and on demand (the estimator is
:class:`rgbdcast.protocol.clock.ClockSync`)."""

from __future__ import annotations

import threading
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any

from ._requests import ControlChannel, Request
from .errors import ProtocolError, ServerTimeout, UsageError
from .protocol.clock import ClockEstimate, ClockSync
from .protocol.control import MessageType

__all__ = ["CLOCK_PERIOD_S", "ClientClock"]

CLOCK_PERIOD_S = 10.0
"""How often the server's clock offset is measured again (a round of probes)."""


class ClientClock:
    """Mixed into :class:`~rgbdcast.client.Client`."""

    _clock_sync: ClockSync
    _thread: threading.Thread | None
    _channel: ControlChannel
    control_endpoint: str
    response_timeout: int
    clock: ClockEstimate | None

    def _command(self, fn: Any) -> Future[Any]:
        raise NotImplementedError

    def _probe_clock(self, channel: ControlChannel) -> list[Future[Any]]:
        """Queue one round of clock probes (on the I/O thread)."""
        if self._clock_sync.unsupported:
            return []
        self._clock_sync.reset_round()
        probes = [Request(MessageType.time) for _ in range(self._clock_sync.probes)]
        for probe in probes:
            channel.add(probe)
        return [p.future for p in probes]

    def clock_offset(
        self, timeout: float | None = None, fresh: bool = False
    ) -> ClockEstimate | None:
        """The server's clock against ours (``clock offset: +37.02 ms ± 0.05 ms``), measured
        now if there is no estimate yet (or *fresh*); None if the server cannot tell its time
        (an older server)."""
        if self.clock is not None and not fresh:
            return self.clock
        if threading.current_thread() is self._thread:
            raise UsageError("blocking calls cannot be made from a signal handler")
        futures = self._command(lambda: self._probe_clock(self._channel)).result(timeout=5)
        wait = timeout if timeout is not None else self.response_timeout / 1000 * 3 + 1
        for fut in futures:
            try:
                fut.result(timeout=wait)
            except FutureTimeout:
                raise ServerTimeout(f"{self.control_endpoint} did not answer time") from None
            except ProtocolError:
                break  # an older server: no time request
        return self.clock
