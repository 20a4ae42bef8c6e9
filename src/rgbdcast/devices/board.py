"""The calibration board: a ChArUco board (OpenCV's ``cv2.aruco``), named in one string.

``charuco:COLSxROWS:SQUARE_M:MARKER_M:DICT`` (e.g. ``charuco:7x5:0.08:0.06:DICT_5X5_100``) is a
board of COLS x ROWS squares of SQUARE_M metres with ArUco markers of MARKER_M metres from the
dictionary DICT. :data:`DEFAULT_BOARD` is the one the mock shows on its wall and
``rgbdcast calibrate --print-board`` prints. Board coordinates: x along the columns, y along the
rows, z out of the board's back (OpenCV's convention), metres, from the board's top-left corner.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import UsageError
from .base import require

__all__ = ["DEFAULT_BOARD", "BoardSpec"]

DEFAULT_BOARD = "charuco:7x5:0.1:0.075:DICT_5X5_100"


@dataclass(frozen=True)
class BoardSpec:
    cols: int
    rows: int
    square_m: float
    marker_m: float
    dictionary: str

    @classmethod
    def parse(cls, text: str) -> BoardSpec:
        m = re.fullmatch(r"charuco:(\d+)x(\d+):([0-9.]+):([0-9.]+):(DICT_\w+)", text.strip())
        if m is None:
            raise UsageError(
                f"board {text!r} is not charuco:COLSxROWS:SQUARE_M:MARKER_M:DICT "
                f"(e.g. {DEFAULT_BOARD})"
            )
        cols, rows = int(m.group(1)), int(m.group(2))
        square, marker = float(m.group(3)), float(m.group(4))
        if not (3 <= cols <= 40 and 3 <= rows <= 40):
            raise UsageError(f"a board has 3..40 squares a side, got {cols}x{rows}")
        if not (0 < marker < square <= 1.0):
            raise UsageError(
                f"markers must be smaller than squares (<= 1 m), got {marker}, {square}"
            )
        cv2 = require("cv2", "webcam")
        if not hasattr(cv2.aruco, m.group(5)):
            raise UsageError(f"unknown ArUco dictionary {m.group(5)} (e.g. DICT_5X5_100)")
        return cls(cols, rows, square, marker, m.group(5))

    def __str__(self) -> str:
        return (
            f"charuco:{self.cols}x{self.rows}:{self.square_m:g}:{self.marker_m:g}:{self.dictionary}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "charuco",
            "cols": self.cols,
            "rows": self.rows,
            "square_m": self.square_m,
            "marker_m": self.marker_m,
            "dictionary": self.dictionary,
        }

    @property
    def size_m(self) -> tuple[float, float]:
        return self.cols * self.square_m, self.rows * self.square_m

    def board(self) -> Any:
        """The ``cv2.aruco.CharucoBoard``."""
        cv2 = require("cv2", "webcam")
        dictionary = cv2.aruco.getPredefinedDictionary(getattr(cv2.aruco, self.dictionary))
        return cv2.aruco.CharucoBoard(
            (self.cols, self.rows), self.square_m, self.marker_m, dictionary
        )

    def image(self, px_per_square: int = 120, margin_px: int = 0) -> np.ndarray:
        """The board as a grey image (uint8), *px_per_square* pixels a square."""
        w, h = self.cols * px_per_square, self.rows * px_per_square
        img = self.board().generateImage(
            (w + 2 * margin_px, h + 2 * margin_px), marginSize=margin_px
        )
        return np.asarray(img, np.uint8)
