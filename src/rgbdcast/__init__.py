"""rgbdcast: stream color, depth, infrared and body frames from RGB-D sensors over the network.

>>> from rgbdcast import Server, Client, MockDevice
"""

from ._version import __version__
from .aio import AsyncClient, AsyncSubscription
from .client import Client, Subscription
from .compress import DepthFrameCompressor
from .devices import DepthFrame, Device, MockDevice, MockKinect, StreamInfo
from .errors import (
    CodecError,
    DeviceError,
    MissingDependencyError,
    ProtocolError,
    RgbdcastError,
    ServerTimeout,
    UsageError,
)
from .frames import (
    Body,
    Encoded,
    Frame,
    HandState,
    Intrinsics,
    Joint,
    JointType,
    StreamKind,
    TrackingState,
)
from .net.discovery import ServerBrowser, ServerInfo
from .protocol.control import EndpointType
from .protocol.envelope import EncodedFrame
from .server import Server

__all__ = [
    "AsyncClient",
    "AsyncSubscription",
    "Body",
    "Client",
    "CodecError",
    "DepthFrame",
    "DepthFrameCompressor",
    "Device",
    "DeviceError",
    "Encoded",
    "EncodedFrame",
    "EndpointType",
    "Frame",
    "HandState",
    "Intrinsics",
    "Joint",
    "JointType",
    "MissingDependencyError",
    "MockDevice",
    "MockKinect",
    "ProtocolError",
    "RgbdcastError",
    "Server",
    "ServerBrowser",
    "ServerInfo",
    "ServerTimeout",
    "StreamInfo",
    "StreamKind",
    "Subscription",
    "TrackingState",
    "UsageError",
    "__version__",
]
