"""Export: a VLA checkpoint -> per-module ONNX graphs + manifest (+ TensorRT engines), with parity checks.

Heavy dependencies (torch, onnx, tensorrt) are imported by the submodules only when used.
"""

from roboalign.runtime.manifest import FORMAT, MODULES, ManifestError, load_manifest

__all__ = ["FORMAT", "MODULES", "ManifestError", "load_manifest"]
