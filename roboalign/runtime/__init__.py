"""Runtime: the ``Policy`` API every backend (torch, onnxruntime, tensorrt, scripted expert) implements."""

from roboalign.spec.policy_io import ActionChunk, BasePolicy, Observation

__all__ = ["ActionChunk", "BasePolicy", "Observation", "Policy", "SpecMismatchError"]


def __getattr__(name: str):  # lazy: ``import roboalign.runtime`` stays light for the ROS adapters
    if name == "Policy":
        from roboalign.runtime.policy import Policy

        return Policy
    if name == "SpecMismatchError":
        from roboalign.runtime.checkpoint_specs import SpecMismatchError

        return SpecMismatchError
    raise AttributeError(f"module 'roboalign.runtime' has no attribute {name!r}")
