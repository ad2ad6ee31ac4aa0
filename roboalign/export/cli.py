"""``roboalign export``: checkpoint -> ONNX graphs + manifest (+ optional TensorRT engines).

    roboalign export --checkpoint runs/vla --out runs/vla/onnx            # export + parity + TRT check
    roboalign export --checkpoint runs/vla --out runs/vla/onnx --check-only   # re-check an export
    roboalign export --checkpoint runs/vla --out runs/vla/onnx --tensorrt --trt-precision fp16
    roboalign export --out runs/vla/onnx --print-trtexec                  # the equivalent trtexec commands

Exit code 0 when parity (cosine >= --min-cosine per module) and the TensorRT operator check pass, 1 when a
check fails, 2 on bad arguments or when TensorRT was requested but is unavailable.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from roboalign.export.parity import ParityError
from roboalign.export.trt_compat import check_file
from roboalign.runtime.manifest import MODULES, load_manifest, verify_module_file
from roboalign.runtime.tensorrt_engines import (
    TensorRTUnavailable,
    TRTBuildConfig,
    build_engines,
    require_tensorrt,
    trtexec_commands,
)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="roboalign export", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", type=Path, help="VLA checkpoint folder (config.json + head.safetensors + backbone/)")
    p.add_argument("--out", type=Path, help="export folder (default: <checkpoint>/onnx)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (17..20; TensorRT 10 parses 9..24)")
    p.add_argument("--exporter", choices=("legacy", "dynamo"), default="legacy", help="torch.onnx exporter")
    p.add_argument("--max-batch", type=int, default=8, help="TensorRT profile: largest batch")
    p.add_argument("--max-seq", type=int, default=1024, help="TensorRT profile: longest prompt (tokens)")
    p.add_argument("--min-cosine", type=float, default=0.999, help="parity threshold per module")
    p.add_argument("--check-only", action="store_true", help="do not export: re-check an existing export in --out")
    p.add_argument("--tensorrt", action="store_true", help="also build TensorRT engines (needs TensorRT + a GPU)")
    p.add_argument("--trt-precision", choices=("fp32", "fp16", "bf16"), default="fp16")
    p.add_argument("--trt-config", type=Path, help="YAML TRTBuildConfig (precision, workspace_gb, profiles, ...)")
    p.add_argument("--print-trtexec", action="store_true", help="print the equivalent trtexec commands and exit")
    return p


def _print_report(manifest: dict[str, Any], out: Path) -> None:
    print(f"export folder: {out}  (opset {manifest['opset']}, exporter {manifest['exporter']})")
    print(f"{'module':<9}{'file':<13}{'MB':>8}  inputs")
    for name in MODULES:
        m = manifest["modules"][name]
        ins = ", ".join(f"{t['name']}{tuple(t['shape'])}" for t in m["inputs"])
        print(f"{name:<9}{m['file']:<13}{m['bytes'] / 1e6:>8.2f}  {ins}")
    par = manifest["parity"]
    if par.get("ok") is not None:
        print(f"\nparity vs PyTorch ({par.get('inputs', '')})")
        print(f"{'module':<10}{'cosine':>20}{'max_abs_diff':>15}{'ref_max_abs':>13}  ok")
        for name in (*MODULES, "pipeline"):
            r = par[name]
            print(f"{name:<10}{r['cosine']:>20.12f}{r['max_abs_diff']:>15.3e}{r['ref_max_abs']:>13.3e}  {r['ok']}")
    compat = manifest["tensorrt_compat"]
    print(f"\nTensorRT {compat[MODULES[0]]['tensorrt_version']} ONNX-parser check (opset + operator types):")
    for name in MODULES:
        c = compat[name]
        detail = "; ".join(c["errors"][:5]) if c["errors"] else f"{len(c['op_types'])} operator types, all supported"
        print(f"  {name:<8} opset {c['opset']}: {'ok' if c['ok'] else 'FAIL'} — {detail}")


def _check_only(checkpoint: Path, out: Path, cfg: Any) -> dict[str, Any]:
    from roboalign.export.onnx_export import run_parity
    from roboalign.models.vla import load_vla

    manifest = load_manifest(out)
    for name in MODULES:
        verify_module_file(out, name, manifest["modules"][name])
    vla = load_vla(checkpoint)
    manifest["parity"] = run_parity(vla, out, manifest, cfg)
    compat = {name: check_file(out / manifest["modules"][name]["file"], name).to_dict() for name in MODULES}
    compat["ok"] = all(compat[m]["ok"] for m in MODULES)
    manifest["tensorrt_compat"] = compat
    return manifest


class ExportExit(Exception):
    """Ends ``roboalign export`` with a message on stderr and an exit code (1: a check or the exporter failed,
    2: bad arguments, or TensorRT requested but unavailable)."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def _export(args: argparse.Namespace, out: Path) -> tuple[dict[str, Any], int]:
    """Export the checkpoint into ``out`` (or re-check ``out``): the manifest and 0, or 1 when parity failed."""
    from roboalign.export.onnx_export import ExportConfig, export_checkpoint

    try:
        cfg = ExportConfig(opset=args.opset, exporter=args.exporter, max_batch=args.max_batch, max_seq=args.max_seq,
                           min_cosine=args.min_cosine)
    except ValueError as e:
        raise ExportExit(str(e), 2) from e
    try:
        if args.check_only:
            return _check_only(args.checkpoint, out, cfg), 0
        return export_checkpoint(args.checkpoint, out, cfg), 0
    except ParityError as e:
        print(f"roboalign export: PARITY FAILED: {e}", file=sys.stderr)
        return load_manifest(out), 1
    except (FileNotFoundError, NotImplementedError, ValueError) as e:  # bad checkpoint / export folder
        raise ExportExit(str(e), 2) from e
    except RuntimeError as e:  # the exporter itself failed
        raise ExportExit(str(e), 1) from e


