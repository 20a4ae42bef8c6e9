"""Device adapters. Vendor SDKs are imported inside their adapter only."""

from .base import Device, StreamInfo, ThreadedDevice
from .mock import DepthFrame, MockDevice, MockKinect

__all__ = ["DepthFrame", "Device", "MockDevice", "MockKinect", "StreamInfo", "ThreadedDevice"]
