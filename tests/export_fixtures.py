"""The tiny exported models the tests share, each built once per test run, also across pytest-xdist workers.

``tiny_checkpoint_and_export``: a real VLA (tiny Qwen2.5-VL from a local config, diffusers DiT head) with random
weights and its ONNX export, written and exported exactly as a trained one would be (test_export, test_runtime,
test_gpu_check). ``tiny_joint_export``: the tiny joint-space VLA the ROS end-to-end tests drive the robot with, in a
folder keyed on the code that builds it (pytest's cache keeps it between runs). A build takes 10-30 s of CPU: the
first worker builds under a file lock, the others wait for it and reuse the result. The fixtures are in conftest.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from filelock import FileLock

ROOT = Path(__file__).resolve().parents[1]
TINY_JOINT_SOURCES = ["roboalign/control/tiny_model.py", "roboalign/export/*.py", "roboalign/models/**/*.py",
                      "roboalign/spec/action_space.py", "roboalign/spec/normalization.py", "roboalign/spec/fast.py"]
T = TypeVar("T")


def built_once(folder: Path, build: Callable[[Path], T]) -> T:
    """``build(folder)`` with a file lock beside ``folder`` held, so concurrent test processes build it once
    (``build`` returns at once when ``folder`` is complete)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{folder}.lock"):
        return build(folder)


def one_thread_torch(fn: Callable[[], T]) -> T:
    """``fn()`` with torch on one thread (tiny models run fastest so), the caller's thread count restored after."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn()
    finally:
        torch.set_num_threads(old)


def _build_tiny_vla(folder: Path) -> tuple[Path, Path]:
    ckpt, onnx = folder / "vla", folder / "vla" / "onnx"
    if not (folder / "done").is_file():
        from roboalign.bench.runtime import make_tiny_vla_checkpoint
        from roboalign.export.onnx_export import export_checkpoint

        shutil.rmtree(folder, ignore_errors=True)  # a build interrupted in an earlier process
        one_thread_torch(lambda: export_checkpoint(make_tiny_vla_checkpoint(ckpt, seed=0), onnx))
        (folder / "done").touch()
    return ckpt, onnx


def tiny_checkpoint_and_export(folder: Path) -> tuple[Path, Path]:
    """(checkpoint folder, ONNX export folder) of the tiny VLA (seed 0) under ``folder``, built there once."""
    return built_once(folder, _build_tiny_vla)


def tiny_joint_export_name() -> str:
    """The tiny joint-space VLA's folder name: keyed on the source that builds it (rebuilt when that changes)."""
    h = hashlib.sha256()
    for pattern in TINY_JOINT_SOURCES:
        for f in sorted(ROOT.glob(pattern)):
            h.update(f.relative_to(ROOT).as_posix().encode() + f.read_bytes())
    return f"tiny_joint_vla_{h.hexdigest()[:16]}"


def tiny_joint_export(folder: Path) -> Path:
    """The ONNX export of the tiny joint-space VLA, ``folder/export``, built there once."""
    from roboalign.control.tiny_model import ensure_tiny_export

    return built_once(folder, lambda f: one_thread_torch(lambda: ensure_tiny_export(f)))


def copy_export(export_dir: Path, dst: Path) -> Path:
    """A private copy of an export folder (tests that corrupt files must not touch the shared one)."""
    shutil.copytree(export_dir, dst)
    return dst