def _tensorrt(action: Any, *args: Any) -> Any:
    """``action(*args)``; TensorRT missing is exit code 2."""
    try:
        return action(*args)
    except TensorRTUnavailable as e:
        raise ExportExit(f"cannot build TensorRT engines: {e}", 2) from e


def _run(args: argparse.Namespace) -> int:
    if args.out is None and args.checkpoint is None:
        raise ExportExit("give --checkpoint (and optionally --out)", 2)
    out = args.out or args.checkpoint / "onnx"
    trt_cfg = TRTBuildConfig.from_yaml(args.trt_config) if args.trt_config else TRTBuildConfig(precision=args.trt_precision)
    if args.print_trtexec:
        for cmd in trtexec_commands(out, trt_cfg):
            print(cmd)
        return 0
    if args.checkpoint is None:
        raise ExportExit("--checkpoint is required to export or check", 2)
    if args.tensorrt:  # fail before spending time on the export
        _tensorrt(require_tensorrt)
    manifest, rc = _export(args, out)
    _print_report(manifest, out)
    if not manifest["parity"]["ok"] or not manifest["tensorrt_compat"]["ok"]:
        rc = 1
    if args.tensorrt:
        for name, path in _tensorrt(build_engines, out, trt_cfg).items():
            print(f"engine {name}: {path}")
    print(f"export: out={out} parity_ok={manifest['parity']['ok']} "
          f"min_cosine={min(manifest['parity'][m]['cosine'] for m in (*MODULES, 'pipeline')):.6f} "
          f"tensorrt_ops_ok={manifest['tensorrt_compat']['ok']}")
    return rc


def main(argv: list[str] | None = None) -> int:
    try:
        return _run(_parser().parse_args(argv))
    except ExportExit as e:
        print(f"roboalign export: {e}", file=sys.stderr)
        return e.code


if __name__ == "__main__":
    sys.exit(main())
