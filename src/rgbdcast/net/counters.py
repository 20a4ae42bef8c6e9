"""The base of every endpoint's counters (what ``stats`` reports)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["Counters"]


@dataclass
class Counters:
    """Plain integer counters; subclasses are dataclasses that add fields."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)
