#!/usr/bin/env bash
# One prepared GPU check for RoboAlign (< 10 min on one NVIDIA GPU; installs nothing, downloads nothing).
#   (a) the tiny VLA exported to ONNX and run on onnxruntime CUDA / TensorRT EPs, the TensorRT backend and
#       torch on CUDA where they are installed, each compared with onnxruntime on the CPU -> `gpu_export: ...`
#   (b) the paper-scale VLA with random weights in bf16 (Qwen2.5-VL-7B architecture up to layer 18 + the
#       GR00T-N1.5-sized head, 4 Euler steps, batch 1, two 224x224 cameras), eager vs torch.compile
#       (and CUDA graphs when they work) -> `gpu: device=.. backbone_ms=.. head_ms=.. total_ms=.. compiled_total_ms=..`
# Needs the project set up with a CUDA torch:
#   ROBOALIGN_TORCH="torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128" make setup
# Usage: scripts/gpu_check.sh [--device cuda:N] [more options of python -m roboalign.paper_scale.gpu_check]
# The Python part is tested on the CPU by the suite: python -m roboalign.paper_scale.gpu_check all --tiny --device cpu
set -euo pipefail
RUN="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/run"
"$RUN" python - <<'PY' || exit 2
import sys, torch
if not torch.cuda.is_available():
    print(f"gpu_check: no CUDA here (torch {torch.__version__}, CUDA build {torch.version.cuda}): run it on an NVIDIA "
          "GPU machine with a CUDA torch (ROBOALIGN_TORCH=\"torch==2.13.0 --index-url "
          "https://download.pytorch.org/whl/cu128\" make setup); to test the script here: scripts/run python -m "
          "roboalign.paper_scale.gpu_check all --tiny --device cpu", file=sys.stderr)
    sys.exit(1)
print(f"gpu_check: torch {torch.__version__} on {torch.cuda.get_device_name(0)}")
PY
timeout 150 "$RUN" python -m roboalign.paper_scale.gpu_check export "$@"
timeout 420 "$RUN" python -m roboalign.paper_scale.gpu_check vla "$@"
