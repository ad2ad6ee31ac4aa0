"""Deserialised (rosbags) ``sensor_msgs/Image`` and ``CompressedImage`` messages -> (H, W, 3) uint8 RGB, no ROS."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

# encoding -> (channels, OpenCV conversion to RGB or None)
_RAW = {"rgb8": (3, None), "bgr8": (3, cv2.COLOR_BGR2RGB), "rgba8": (4, cv2.COLOR_RGBA2RGB),
        "bgra8": (4, cv2.COLOR_BGRA2RGB), "mono8": (1, cv2.COLOR_GRAY2RGB)}


def image_msg_to_rgb(msg: Any, msgtype: str, where: str = "image") -> np.ndarray:
    """RGB pixels of a deserialised image message; raises ValueError naming ``where`` and the field."""
    if msgtype.endswith("CompressedImage"):
        img = cv2.imdecode(np.asarray(msg.data, np.uint8), cv2.IMREAD_COLOR)
        if img is None:
            raise ValueError(f"{where}: CompressedImage.data ({msg.format!r}) does not decode")
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    enc = str(msg.encoding).lower()
    if enc not in _RAW:
        raise ValueError(f"{where}: Image.encoding {msg.encoding!r} not supported; valid: {', '.join(_RAW)}")
    ch, conv = _RAW[enc]
    h, w, step = int(msg.height), int(msg.width), int(msg.step)
    buf = np.asarray(msg.data, np.uint8)
    if h == 0 or w == 0 or step < w * ch or buf.size < h * step:
        raise ValueError(f"{where}: Image {w}x{h} {enc} step {step} does not fit its {buf.size} data bytes")
    px = buf[:h * step].reshape(h, step)[:, :w * ch].reshape(h, w, ch)
    return np.ascontiguousarray(px) if conv is None else cv2.cvtColor(px, conv)
