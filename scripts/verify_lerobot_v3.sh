#!/usr/bin/env bash
# Read a LeRobot v3 dataset we wrote with the real `lerobot` package, in a throwaway venv beside ours:
#   scripts/verify_lerobot_v3.sh DATASET_DIR
# or write one with lerobot's own LeRobotDataset.create/add_frame/save_episode, for our reader to read:
#   scripts/verify_lerobot_v3.sh --write OUT_DIR   (then: roboalign dataset validate OUT_DIR --full; convert)
# lerobot 0.6 needs Python >= 3.12; 0.4.4 is the newest on PyPI for our 3.11 and reads codebase v3.0. It is
# installed --no-deps into a venv that sees the project venv's packages (torch, datasets, pandas, pyarrow, av)
# through a .pth; torchvision from PyPI does not load beside torch 2.13, and lerobot.datasets.utils imports
# torchvision.transforms at module level only, so the venv gets an empty import stand-in for it. Checked with
# lerobot's own code: LeRobotDatasetMetadata (info, tasks, episodes, stats), LeRobotDataset's parquet frames cast
# to lerobot's features, per-episode index/timestamps, and lerobot's get_video_info on every video vs info.json.
# (Video frames are decoded by our PyAV reader; lerobot's decoders need torchcodec or a working torchvision.)
set -euo pipefail
MODE=read
if [ "${1:-}" = "--write" ]; then MODE=write; shift; fi
DIR=$(realpath -m "$1")
VENV=${LEROBOT_VENV:-/tmp/lerobot_venv}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -x "$VENV/bin/python" ]; then
  "$ROOT/.venv/bin/python" -m venv "$VENV"
  "$VENV/bin/pip" install -q --no-deps lerobot==0.4.4
fi
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$ROOT/.venv/lib/python3.11/site-packages" > "$SITE/zz_roboalign_venv.pth"
STUB="$VENV/torchvision_stub/torchvision"
mkdir -p "$STUB"
echo '"""Import stand-in: lerobot.datasets.utils imports torchvision.transforms; the readers used here never call it."""
from . import transforms  # noqa: F401' > "$STUB/__init__.py"
echo '"""Empty: only imported."""' > "$STUB/transforms.py"
if [ "$MODE" = write ]; then
PYTHONPATH="$VENV/torchvision_stub" HF_HUB_OFFLINE=1 "$VENV/bin/python" - "$DIR" <<'PY'
import sys

import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset

features = {
    "action": {"dtype": "float32", "shape": (7,), "names": ["dx", "dy", "dz", "droll", "dpitch", "dyaw", "gripper"]},
    "observation.state": {"dtype": "float32", "shape": (8,), "names": None},
    "observation.images.agentview": {"dtype": "video", "shape": (64, 64, 3), "names": ["height", "width", "channels"]},
}
ds = LeRobotDataset.create("local/by_lerobot", fps=10, root=sys.argv[1], features=features, use_videos=True)
rng = np.random.default_rng(0)
for e, n in enumerate([12, 9]):
    for i in range(n):  # frame i of episode e: red level 10 i + 50 e, a bright block at row 4 i
        img = np.zeros((64, 64, 3), np.uint8)
        img[:, :, 0] = 10 * i + 50 * e
        img[(4 * i) % 56:(4 * i) % 56 + 8, 10:18] = 250
        ds.add_frame({"action": rng.uniform(-1, 1, 7).astype(np.float32),
                      "observation.state": rng.normal(size=8).astype(np.float32),
                      "observation.images.agentview": img, "task": f"pick up the thing {e}"})
    ds.save_episode()
ds.finalize()
print(f"lerobot wrote {sys.argv[1]}: {ds.meta.total_episodes} episodes, {ds.meta.total_frames} frames")
PY
exit 0
fi
PYTHONPATH="$VENV/torchvision_stub" HF_HUB_OFFLINE=1 "$VENV/bin/python" - "$DIR" <<'PY'
import sys

import numpy as np
from lerobot.datasets.lerobot_dataset import LeRobotDataset, LeRobotDatasetMetadata
from lerobot.datasets.video_utils import get_video_info

root = sys.argv[1]
m = LeRobotDatasetMetadata("local/check", root=root)
ds = LeRobotDataset("local/check", root=root, download_videos=False)
assert len(ds) == m.total_frames and ds.num_episodes == m.total_episodes, (len(ds), m.total_frames)
hf = ds.hf_dataset.with_format("numpy")
for e in range(m.total_episodes):
    ep = m.episodes[e]
    rows = hf[ep["dataset_from_index"]:ep["dataset_to_index"]]
    assert (rows["episode_index"] == e).all() and (rows["frame_index"] == np.arange(ep["length"])).all(), e
    assert np.allclose(rows["timestamp"], rows["frame_index"] / m.fps, atol=1e-4), e
    for key in m.video_keys:
        info = get_video_info(ds.root / m.get_video_file_path(e, key))
        want = m.features[key]["info"]
        assert all(info[k] == want[k] for k in ("video.height", "video.width", "video.codec", "video.pix_fmt")), (key, info)
        assert ep[f"videos/{key}/to_timestamp"] > ep[f"videos/{key}/from_timestamp"]
for k, s in m.stats.items():
    assert {"mean", "std", "min", "max", "count", "q01", "q10", "q50", "q90", "q99"} <= set(s), k
print(f"lerobot {__import__('importlib.metadata').metadata.version('lerobot')}: read {root}: {m.total_episodes} "
      f"episodes, {m.total_frames} frames, {len(m.tasks)} tasks, videos {m.video_keys}, fps {m.fps}: OK")
PY
