"""A Foxglove layout for rgbdcast topics (pure: devices in, the layout's JSON document out).

How this works: the panels' settings are built with the Foxglove SDK's own typed layout
classes (``foxglove.layouts``, the ``[foxglove]`` extra), so their keys are Foxglove's, and set
into the document the Foxglove app exports and imports (``configById`` keyed
``<PanelType>!<id>``, and a ``layout`` tree of row and column splits). Three panels: the first
device's color with every body drawn over it (through its calibration and ``/tf``), its depth
with a colormap, and a 3-D panel with every device's point cloud and bodies, following the
first device's upright ``<device>_view`` frame. ``docs/foxglove-layout.json`` is this for the
mock (``rgbdcast foxglove-layout``); live servers and recordings use the same topics.
"""

from __future__ import annotations

import json
from typing import Any

from ..errors import UsageError
from .foxglove import sdk_module

__all__ = ["DEPTH_RANGE_MM", "layout"]

DEPTH_RANGE_MM = (500.0, 4500.0)
"""The depth colormap's range: a Kinect v2's working range."""


def _config(model: Any) -> dict[str, Any]:
    return dict(json.loads(model.to_json()))


def layout(devices: list[str]) -> dict[str, Any]:
    """The layout for *devices* (at least one; images of the first, 3-D of all)."""
    if not devices:
        raise UsageError("a layout needs at least one device")
    fl = sdk_module("foxglove.layouts")
    first = devices[0]
    bodies = {
        f"/{d}/bodies": fl.BaseRendererSceneUpdateTopicSettings(visible=True) for d in devices
    }
    color = fl.ImageConfig(
        image_mode=fl.ImageModeConfig(
            image_topic=f"/{first}/color",
            calibration_topic=f"/{first}/color/calibration",
        ),
        topics=dict(bodies),
    )
    low, high = DEPTH_RANGE_MM
    depth = fl.ImageConfig(
        image_mode=fl.ImageModeConfig(
            image_topic=f"/{first}/depth",
            calibration_topic=f"/{first}/depth/calibration",
            color_mode="colormap",
            color_map="turbo",
            min_value=low,
            max_value=high,
        ),
    )
    topics: dict[str, Any] = dict(bodies)
    for d in devices:
        topics[f"/{d}/points"] = fl.BaseRendererPointCloudTopicSettings(
            visible=True, color_mode="rgba-fields", point_size=2.0
        )
    scene = fl.ThreeDeeConfig(
        follow_tf=f"{first}_view",
        follow_mode="follow-pose",
        camera_state=fl.ThreeDeeCameraState(
            distance=5.0, phi=60.0, theta_offset=180.0, target_offset=(2.5, 0.0, 0.0)
        ),
        topics=topics,
    )
    ids = {"color": "Image!rgbdcast-color", "depth": "Image!rgbdcast-depth", "3d": "3D!rgbdcast"}
    return {
        "configById": {
            ids["color"]: {**_config(color), "foxglovePanelTitle": f"{first} color, bodies"},
            ids["depth"]: {**_config(depth), "foxglovePanelTitle": f"{first} depth"},
            ids["3d"]: {**_config(scene), "foxglovePanelTitle": "points and bodies"},
        },
        "globalVariables": {},
        "userNodes": {},
        "playbackConfig": {"speed": 1.0},
        "layout": {
            "direction": "row",
            "first": {
                "direction": "column",
                "first": ids["color"],
                "second": ids["depth"],
                "splitPercentage": 50,
            },
            "second": ids["3d"],
            "splitPercentage": 40,
        },
    }
