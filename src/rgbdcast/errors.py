"""Every exception rgbdcast raises, in one hierarchy.

::

    RgbdcastError
     +-- UsageError (also ValueError)      the caller misused the API or the CLI
     +-- ProtocolError                     bytes from the network broke the protocol
     |    +-- CodecError                   a payload could not be encoded or decoded
     +-- DeviceError                       a device failed to open or stopped working
     |    +-- MissingDependencyError       an optional extra or SDK is not installed
     +-- ConnectionError_                  a server did not answer in time
     |    +-- ServerTimeout
     +-- RecordingError                    a recording cannot be read or written
"""

from __future__ import annotations

__all__ = [
    "CodecError",
    "ConnectionError_",
    "DeviceError",
    "MissingDependencyError",
    "ProtocolError",
    "RecordingError",
    "RgbdcastError",
    "ServerTimeout",
    "UsageError",
]


class RgbdcastError(Exception):
    """Base class of every rgbdcast error."""


class UsageError(RgbdcastError, ValueError):
    """The caller passed something that cannot work (bad argument, unknown id, ...)."""


class ProtocolError(RgbdcastError):
    """Raised when some low-level error in the network protocol has been detected."""


class CodecError(ProtocolError):
    """A payload could not be encoded or decoded."""


class DeviceError(RgbdcastError):
    """A device could not be opened or stopped delivering frames."""


class MissingDependencyError(DeviceError):
    """An optional dependency is missing; the message names the command that installs it."""


class ConnectionError_(RgbdcastError):
    """A server could not be reached."""


class ServerTimeout(ConnectionError_):
    """A server did not reply within the allowed time."""


class RecordingError(RgbdcastError):
    """A recording cannot be read (not MCAP, truncated before any data, no rgbdcast streams)
    or written (the disk is full, the folder does not exist)."""
