"""One tiny VLA checkpoint and its ONNX export, built once per test session for test_export/test_runtime.

The checkpoint is a real VLA (tiny Qwen2.5-VL from a local config, diffusers DiT head) with random
weights, written and exported exactly as a trained one would be. Building + exporting takes ~10-20 s,
so both test files share the result through this cached function (a temp folder removed at exit).
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path


@functools.lru_cache(maxsize=1)
def tiny_checkpoint_and_export() -> tuple[Path, Path]:
    import torch

    from roboalign.bench.runtime import make_tiny_vla_checkpoint
    from roboalign.export.onnx_export import export_checkpoint

    torch.set_num_threads(1)
    root = Path(tempfile.mkdtemp(prefix="roboalign-export-test-"))
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    ckpt = make_tiny_vla_checkpoint(root / "vla", seed=0)
    export_checkpoint(ckpt, root / "vla" / "onnx")
    return ckpt, root / "vla" / "onnx"


def copy_export(export_dir: Path, dst: Path) -> Path:
    """A private copy of an export folder (tests that corrupt files must not touch the shared one)."""
    shutil.copytree(export_dir, dst)
    return dst
