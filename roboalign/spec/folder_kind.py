"""What kind of folder a path is (VLA checkpoint, aligned MLLM checkpoint, export, dataset), so that an error for
a folder of the wrong kind says what it is and which command wants it, instead of listing missing files."""

from __future__ import annotations

from pathlib import Path

# kind -> (a file only that kind holds, what it is, the command that takes it)
KINDS: dict[str, tuple[str, str, str]] = {
    "vla": ("head.safetensors", "a VLA checkpoint", "roboalign export / eval --checkpoint"),
    "aligned": ("align_spec.json", "an aligned MLLM checkpoint (base / SFT / GRPO)",
                "roboalign train grpo --init-checkpoint, or roboalign train vla --set backbone=..."),
    "export": ("manifest.json", "an ONNX export", "--backend onnxruntime|tensorrt --checkpoint"),
    "dataset": ("meta.json", "an episode dataset", "--data / --dataset"),
    "lerobot": ("meta/info.json", "a LeRobotDataset v3", "`roboalign dataset convert DIR OUT --to roboalign`"),
    "recording": ("episode.json", "a recorded rosbag2 episode", "`roboalign dataset convert DIR OUT --to roboalign`"),
}


def folder_kind(path: str | Path) -> str | None:
    """The kind of ``path`` (a key of :data:`KINDS`), or None when it is none of them or does not exist."""
    p = Path(path)
    for kind, (marker, _, _) in KINDS.items():
        if (p / marker).is_file() or (kind == "dataset" and (p / "episodes").is_dir()):
            return kind
    return None


def wrong_kind(path: str | Path, expected: str) -> str:
    """``" ({path} is an ONNX export, which --backend ... takes)"`` when ``path`` is another kind; else ``""``."""
    kind = folder_kind(path)
    if kind is None or kind == expected:
        return ""
    _, what, takes = KINDS[kind]
    return f" ({path} is {what}, which {takes} takes; this needs {KINDS[expected][1]})"
