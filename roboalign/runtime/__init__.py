"""Runtime: the ``Policy`` API every backend (torch, onnxruntime, tensorrt, scripted expert) implements."""

from roboalign.runtime.types import ActionChunk, BasePolicy, Observation

__all__ = ["ActionChunk", "BasePolicy", "Observation"]
