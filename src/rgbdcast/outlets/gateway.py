"""The plain-TCP gateway as an outlet: ``serve --tcp-gateway``. The gateway itself (Camera2TCP
services and the framed ``LIST``/``GET`` mode) is :mod:`rgbdcast.outlets.gatewayserver`; this
hands it every device's frames as they are delivered, before encoding, since it converts on
request."""

from __future__ import annotations

import logging
from typing import Any

from ..errors import UsageError
from ..frames import StreamKind
from ..net.addresses import advertise_host, make_endpoint, parse_hostport
from .base import DevicePort, OutletHost
from .gatewayserver import TcpGateway

__all__ = ["TcpGatewayOutlet"]

log = logging.getLogger(__name__)


class TcpGatewayOutlet:
    """``serve --tcp-gateway``: the plain-TCP gateway as an outlet of a server.

    *address* is ``PORT`` or ``HOST:PORT`` (the host defaults to the server's bind address; port
    0 picks a free one). The other options are :class:`TcpGateway`'s. The gateway cannot
    authenticate its clients, so it refuses to run on a secure server unless *allow_insecure*.
    """

    name = "gateway"

    def __init__(
        self,
        address: str | int,
        *,
        services: dict[str, str] | None = None,
        max_clients: int = 32,
        idle_timeout: float = 60.0,
        send_timeout: float = 10.0,
        allow_insecure: bool = False,
    ) -> None:
        parse_hostport(address, "")  # a malformed address is refused here
        self._address = address
        self._options: dict[str, Any] = {
            "services": services,
            "max_clients": max_clients,
            "idle_timeout": idle_timeout,
            "send_timeout": send_timeout,
        }
        self.allow_insecure = allow_insecure
        self.gateway: TcpGateway | None = None
        """The running gateway (None while the server is stopped)."""
        self._host: OutletHost | None = None
        self._bind: tuple[str, int] = ("", 0)

    def attach(self, host: OutletHost) -> None:
        if host.secure is not None and not self.allow_insecure:
            raise UsageError(
                "the plain-TCP gateway cannot authenticate clients: it does not start on a "
                "secure server unless explicitly allowed (--gateway-allow-insecure)"
            )
        self._host = host
        self._bind = parse_hostport(self._address, host.address)

    def start(self) -> None:
        host, port = self._bind
        gateway = TcpGateway(host, port, self._devices, **self._options)
        try:
            gateway.start()
        except OSError as exc:
            raise UsageError(
                f"cannot listen on {host}:{port} for the TCP gateway: {exc.strerror}"
                " (choose another --tcp-gateway port)"
            ) from exc
        self.gateway = gateway
        log.info("TCP gateway on %s:%d", host, gateway.port)

    def stop(self) -> None:
        gateway, self.gateway = self.gateway, None
        if gateway is not None:
            gateway.stop()

    def device_added(self, device: DevicePort) -> None:
        gateway = self.gateway
        if gateway is not None:
            for port in device.streams.values():
                port.tap_frames(gateway.submit)

    def device_removed(self, device_id: str) -> None:
        """The gateway keeps nothing per device but its newest frames, which stay answerable."""

    def _devices(self) -> dict[str, dict[StreamKind, Any]]:
        assert self._host is not None
        return {d.id: dict(d.streams) for d in self._host.device_states()}

    @property
    def port(self) -> int | None:
        """The port the gateway listens on, while it runs."""
        return self.gateway.port if self.gateway is not None else None

    @property
    def endpoint(self) -> str | None:
        """``tcp://host:port`` of the gateway, while it runs."""
        gateway = self.gateway
        if gateway is None:
            return None
        return make_endpoint(advertise_host(gateway.host), gateway.port)

    def endpoints(self) -> dict[str, str]:
        endpoint = self.endpoint
        return {"tcp_gateway": endpoint} if endpoint else {}

    def stats(self) -> dict[str, Any] | None:
        return self.gateway.stats.to_dict() if self.gateway is not None else None
