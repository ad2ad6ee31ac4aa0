"""Set LIBERO up (``roboalign.sim.libero_setup``) and check that a LIBERO-Object scene builds and renders."""

from __future__ import annotations

import argparse
import sys

from roboalign.sim.libero_env import LiberoEnv, LiberoEnvConfig
from roboalign.sim.libero_setup import LiberoSetupError, ensure_libero


def main(argv: list[str] | None = None) -> int:
    """Set LIBERO up and check that a LIBERO-Object scene can be built and rendered."""
    ap = argparse.ArgumentParser(prog="python -m roboalign.sim.libero_check", description=__doc__)
    ap.add_argument("--no-check", action="store_true", help="skip building and rendering one scene")
    args = ap.parse_args(argv)
    try:
        report = ensure_libero()
    except LiberoSetupError as e:
        print(f"LIBERO setup failed: {e}", file=sys.stderr)
        return 1
    print(report)
    if not args.no_check:
        env = LiberoEnv(LiberoEnvConfig(task="alphabet_soup", camera_size=64))
        obs = env.reset(init_state=0)
        shapes = {k: v.shape for k, v in obs.images.items()}
        env.close()
        print(f"check: built and rendered a LIBERO-Object scene, images {shapes}, state {obs.state.shape}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
