"""Recording to and reading from MCAP files (see ``docs/recording.md``)."""

from .reader import ChannelInfo, Recording
from .writer import McapRecorder

__all__ = ["ChannelInfo", "McapRecorder", "Recording"]
