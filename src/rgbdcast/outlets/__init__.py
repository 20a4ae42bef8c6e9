"""Every way out of a server besides its ZeroMQ publishers, behind one interface.

An outlet is given to the server when it is made (``Server(outlets=[WebOutlet(), ...])``) and
hears about devices as they come and go; it takes their streams' frames through the ports
:mod:`rgbdcast.outlets.base` describes, and the server knows none of them by name. The four
that ship: :class:`WebOutlet` (the browser viewer), :class:`TcpGatewayOutlet` (plain TCP,
Camera2TCP clients), :class:`ZenohOutlet` and :class:`Ros2Outlet`. Write your own by
implementing :class:`Outlet`.
"""

from .base import DevicePort, DeviceState, EncodedTap, FrameTap, Outlet, OutletHost, StreamPort
from .gateway import TcpGatewayOutlet
from .ros2 import Ros2Outlet
from .web import WebOutlet
from .zenoh import ZenohOptions, ZenohOutlet, ZenohSession

__all__ = [
    "DevicePort",
    "DeviceState",
    "EncodedTap",
    "FrameTap",
    "Outlet",
    "OutletHost",
    "Ros2Outlet",
    "StreamPort",
    "TcpGatewayOutlet",
    "WebOutlet",
    "ZenohOptions",
    "ZenohOutlet",
    "ZenohSession",
]
